"""Choosing the masters for a frame, among tonight's and the library's, and saying why
every other candidate was not chosen.

Rules (data, per camera: ``matching`` in the configuration), checked in this order for
every candidate master of the step's type and the frame's camera; the first that fails is
the candidate's reason:

0. a library master whose file is damaged (``library.verify_master``) is never used:
   ``"damaged library file (truncated: 51720 bytes, the headers need 54720)"``, nor a
   PixInsight master that cannot be read (``"unusable PixInsight master (...)"``);
1. the ``equal`` setup values (binning, shape, gain setting, offset, readout mode; filter
   for flats): ``"binning 2x2 != 1x1"``;
2. temperature within the camera's ``temperature_tolerance`` (bias, dark):
   ``"temperature -4.8 C outside -10.0 +-1 C"`` (or that one of the two has none);
3. for darks, the exposure: within ``dark.exposure_tolerance`` (used as is), else scalable
   (needs a bias and ``dark.scale`` not ``never``): ``"exposure 300 s != 120 s and no bias
   to scale it"``;
4. age: the time between the frame and the master's inputs at most ``max_age_days``:
   ``"age 212 d > 180 d"``.

Among the candidates that pass, the one used is the first by: the tier (darks: an exposure
match before a scaled dark; for flats, a darkflat -- an exposure match within
``darkflat.window_hours`` of the flat, later ones first with ``prefer: later`` -- before
another exposure match, before a scaled dark), then the
``prefer`` order (tonight's masters before the library's, nearest in time, nearest in
temperature, most frames), then the name. The choice is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .camera import MASTER_TYPES
from .steps import DEFAULT_STEPS, STEPS, masters_wanted

SECONDS_PER_DAY = 86400.0


@dataclass
class Target:
    """A frame that needs masters: a light, a flat, or a master dark (for its bias)."""

    path: str
    kind: str  # light | flat | dark
    camera: str
    setup: dict[str, Any]
    temperature_c: float | None
    exptime: float
    time_s: float | None
    filter: str = ""
    dark_subtracted: str = ""  # the camera software already subtracted a dark (the card that says so)


@dataclass
class Verdict:
    master: Any  # plan.Master
    reason: str | None  # None: passes every rule
    tier: int = 0
    mode: str | None = None  # darks: unscaled | scaled
    scale: float | None = None
    noise: float | None = None  # scaled darks: the variance they add (see added_variance)
    key: tuple = ()

    @property
    def passes(self) -> bool:
        return self.reason is None


@dataclass
class Choice:
    """The masters applied to one frame, and notes on the steps that have none."""

    bias: str | None = None
    dark: str | None = None
    dark_mode: str | None = None  # unscaled | scaled
    dark_scale: float | None = None
    flat: str | None = None
    notes: list[str] = field(default_factory=list)
    fringe: str | None = None  # lights of a fringing band (``fringe.filters``) only

    def to_json(self) -> dict[str, Any]:
        chosen = {
            "bias": self.bias,
            "dark": self.dark,
            "dark_mode": self.dark_mode,
            "dark_scale": self.dark_scale,
            "flat": self.flat,
            "notes": self.notes,
        }
        if self.fringe:  # only then: the plan of a night without fringes is what it was
            chosen["fringe"] = self.fringe
        return chosen


#: The CALFLAGS word of each calibration step a frame did not get (the step's
#: ``missing_flag``: NOBIAS, NODARK, NOFLAT).
MISSING_FLAGS = {name: step.missing_flag for name, step in STEPS.items() if step.missing_flag}


def missing_steps(choice: Mapping[str, Any], wanted: Iterable[str]) -> list[str]:
    """The CALFLAGS words (``MISSING_FLAGS``) of the ``wanted`` steps (``steps.masters_wanted``)
    a choice of masters lacks (``Choice.to_json``: bias, dark, dark_mode, flat). A dark
    used unscaled holds the bias; one the camera software subtracted (dark_mode 'camera')
    held both."""
    mode = choice.get("dark_mode")
    lacking = {
        "bias": choice.get("bias") is None and mode not in ("unscaled", "camera"),
        "dark": choice.get("dark") is None and mode != "camera",
        "flat": choice.get("flat") is None,
    }
    return [MISSING_FLAGS[step] for step in MASTER_TYPES if step in wanted and lacking[step]]


def _temperature(value: float | None) -> str:
    return "no temperature" if value is None else f"{value:.1f} C"


def time_distance_s(time_s: float | None, begin: float | None, end: float | None) -> float | None:
    """Seconds between a moment and an interval (0 inside it); None when unknown."""
    if time_s is None or begin is None:
        return None
    end = begin if end is None else end
    if time_s < begin:
        return begin - time_s
    return max(0.0, time_s - end)


class Matcher:
    """Chooses masters for frames; collects one report row per candidate considered."""

    def __init__(self, masters: list, cameras: Mapping[str, Mapping[str, Any]]):
        self.masters = masters
        self.cameras = cameras
        self.rows: list[dict[str, str]] = []

    # --------------------------------------------------------------- the rules
    def _rejection(self, target: Target, master, step: str) -> str | None:
        if master.damaged:
            what = "unusable PixInsight master" if master.source == "pixinsight" else "damaged library file"
            return f"{what} ({master.damaged})"
        profile = self.cameras[target.camera]
        rule = profile["matching"][step]
        for key in rule["equal"]:
            mine = target.filter if key == "filter" else target.setup.get(key, "")
            theirs = master.filter if key == "filter" else master.setup.get(key, "")
            if str(mine).strip().lower() != str(theirs).strip().lower():
                return f"{key.replace('_', ' ')} {theirs or '(none)'!s} != {mine or '(none)'!s}"
        if step in ("bias", "dark"):
            tolerance = profile["temperature_tolerance"]
            t_frame, t_master = target.temperature_c, master.temperature_c
            if t_frame is None and t_master is not None:
                return (
                    f"temperature {_temperature(t_master)}, and the frame has no usable "
                    "temperature (see the inventory's warnings) to compare it with"
                )
            if t_master is None and t_frame is not None:
                return f"no temperature, and the frame is at {_temperature(t_frame)}"
            if t_frame is not None and abs(t_frame - t_master) > tolerance + 1e-9:
                return f"temperature {_temperature(t_master)} outside {_temperature(t_frame)} +-{tolerance:g} C"
        max_age = rule.get("max_age_days")
        distance = time_distance_s(target.time_s, master.time_begin, master.time_end)
        if max_age is not None and distance is not None and distance > max_age * SECONDS_PER_DAY:
            return f"age {distance / SECONDS_PER_DAY:.0f} d > {max_age:g} d"
        return None

    def _candidates(self, target: Target, step: str) -> list:
        return [m for m in self.masters if m.type == step and m.camera == target.camera]

    def _preference(self, target: Target, master) -> tuple:
        order = self.cameras[target.camera]["matching"]["prefer"]
        keys = []
        for name in order:
            if name == "tonight":
                keys.append(0 if master.source == "tonight" else 1)
            elif name == "nearest_time":
                d = time_distance_s(target.time_s, master.time_begin, master.time_end)
                keys.append(math.inf if d is None else d)
            elif name == "nearest_temperature":
                t, m = target.temperature_c, master.temperature_c
                keys.append(0.0 if t is None or m is None else abs(t - m))
            elif name == "most_frames":
                keys.append(-master.n_frames)
        return tuple(keys)

    @staticmethod
    def added_variance(scale: float, dark_frames: int, bias_frames: int) -> float:
        """The variance a scaled dark adds to a frame, in units of one raw frame's read-noise
        variance: the frame gets L - B - k (D - B) = L - k D - (1 - k) B, so it adds
        k^2 var(D) + (1 - k)^2 var(B), a master of N frames having var/N. (The dark
        current's own shot noise in D is left out: it is not known before the master is
        made, and it only grows the longer darks' share.)"""
        return scale**2 / max(dark_frames, 1) + (1.0 - scale) ** 2 / max(bias_frames, 1)

    def _dark_verdict(self, target: Target, master, bias_available: bool, bias_frames: int = 0) -> Verdict:
        reason = self._rejection(target, master, "dark")
        if reason:
            return Verdict(master, reason)
        profile = self.cameras[target.camera]
        strategy = profile["dark"]["scale"]
        tolerance = profile["dark"]["exposure_tolerance"]
        t = target.exptime or 0.0
        exact = abs(master.exptime - t) <= tolerance + 1e-9
        if exact and strategy != "always":
            tier = 1
            if target.kind == "flat":
                window = profile["matching"]["darkflat"]["window_hours"] * 3600.0
                distance = time_distance_s(target.time_s, master.time_begin, master.time_end)
                if distance is not None and distance <= window:
                    tier = 0
            return Verdict(master, None, tier, "unscaled", 1.0)
        if strategy == "never":
            return Verdict(master, f"exposure {master.exptime:g} s != {t:g} s (scaling disabled)")
        if not bias_available:
            return Verdict(master, f"exposure {master.exptime:g} s != {t:g} s and no bias to scale it")
        if master.exptime <= 0 or t <= 0:
            return Verdict(master, f"exposure {master.exptime:g} s cannot be scaled to {t:g} s")
        scale = t / master.exptime
        return Verdict(master, None, 2, "scaled", scale, noise=self.added_variance(scale, master.n_frames, bias_frames))

    def _darkflat_order(self, target: Target, master) -> tuple:
        prefer = self.cameras[target.camera]["matching"]["darkflat"]["prefer"]
        if prefer == "nearest" or target.time_s is None or master.time_begin is None:
            return ()
        later = master.time_begin >= target.time_s
        return (0 if later == (prefer == "later") else 1,)

    def _decide(self, target: Target, step: str, verdicts: list[Verdict], record: bool):
        for v in verdicts:
            extra: tuple = ()
            if v.tier == 0 and step == "dark" and target.kind == "flat":
                extra = self._darkflat_order(target, v.master)
            if v.mode == "scaled":  # the least noise added, then the nearest exposure, the longer
                extra = (round(v.noise, 9), abs(math.log(v.master.exptime / target.exptime)), -v.master.exptime)
            v.key = (v.tier, *extra, *self._preference(target, v.master), v.master.name)
        passing = sorted((v for v in verdicts if v.passes), key=lambda v: v.key)
        chosen = passing[0] if passing else None
        if record:
            for v in sorted(verdicts, key=lambda v: (v.master.source, v.master.name)):
                if v is chosen:
                    result = "used" + (f" ({v.mode}, x{v.scale:.6g})" if v.mode else "")
                elif v.passes:
                    result = "not preferred: " + self._why_not(v, chosen)
                else:
                    result = "rejected: " + v.reason
                self.rows.append(
                    {
                        "frame": target.path,
                        "frame_type": target.kind,
                        "step": step,
                        "candidate": v.master.name,
                        "source": v.master.source_label,
                        "result": result,
                    }
                )
        return chosen

    @staticmethod
    def _why_not(v: Verdict, chosen: Verdict) -> str:
        if v.tier != chosen.tier:
            labels = {0: "a darkflat", 1: "an exposure match", 2: "a scaled dark"}
            return f"{labels.get(chosen.tier, 'another')} is preferred to {labels.get(v.tier, 'this')}"
        if v.noise is not None and chosen.noise is not None and v.noise > chosen.noise:
            return (
                f"x{v.scale:.3g} of {v.master.n_frames} frame(s) adds {v.noise / chosen.noise:.3g} "
                f"times the noise of {chosen.master.name} (x{chosen.scale:.3g} of "
                f"{chosen.master.n_frames})"
            )
        if v.master.source != chosen.master.source:
            return f"{chosen.master.source}'s master preferred"
        return f"ranked after {chosen.master.name}"

    # --------------------------------------------------------------- choices
    def _bias_verdicts(self, target: Target, exclude=None) -> list[Verdict]:
        return [
            Verdict(m, self._rejection(target, m, "bias"))
            for m in self._candidates(target, "bias")
            if exclude is None or not exclude(m)
        ]

    def bias_for(self, target: Target, record: bool = True, exclude=None):
        return self._decide(target, "bias", self._bias_verdicts(target, exclude), record)

    def wanted(self, target: Target) -> tuple[str, ...]:
        """The masters the frame's camera calibrates it with (``steps.masters_wanted``)."""
        return masters_wanted(self.cameras[target.camera].get("steps"), target.kind)

    def fringe_band(self, target: Target) -> bool:
        """Whether the frame is a light of a band its camera's ``fringe.filters`` names
        (case-insensitive), with the fringe step among its steps."""
        if target.kind != "light":
            return False
        profile = self.cameras[target.camera]
        bands = {str(f).strip().lower() for f in (profile.get("fringe") or {}).get("filters", [])}
        steps = profile.get("steps") or DEFAULT_STEPS
        return bool(bands) and "fringe" in steps and target.filter.strip().lower() in bands

    def choose(self, target: Target, record: bool = True, fringe: bool = True) -> Choice:
        """Bias, dark (mode, scale) and flat for one frame, as far as its camera's steps
        want them (``wanted``: a flat frame gets no flat; a step left out, no master), and
        a light of a fringing band its fringe frame (unless ``fringe`` is False: what the
        lights a fringe frame is made from are calibrated with)."""
        choice = Choice()
        if fringe and self.fringe_band(target):
            self._choose_fringe(target, choice, record)
        wanted = self.wanted(target)
        if target.dark_subtracted:  # by the camera software: a dark (holding the bias) is gone
            choice.dark_mode = "camera"
            choice.notes.append(f"dark and bias subtracted by the camera software ({target.dark_subtracted})")
            if "flat" in wanted:
                self._choose_flat(target, choice, record)
            return choice
        # the bias decides whether a dark can be scaled
        biases = self._bias_verdicts(target) if "bias" in wanted else []
        bias = self._decide(target, "bias", biases, record=False)
        bias_frames = bias.master.n_frames if bias is not None else 0
        if "dark" in wanted:
            darks = [
                self._dark_verdict(target, m, bias is not None, bias_frames) for m in self._candidates(target, "dark")
            ]
            dark = self._decide(target, "dark", darks, record)
            if dark is not None:
                choice.dark, choice.dark_mode, choice.dark_scale = dark.master.name, dark.mode, dark.scale
            else:
                choice.notes.append("no dark: " + (self._summary(darks) or "none of this camera"))
        if choice.dark_mode != "unscaled" and "bias" in wanted:  # the bias is applied: report its candidates
            self._decide(target, "bias", biases, record)
            if bias is not None:
                choice.bias = bias.master.name
            else:
                choice.notes.append("no bias: " + (self._summary(biases) or "none of this camera"))
        if "flat" in wanted:
            self._choose_flat(target, choice, record)
        return choice

    def _choose_fringe(self, target: Target, choice: Choice, record: bool) -> None:
        self._choose_by_filter(target, choice, record, "fringe", "fringe frame")

    def _choose_flat(self, target: Target, choice: Choice, record: bool) -> None:
        self._choose_by_filter(target, choice, record, "flat", "flat")

    def _choose_by_filter(self, target: Target, choice: Choice, record: bool, step: str, what: str) -> None:
        """The flat or fringe frame (``step``) of the frame's filter, by the step's
        matching rules, into ``choice``; else a note saying why none (``what``: its name)."""
        verdicts = [Verdict(m, self._rejection(target, m, step)) for m in self._candidates(target, step)]
        chosen = self._decide(target, step, verdicts, record)
        if chosen is not None:
            setattr(choice, step, chosen.master.name)
        else:
            choice.notes.append(
                f"no {what} for filter '{target.filter}': " + (self._summary(verdicts) or "none of this camera")
            )

    @staticmethod
    def _summary(verdicts: list[Verdict]) -> str:
        return "; ".join(f"{v.master.name}: {v.reason}" for v in verdicts if v.reason)
