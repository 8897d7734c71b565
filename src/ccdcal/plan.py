"""The calibration plan of a night: which masters to build from which frames, and which
masters each flat and light gets.

Pure Python on inventory records; deterministic (same inventory and config, same plan).

Setup
    Frames are only ever combined or applied within one *setup*: camera, binning, trimmed
    shape, gain setting, offset and readout mode. Frames of another binning are never mixed.
Temperature
    Bias and dark frames are grouped by temperature: sorted, a group spans at most twice the
    camera's ``temperature_tolerance``; frames without a temperature form their own group.
    A master is used for a frame only when their temperatures differ by at most the
    tolerance (and both have one, or both have none).
Dark strategy (per camera, ``dark.scale``)
    ``auto``: a dark master whose exposure is within ``exposure_tolerance`` s of the frame's is
    used as is (it includes the bias: no bias subtraction, the dark-library workflow);
    otherwise the frame is bias-subtracted and gets ``k * (dark - bias)`` with
    k = t_frame / t_dark from the dark nearest in exposure (ties: the longer dark), which needs
    a bias. ``always``: always the scaled form. ``never``: only an exposure match.
Flats
    One master per setup and filter; each flat gets its own bias/dark by the same rules
    (a dark at the flats' exposure is a darkflat), then is normalized by its own median.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .camera import safe_name
from .inventory import FrameRecord

PLAN_VERSION = 1


class PlanError(Exception):
    """The night cannot be calibrated as the configuration requires."""


def setup_key(record: FrameRecord) -> tuple:
    return (
        record.camera,
        record.binning,
        record.shape,
        record.gain_setting,
        record.offset,
        record.readout_mode,
    )


def _setup_label(record: FrameRecord) -> str:
    parts = [safe_name(record.camera), record.binning]
    if record.gain_setting:
        parts.append("g" + safe_name(record.gain_setting))
    if record.offset:
        parts.append("o" + safe_name(record.offset))
    if record.readout_mode:
        parts.append(safe_name(record.readout_mode))
    return "_".join(parts)


def _temperature_label(temperature: float | None) -> str:
    return "noT" if temperature is None else f"{temperature:.1f}C"


def _exposure_label(exptime: float) -> str:
    return f"{exptime:g}s"


def cluster(values: list[float], width: float) -> list[list[int]]:
    """Indices of ``values`` grouped so each group spans at most ``width`` (sorted, greedy)."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    groups: list[list[int]] = []
    start = None
    for i in order:
        if groups and values[i] - start <= width:
            groups[-1].append(i)
        else:
            groups.append([i])
            start = values[i]
    return groups


def _mean(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


@dataclass
class Master:
    """A master to build: its name (file stem), type, setup and input frames."""

    name: str
    type: str  # bias | dark | flat
    camera: str
    setup: dict[str, Any]
    frames: list[FrameRecord]
    temperature_c: float | None = None
    exptime: float | None = None
    filter: str = ""
    # flats: per-frame calibration; darks: the bias used to measure dark current (optional)
    frame_calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    bias: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "camera": self.camera,
            "setup": self.setup,
            "temperature_c": self.temperature_c,
            "exptime": self.exptime,
            "filter": self.filter,
            "bias": self.bias,
            "frames": [
                {
                    "path": f.path,
                    "exptime": f.exptime,
                    "temperature_c": f.temperature_c,
                    "date_obs": f.date_obs,
                    **({"calibration": self.frame_calibration[f.path]} if self.type == "flat" else {}),
                }
                for f in self.frames
            ],
        }


def _setup_dict(record: FrameRecord) -> dict[str, Any]:
    return {
        "camera": record.camera,
        "instrument": record.instrument,
        "binning": record.binning,
        "shape": record.shape,
        "gain_setting": record.gain_setting,
        "offset": record.offset,
        "readout_mode": record.readout_mode,
    }


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


def _temperature_groups(frames: list[FrameRecord], tolerance: float) -> list[list[FrameRecord]]:
    with_t = [f for f in frames if f.temperature_c is not None]
    without = [f for f in frames if f.temperature_c is None]
    groups = [[with_t[i] for i in g] for g in cluster([f.temperature_c for f in with_t], 2 * tolerance)]
    if without:
        groups.append(without)
    return groups


def build_masters(records: list[FrameRecord], cameras: Mapping[str, Mapping[str, Any]]) -> list[Master]:
    """Group the ok calibration frames into masters (bias, dark, flat), deterministic names."""
    taken: set[str] = set()
    masters: list[Master] = []
    by_setup: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for record in records:
        if record.ok and record.frame_type in ("bias", "dark", "flat"):
            by_setup[(record.frame_type, *setup_key(record))].append(record)

    for key in sorted(by_setup, key=lambda k: tuple(str(p) for p in k)):
        frame_type, frames = key[0], sorted(by_setup[key], key=lambda f: f.path)
        first = frames[0]
        profile = cameras[first.camera]
        label = _setup_label(first)
        if frame_type == "flat":
            by_filter: dict[str, list[FrameRecord]] = defaultdict(list)
            for f in frames:  # 'R' and 'r' are one filter, as when lights are matched
                by_filter[f.filter.strip().lower()].append(f)
            for key_filter in sorted(by_filter):
                group = by_filter[key_filter]
                filt = group[0].filter.strip()
                name = _unique_name(f"flat_{label}_{safe_name(filt, 'nofilter')}", taken)
                masters.append(Master(name, "flat", first.camera, _setup_dict(first), group,
                                      _mean(f.temperature_c for f in group), None, filt))
            continue
        tolerance = profile["temperature_tolerance"]
        for group in _temperature_groups(frames, tolerance):
            temperature = _mean(f.temperature_c for f in group)
            if frame_type == "bias":
                name = _unique_name(f"bias_{label}_{_temperature_label(temperature)}", taken)
                masters.append(Master(name, "bias", first.camera, _setup_dict(first), group,
                                      temperature, 0.0))
                continue
            exp_tol = profile["dark"]["exposure_tolerance"]
            for idx in cluster([f.exptime for f in group], exp_tol):
                sub = [group[i] for i in sorted(idx, key=lambda i: group[i].path)]
                exptime = round(sum(f.exptime for f in sub) / len(sub), 4)
                name = _unique_name(
                    f"dark_{label}_{_temperature_label(temperature)}_{_exposure_label(exptime)}", taken)
                masters.append(Master(name, "dark", first.camera, _setup_dict(first), sub,
                                      temperature, exptime))
    return masters


# ------------------------------------------------------------------------- matching
def _key_of_master(master: Master) -> tuple:
    s = master.setup
    return (s["camera"], s["binning"], s["shape"], s["gain_setting"], s["offset"], s["readout_mode"])


def temperature_ok(frame_t: float | None, master_t: float | None, tolerance: float) -> bool:
    if frame_t is None or master_t is None:
        return frame_t is None and master_t is None
    return abs(frame_t - master_t) <= tolerance + 1e-9


@dataclass
class Choice:
    """The masters applied to one frame and why."""

    bias: str | None = None
    dark: str | None = None
    dark_mode: str | None = None  # unscaled | scaled
    dark_scale: float | None = None
    flat: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        flags = []
        if self.bias is None and self.dark_mode != "unscaled":
            flags.append("NOBIAS")
        if self.dark is None:
            flags.append("NODARK")
        return flags

    def to_json(self) -> dict[str, Any]:
        return {
            "bias": self.bias,
            "dark": self.dark,
            "dark_mode": self.dark_mode,
            "dark_scale": self.dark_scale,
            "flat": self.flat,
            "notes": self.notes,
        }


def choose_bias(setup: tuple, temperature: float | None, biases: list[Master], tolerance: float
                ) -> tuple[Master | None, str]:
    """The bias master of ``setup`` nearest in temperature within ``tolerance`` (C), or why none."""
    same = [m for m in biases if _key_of_master(m) == setup]
    if not same:
        return None, "no bias of this setup"
    fits = [m for m in same if temperature_ok(temperature, m.temperature_c, tolerance)]
    if not fits:
        temps = ", ".join(_temperature_label(m.temperature_c) for m in same)
        return None, f"no bias within {tolerance} C of {_temperature_label(temperature)} (have {temps})"
    fits.sort(key=lambda m: (abs((temperature or 0) - (m.temperature_c or 0)), -len(m.frames), m.name))
    return fits[0], ""


def choose_dark(frame: FrameRecord, darks: list[Master], bias: Master | None,
                profile: Mapping[str, Any]) -> tuple[Master | None, str | None, float | None, str]:
    """(dark, mode, scale, note) for a frame per the camera's dark strategy."""
    strategy = profile["dark"]["scale"]
    exp_tol = profile["dark"]["exposure_tolerance"]
    tolerance = profile["temperature_tolerance"]
    same = [m for m in darks if _key_of_master(m) == setup_key(frame)]
    if not same:
        return None, None, None, "no dark of this setup"
    fits = [m for m in same if temperature_ok(frame.temperature_c, m.temperature_c, tolerance)]
    if not fits:
        temps = ", ".join(sorted({_temperature_label(m.temperature_c) for m in same}))
        return None, None, None, (
            f"no dark within {tolerance} C of {_temperature_label(frame.temperature_c)} (have {temps})")
    t = frame.exptime or 0.0
    exact = sorted((m for m in fits if abs(m.exptime - t) <= exp_tol + 1e-9),
                   key=lambda m: (abs(m.exptime - t), abs((frame.temperature_c or 0) - (m.temperature_c or 0)),
                                  -len(m.frames), m.name))
    if strategy != "always" and exact:
        return exact[0], "unscaled", 1.0, ""
    if strategy == "never":
        return None, None, None, f"no dark of {t:g} s (scaling disabled)"
    if bias is None:
        return None, None, None, f"no dark of {t:g} s and no bias to scale one"
    usable = [m for m in fits if m.exptime > 0]
    if not usable or t <= 0:
        return None, None, None, f"no dark to scale to {t:g} s"
    usable.sort(key=lambda m: (abs(math.log(m.exptime / t)) if t > 0 else 0, -m.exptime,
                               abs((frame.temperature_c or 0) - (m.temperature_c or 0)), m.name))
    dark = usable[0]
    return dark, "scaled", t / dark.exptime, ""


def choose_calibration(frame: FrameRecord, masters: list[Master], profile: Mapping[str, Any],
                       with_flat: bool) -> Choice:
    tolerance = profile["temperature_tolerance"]
    biases = [m for m in masters if m.type == "bias"]
    darks = [m for m in masters if m.type == "dark"]
    choice = Choice()
    bias, bias_note = choose_bias(setup_key(frame), frame.temperature_c, biases, tolerance)
    dark, mode, scale, dark_note = choose_dark(frame, darks, bias, profile)
    if dark is not None:
        choice.dark, choice.dark_mode, choice.dark_scale = dark.name, mode, scale
    elif dark_note:
        choice.notes.append(dark_note)
    if mode != "unscaled":
        if bias is not None:
            choice.bias = bias.name
        else:
            choice.notes.append(bias_note)
    if with_flat:
        flats = [m for m in masters if m.type == "flat" and _key_of_master(m) == setup_key(frame)
                 and m.filter.lower() == frame.filter.strip().lower()]
        if flats:
            choice.flat = flats[0].name
        else:
            choice.notes.append(f"no flat for filter '{frame.filter}' in this setup")
    return choice


def _group_id(camera: str, filt: str, choice: Choice) -> str:
    digest = hashlib.sha256(
        json.dumps([choice.bias, choice.dark, choice.flat], sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe_name(camera)}_{safe_name(filt, 'nofilter')}_{digest}"


def make_plan(records: list[FrameRecord], config: Mapping[str, Any],
              cameras: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The whole plan as a JSON-able dict (see module docstring).

    ``cameras`` maps each camera name found in the inventory to its resolved profile.
    Raises PlanError when a light lacks a calibration step that ``require`` demands.
    """
    masters = build_masters(records, cameras)
    by_name = {m.name: m for m in masters}
    for master in masters:
        profile = cameras[master.camera]
        if master.type == "dark":
            bias, _ = choose_bias(_key_of_master(master), master.temperature_c,
                                  [m for m in masters if m.type == "bias"], profile["temperature_tolerance"])
            master.bias = bias.name if bias else None
        elif master.type == "flat":
            for frame in master.frames:
                master.frame_calibration[frame.path] = choose_calibration(
                    frame, masters, profile, with_flat=False).to_json()

    lights: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    require = config.get("require", {})
    for record in sorted((r for r in records if r.ok and r.frame_type == "light"), key=lambda r: r.path):
        profile = cameras[record.camera]
        choice = choose_calibration(record, masters, profile, with_flat=True)
        flags = choice.flags + ([] if choice.flat else ["NOFLAT"])
        for step, flag in (("bias", "NOBIAS"), ("dark", "NODARK"), ("flat", "NOFLAT")):
            if require.get(step) and flag in flags:
                missing.append(f"{record.path}: no {step} ({'; '.join(choice.notes)})")
        group = _group_id(record.camera, record.filter, choice)
        entry = {"path": record.path, "exptime": record.exptime, "flags": flags, **choice.to_json()}
        lights[record.path] = {"group": None, **entry}
        groups.setdefault(group, {"camera": record.camera, "filter": record.filter,
                                  "bias": choice.bias, "dark": choice.dark, "flat": choice.flat,
                                  "lights": []})["lights"].append(entry)
    if missing:
        raise PlanError("the configuration requires calibration steps these lights lack:\n  "
                        + "\n  ".join(missing))

    per_job = int(config.get("lights_per_job", 100))
    light_groups: dict[str, dict[str, Any]] = {}
    for group_id in sorted(groups):
        group = groups[group_id]
        chunks = [group["lights"][i:i + per_job] for i in range(0, len(group["lights"]), per_job)]
        for n, chunk in enumerate(chunks, start=1):
            name = group_id if len(chunks) == 1 else f"{group_id}_{n:03d}"
            light_groups[name] = {**{k: v for k, v in group.items() if k != "lights"}, "lights": chunk}
            for entry in chunk:
                lights[entry["path"]]["group"] = name

    used = {n for g in light_groups.values() for n in (g["bias"], g["dark"], g["flat"]) if n}
    for master in masters:
        if master.type == "flat":
            used.update(v for c in master.frame_calibration.values() for v in (c["bias"], c["dark"]) if v)
    return {
        "version": PLAN_VERSION,
        "cameras": {name: cameras[name] for name in sorted(cameras)},
        "masters": {m.name: {**m.to_json(), "used": m.name in used} for m in masters},
        "light_groups": light_groups,
        "lights": lights,
    }


def master_inputs(plan: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Raw frames (relative paths) and other masters a master is built from."""
    master = plan["masters"][name]
    needed = set()
    if master["type"] == "dark" and master.get("bias"):
        needed.add(master["bias"])
    for frame in master["frames"]:
        calibration = frame.get("calibration") or {}
        needed.update(v for v in (calibration.get("bias"), calibration.get("dark")) if v)
    return {"frames": [f["path"] for f in master["frames"]], "masters": sorted(needed)}
