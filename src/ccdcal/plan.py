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
    k = t_frame / t_dark from the dark that adds the least noise (k^2 / N_dark + (1 - k)^2 /
    N_bias; then the nearest in exposure, ties the longer dark), which needs
    a bias. ``always``: always the scaled form. ``never``: only an exposure match.
Flats
    One master per setup and filter; each flat gets its own bias/dark by the same rules
    (a dark at the flats' exposure is a darkflat), then is normalized by its own median.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .camera import MASTER_TYPES, safe_name
from .frames import plain_output_name
from .inventory import FrameRecord, parse_shape
from .library import LibraryMaster
from .matching import MISSING_FLAGS, Choice, Matcher, Target, missing_steps
from .night_noise import noise_name, noise_plans
from .products import compressed_name
from .provenance import settings_for
from .steps import DEFAULT_STEPS, masters_wanted

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


def _key_of_master(master: Master) -> tuple:
    s = master.setup
    return (s["camera"], s["binning"], s["shape"], s["gain_setting"], s["offset"], s["readout_mode"])


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
    """'-10.0C', '0.0C' (never '-0.0C'), 'noT' without a temperature."""
    if temperature is None:
        return "noT"
    return f"{round(temperature, 1) + 0.0:.1f}C"  # + 0.0 turns -0.0 into 0.0


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
    """A master to build tonight (name = file stem, type, setup, input frames), or one
    found in the library (``source='library'``, ``file`` its path, no frames), or in a
    PixInsight library (``source='pixinsight'``: ``file`` its path, converted into a
    ccdcal product when used, ``imported`` what its import needs)."""

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
    source: str = "tonight"  # tonight | library | pixinsight
    file: str | None = None  # library and PixInsight masters: their path
    time_begin: float | None = None  # seconds since 2000 of the first and last input
    time_end: float | None = None
    date_begin: str = ""
    count: int = 0  # library masters: NCOMBINE
    identity: str | None = None  # MASTERID: digest of inputs, parameters, masters used, version
    library_file: str | None = None  # tonight's master already in the library (same identity)
    derived_from: list[str] = field(default_factory=list)  # a bias fitted from these darks
    flags: list[str] = field(default_factory=list)  # steps its inputs were calibrated without
    damaged: str | None = None  # library masters: why the file cannot be used (library.verify_master)
    imported: dict[str, Any] = field(default_factory=dict)  # pixinsight: PixInsightMaster.details

    @classmethod
    def from_library(cls, record: LibraryMaster) -> Master:
        """A library master (``library.scan_library``) as a candidate next to tonight's."""
        return cls(
            record.name,
            record.type,
            record.camera,
            dict(record.setup),
            [],
            record.temperature_c,
            record.exptime,
            record.filter,
            source=record.source,
            file=record.file,
            time_begin=record.time_begin,
            time_end=record.time_end,
            date_begin=record.date_begin,
            count=record.count,
            identity=record.identity,
            flags=list(record.flags),
            damaged=record.damaged,
            imported=dict(record.details),
        )

    def __post_init__(self):
        times = [f.time_s for f in self.frames if f.time_s is not None]
        if times:
            self.time_begin, self.time_end = min(times), max(times)
        dates = sorted(f.date_obs for f in self.frames if f.date_obs)
        if dates:
            self.date_begin = dates[0]

    @property
    def n_frames(self) -> int:
        return len(self.frames) or self.count

    @property
    def source_label(self) -> str:
        return "tonight" if self.source == "tonight" else f"{self.source}:{self.file}"

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
            "source": self.source,
            "file": self.file,
            "identity": self.identity,
            "library_file": self.library_file,
            "date_begin": self.date_begin,
            "derived_from": self.derived_from,
            "flags": self.flags,
            **({"count": self.count, "imported": self.imported} if self.imported else {}),
            "frames": [
                {
                    "path": f.path,
                    "exptime": f.exptime,
                    "temperature_c": f.temperature_c,
                    "date_obs": f.date_obs,
                    **({"calibration": self.frame_calibration[f.path]} if self.type in CALIBRATED_INPUTS else {}),
                }
                for f in self.frames
            ],
        }


#: The masters whose inputs are calibrated each with its own masters (per frame, in the
#: plan): a flat's with bias and dark, a fringe frame's (lights) with bias, dark and flat.
CALIBRATED_INPUTS = {"flat": ("bias", "dark"), "fringe": ("bias", "dark", "flat")}


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


def sessions(frames: list[FrameRecord], gap_hours: float) -> list[list[FrameRecord]]:
    """Split frames (sorted by time) where consecutive ones are more than ``gap_hours``
    apart; frames without a time stay with the first session."""
    timed = sorted((f for f in frames if f.time_s is not None), key=lambda f: (f.time_s, f.path))
    groups: list[list[FrameRecord]] = []
    for frame in timed:
        if groups and frame.time_s - groups[-1][-1].time_s <= gap_hours * 3600.0:
            groups[-1].append(frame)
        else:
            groups.append([frame])
    untimed = [f for f in frames if f.time_s is None]
    if untimed:
        if not groups:
            groups.append([])
        groups[0].extend(untimed)
    return [sorted(g, key=lambda f: f.path) for g in groups]


def _session_names(base: str, groups: list[list[FrameRecord]], taken: set[str]) -> list[str]:
    """``base`` for a single session; otherwise ``base`` plus each session's start time."""
    if len(groups) == 1:
        return [_unique_name(base, taken)]
    names = []
    for group in groups:
        start = min((f.date_obs for f in group if f.date_obs), default="")
        stamp = safe_name(start[:16].replace("-", "").replace(":", ""), "notime")
        names.append(_unique_name(f"{base}_{stamp}", taken))
    return names


def build_masters(records: list[FrameRecord], cameras: Mapping[str, Mapping[str, Any]]) -> list[Master]:
    """Group the ok calibration frames into masters (bias, dark, flat), deterministic names."""
    taken: set[str] = set()
    masters: list[Master] = []
    by_setup: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for record in records:
        if record.ok and record.frame_type in MASTER_TYPES:
            by_setup[(record.frame_type, *setup_key(record))].append(record)

    for key in sorted(by_setup, key=lambda k: tuple(str(p) for p in k)):
        frame_type, frames = key[0], sorted(by_setup[key], key=lambda f: f.path)
        first = frames[0]
        profile = cameras[first.camera]
        label = _setup_label(first)
        gap = profile["session_gap_hours"]
        if frame_type == "flat":
            by_filter: dict[tuple[str, ...], list[FrameRecord]] = defaultdict(list)
            for f in frames:  # 'R' and 'r' are one filter, as when lights are matched
                by_filter[(f.filter.strip().lower(), *flat_set_of(f, profile["flat"]))].append(f)
            for key_filter in sorted(by_filter):
                filt = by_filter[key_filter][0].filter.strip()
                groups = sessions(by_filter[key_filter], gap)
                base = "_".join(
                    [
                        f"flat_{label}_{safe_name(filt, 'nofilter')}",
                        *(safe_name(part) for part in key_filter[1:] if part),
                    ]
                )
                names = _session_names(base, groups, taken)
                for name, group in zip(names, groups):
                    masters.append(
                        Master(
                            name,
                            "flat",
                            first.camera,
                            _setup_dict(first),
                            group,
                            _mean(f.temperature_c for f in group),
                            None,
                            filt,
                        )
                    )
            continue
        tolerance = profile["temperature_tolerance"]
        for group in _temperature_groups(frames, tolerance):
            temperature = _mean(f.temperature_c for f in group)
            if frame_type == "bias":
                groups = sessions(group, gap)
                names = _session_names(f"bias_{label}_{_temperature_label(temperature)}", groups, taken)
                for name, part in zip(names, groups):
                    masters.append(
                        Master(
                            name,
                            "bias",
                            first.camera,
                            _setup_dict(first),
                            part,
                            _mean(f.temperature_c for f in part),
                            0.0,
                        )
                    )
                continue
            exp_tol = profile["dark"]["exposure_tolerance"]
            for idx in cluster([f.exptime for f in group], exp_tol):
                sub = [group[i] for i in sorted(idx, key=lambda i: group[i].path)]
                exptime = round(sum(f.exptime for f in sub) / len(sub), 4)
                groups = sessions(sub, gap)
                base = f"dark_{label}_{_temperature_label(temperature)}_{_exposure_label(exptime)}"
                for name, part in zip(_session_names(base, groups, taken), groups):
                    masters.append(
                        Master(
                            name,
                            "dark",
                            first.camera,
                            _setup_dict(first),
                            part,
                            _mean(f.temperature_c for f in part),
                            exptime,
                        )
                    )
    return masters + _biases_from_darks(masters, cameras, taken)


def flat_set_of(record: FrameRecord, flat_settings: Mapping[str, Any]) -> tuple[str, ...]:
    """What keeps a flat apart from other flats of its filter (``flat.group_by``,
    ``flat.group_pattern``): its OBJECT, the pattern's match in its path ('' when unmatched)."""
    parts = [record.object.strip() for key in flat_settings.get("group_by", []) if key == "object"]
    pattern = flat_settings.get("group_pattern")
    if pattern:
        try:
            found = re.search(pattern, record.path)
        except re.error as exc:
            raise PlanError(
                f"camera {record.camera}: flat.group_pattern {pattern!r} is not a regular expression: {exc}"
            ) from None
        parts.append("" if found is None else (found.group(1) if found.groups() else found.group(0)) or "")
    return tuple(parts)


def _biases_from_darks(masters: list[Master], cameras, taken: set[str]) -> list[Master]:
    """For a setup and temperature with darks of two or more exposures and no bias, a bias
    master fitted from those darks (``dark.bias_from_darks``)."""
    derived = []
    by_setup: dict[tuple, list[Master]] = defaultdict(list)
    for m in masters:
        if m.type == "dark" and cameras[m.camera]["dark"]["bias_from_darks"]:
            by_setup[_key_of_master(m)].append(m)
    have_bias = {_key_of_master(m) for m in masters if m.type == "bias"}
    groups = []  # darks of one setup whose temperatures lie within the tolerance of each other
    for key in sorted(by_setup, key=str):
        if key in have_bias:
            continue
        darks = sorted(by_setup[key], key=lambda m: m.name)
        timed = [m for m in darks if m.temperature_c is not None]
        tolerance = cameras[darks[0].camera]["temperature_tolerance"]
        groups += [[timed[i] for i in members] for members in cluster([m.temperature_c for m in timed], tolerance)]
        groups.append([m for m in darks if m.temperature_c is None])
    for group in groups:
        group = sorted(group, key=lambda m: (m.exptime, m.name))
        if len({m.exptime for m in group}) < 2:
            continue
        first = group[0]
        temperature = _mean(m.temperature_c for m in group)
        label = f"{_setup_label(first.frames[0])}_{_temperature_label(temperature)}"
        bias = Master(
            _unique_name(f"bias_{label}_fromdarks", taken),
            "bias",
            first.camera,
            first.setup,
            [],
            temperature,
            0.0,
            derived_from=[m.name for m in group],
        )
        bias.time_begin = (
            min(m.time_begin for m in group if m.time_begin is not None)
            if any(m.time_begin is not None for m in group)
            else None
        )
        bias.time_end = max((m.time_end for m in group if m.time_end is not None), default=None)
        bias.date_begin = min((m.date_begin for m in group if m.date_begin), default="")
        bias.count = sum(m.n_frames for m in group)
        derived.append(bias)
    return derived


# ------------------------------------------------------------------------- matching
def target_of(record: FrameRecord, kind: str) -> Target:
    return Target(
        record.path,
        kind,
        record.camera,
        _setup_dict(record),
        record.temperature_c,
        record.exptime or 0.0,
        record.time_s,
        record.filter.strip(),
        record.dark_subtracted,
    )


def target_of_master(master: Master) -> Target:
    """A master dark as a frame that needs a bias (to measure its dark current)."""
    middle = None if master.time_begin is None else (master.time_begin + master.time_end) / 2
    return Target(
        master.name,
        "dark",
        master.camera,
        master.setup,
        master.temperature_c,
        master.exptime or 0.0,
        middle,
        master.filter,
    )


def _group_id(camera: str, filt: str, choice: Choice) -> str:
    chosen = [choice.bias, choice.dark, choice.flat, *([choice.fringe] if choice.fringe else [])]
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe_name(camera)}_{safe_name(filt, 'nofilter')}_{digest}".lstrip("+-")


def master_identity(
    master: Master, checksums: Mapping[str, str], profile: Mapping[str, Any], identities: Mapping[str, str | None]
) -> str | None:
    """16 hex digits of the SHA-256 of what the master is made from (MASTERID); None if an
    input's checksum or a master it depends on has no identity."""
    inputs = [checksums.get(f.path) for f in master.frames]
    if not inputs or None in inputs:
        return None
    calibration: Any = None
    if master.type == "dark":
        calibration = identities.get(master.bias) if master.bias else None
    elif master.type in CALIBRATED_INPUTS:
        calibration = []
        for frame in master.frames:
            c = master.frame_calibration[frame.path]
            ids = [identities.get(c[step]) if c.get(step) else "" for step in CALIBRATED_INPUTS[master.type]]
            if None in ids:
                return None
            calibration.append([checksums[frame.path], *ids, c["dark_mode"], c["dark_scale"]])
        calibration.sort(key=str)
    payload = {
        "type": master.type,
        "camera": master.camera,
        "setup": master.setup,
        "filter": master.filter,
        "inputs": sorted(inputs),
        "parameters": settings_for(profile, master.type),
        "calibration": calibration,
        "version": __version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resolve_masters(
    tonight: list[Master], library: list[Master], matcher: Matcher, checksums: Mapping[str, str] | None, cameras
) -> None:
    """Darks get the bias that measures their dark current, flats their per-frame bias and
    dark; every master its identity. A library master identical to one of tonight's is no
    longer a candidate: tonight's is linked to it instead of being rebuilt, unless the
    library file is damaged (then tonight's is rebuilt, and filed over it)."""
    identities: dict[str, str | None] = {m.name: m.identity for m in library}
    by_identity = {m.identity: m for m in library if not m.damaged}
    for kind in MASTER_TYPES:
        # derived biases last among biases would need darks first: biases, darks, derived, flats
        ordered = [m for m in tonight if m.type == kind and not m.derived_from]
        if kind == "dark":
            ordered += [m for m in tonight if m.derived_from]
        for master in ordered:
            if master.type == "dark":  # a bias fitted from these very darks cannot measure them
                bias = matcher.bias_for(target_of_master(master), record=False, exclude=lambda m: bool(m.derived_from))
                master.bias = bias.master.name if bias else None
            elif kind == "flat":
                wanted = masters_wanted(cameras[master.camera].get("steps"), "flat")
                for frame in master.frames:
                    choice = matcher.choose(target_of(frame, "flat"))
                    master.frame_calibration[frame.path] = choice.to_json()
                master.flags = sorted({f for c in master.frame_calibration.values() for f in missing_steps(c, wanted)})
            if checksums is not None:
                master.identity = master_identity(master, checksums, cameras[master.camera], identities)
            if master.derived_from and all(identities.get(d) for d in master.derived_from):
                master.identity = hashlib.sha256(
                    json.dumps(["bias_from_darks", *(identities[d] for d in master.derived_from)]).encode()
                ).hexdigest()[:16]
            identities[master.name] = master.identity
            twin = by_identity.get(master.identity) if master.identity else None
            if twin is not None:
                master.library_file = twin.file
                matcher.masters.remove(twin)


def make_plan(
    records: list[FrameRecord],
    config: Mapping[str, Any],
    cameras: Mapping[str, Mapping[str, Any]],
    library: Iterable[LibraryMaster] = (),
    checksums: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole plan as a JSON-able dict (see module docstring).

    ``cameras`` maps each camera name found in the inventory to its resolved profile;
    ``library`` holds the library's masters (``library.scan_library``), candidates next to
    tonight's; ``checksums`` (raw path -> sha256) gives tonight's masters their identity.
    Applies ``missing_calibration``: a light lacking a step is flagged, skipped, or the
    night stops (PlanError naming every such light and why).
    """
    tonight = build_masters(records, cameras)
    candidates = [Master.from_library(record) for record in library]
    records_by_path = {r.path: r for r in records}
    matcher = Matcher([*tonight, *candidates], cameras)
    _resolve_masters(tonight, candidates, matcher, checksums, cameras)
    fringes = build_fringe_masters(records, cameras, matcher, {m.name for m in matcher.masters})
    _resolve_fringe_masters(fringes, candidates, matcher, checksums, cameras)
    tonight += fringes

    by_name = {m.name: m for m in matcher.masters}
    policy = config["missing_calibration"]
    light_records = [r for r in records if r.ok and r.frame_type == "light"]
    outputs = output_names(
        (r.path for r in light_records),
        {r.path: (cameras.get(r.camera) or {}).get("output", {}).get("compression") for r in light_records},
    )
    lights: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    skipped: dict[str, str] = {}
    group_pixels: dict[str, int] = {}
    for record in sorted((r for r in records if r.ok and r.frame_type == "light"), key=lambda r: r.path):
        target = target_of(record, "light")
        choice = matcher.choose(target)
        flags = missing_steps(choice.to_json(), matcher.wanted(target)) + inherited_flags(choice, by_name)
        if matcher.fringe_band(target) and not choice.fringe:
            flags.append("NOFRINGE")
        lacking = [step for step in MASTER_TYPES if MISSING_FLAGS[step] in flags and step in policy["steps"]]
        entry = {
            "path": record.path,
            "output": outputs[record.path],
            "exptime": record.exptime,
            "binning": record.binning,
            "shape": record.shape,
            "flags": flags,
            **choice.to_json(),
        }
        if plain_output_name(outputs[record.path]) != plain_output_name(record.path):
            entry["notes"] = [
                *entry["notes"],
                f"written as {outputs[record.path]}: {plain_output_name(record.path)} is another raw file's output",
            ]
        if lacking and policy["policy"] == "stop":
            missing.append(f"{record.path}: no {', no '.join(lacking)} ({'; '.join(choice.notes)})")
        if lacking and policy["policy"] == "skip":
            skipped[record.path] = f"skipped: no {', no '.join(lacking)} ({'; '.join(choice.notes)})"
            lights[record.path] = {"group": None, "skipped": skipped[record.path], **entry}
            continue
        group = _group_id(record.camera, record.filter, choice)
        group_pixels[group] = max(group_pixels.get(group, 1), _pixels(record.shape or record.raw_shape))
        lights[record.path] = {"group": None, **entry}
        groups.setdefault(
            group,
            {
                "camera": record.camera,
                "filter": record.filter,
                "bias": choice.bias,
                "dark": choice.dark,
                "flat": choice.flat,
                **({"fringe": choice.fringe} if choice.fringe else {}),
                "lights": [],
            },
        )["lights"].append(entry)
    if missing:
        raise PlanError(
            "missing_calibration is 'stop' and these lights lack a calibration step:\n  " + "\n  ".join(missing)
        )

    light_groups: dict[str, dict[str, Any]] = {}
    for group_id in sorted(groups):
        group = groups[group_id]
        per_job = lights_per_job(config.get("lights_per_job", "auto"), group_pixels[group_id])
        chunks = balanced_chunks(group["lights"], per_job)
        for n, chunk in enumerate(chunks, start=1):
            name = group_id if len(chunks) == 1 else f"{group_id}_{n:03d}"
            light_groups[name] = {**{k: v for k, v in group.items() if k != "lights"}, "lights": chunk}
            for entry in chunk:
                lights[entry["path"]]["group"] = name

    used = {n for g in light_groups.values() for n in (g["bias"], g["dark"], g["flat"], g.get("fringe")) if n}
    for master in tonight:
        if master.type in CALIBRATED_INPUTS and (master.type != "fringe" or master.name in used):
            steps = CALIBRATED_INPUTS[master.type]
            used.update(c[step] for c in master.frame_calibration.values() for step in steps if c.get(step))
        if master.type == "dark" and master.bias:
            used.add(master.bias)
    _imported_biases(matcher, used)
    listed = [*tonight, *(m for m in matcher.masters if m.source != "tonight" and m.name in used)]
    masters_json = {m.name: {**m.to_json(), "used": m.name in used} for m in listed}
    setups: dict[str, dict[str, Any]] = {}
    library_files: dict[str, list[str]] = defaultdict(list)
    for master in listed:
        name = noise_name(master.setup)
        if master.source == "library":
            library_files[name].append(master.file)
        elif master.source == "tonight":
            setups[name] = master.setup
            masters_json[master.name]["noise"] = name
    for group in light_groups.values():
        setup = _setup_dict(records_by_path[group["lights"][0]["path"]])
        group["noise"] = noise_name(setup)
        setups[group["noise"]] = setup
    noise = noise_plans(records, cameras, setups, library_files)
    for master in listed:  # an imported master takes its setup's gain and read noise, when measured tonight
        if master.source == "pixinsight" and noise_name(master.setup) in noise:
            masters_json[master.name]["noise"] = noise_name(master.setup)
    return {
        "version": PLAN_VERSION,
        "cameras": {name: cameras[name] for name in sorted(cameras)},
        "masters": masters_json,
        "noise": noise,
        "light_groups": light_groups,
        "lights": lights,
        "matches": matcher.rows,
    }


def fringe_band_lights(records: Iterable[FrameRecord], cameras: Mapping[str, Mapping[str, Any]]) -> list[FrameRecord]:
    """The usable lights of the bands their camera's ``fringe.filters`` names (with the
    fringe step among its steps): what fringe frames are made from."""
    found = []
    for record in records:
        if not (record.ok and record.frame_type == "light" and record.camera in cameras):
            continue
        profile = cameras[record.camera]
        bands = {str(f).strip().lower() for f in (profile.get("fringe") or {}).get("filters", [])}
        if bands and "fringe" in (profile.get("steps") or DEFAULT_STEPS) and record.filter.strip().lower() in bands:
            found.append(record)
    return found


def build_fringe_masters(
    records: list[FrameRecord], cameras: Mapping[str, Mapping[str, Any]], matcher: Matcher, taken: set[str]
) -> list[Master]:
    """Tonight's fringe frames: per camera, setup and fringing band, its lights, when there
    are at least ``fringe.min_frames`` of them (else the lights take the library's). Each
    input is calibrated with the masters the light itself gets (``Matcher.choose``)."""
    by_band: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for record in fringe_band_lights(records, cameras):
        by_band[(*setup_key(record), record.filter.strip().lower())].append(record)
    masters = []
    for key in sorted(by_band, key=lambda k: tuple(str(p) for p in k)):
        frames = sorted(by_band[key], key=lambda f: f.path)
        first = frames[0]
        if len(frames) < cameras[first.camera]["fringe"]["min_frames"]:
            continue
        name = _unique_name(f"fringe_{_setup_label(first)}_{safe_name(first.filter.strip(), 'nofilter')}", taken)
        master = Master(
            name,
            "fringe",
            first.camera,
            _setup_dict(first),
            frames,
            _mean(f.temperature_c for f in frames),
            _mean(f.exptime for f in frames),
            first.filter.strip(),
        )
        for frame in frames:
            choice = matcher.choose(target_of(frame, "light"), record=False, fringe=False)
            master.frame_calibration[frame.path] = choice.to_json()
        wanted = masters_wanted(cameras[first.camera].get("steps"), "light")
        master.flags = sorted({f for c in master.frame_calibration.values() for f in missing_steps(c, wanted)})
        masters.append(master)
    return masters


def _resolve_fringe_masters(
    fringes: list[Master], library: list[Master], matcher: Matcher, checksums: Mapping[str, str] | None, cameras
) -> None:
    """Tonight's fringe frames get their identity (their lights' checksums and the masters
    each was calibrated with) and become candidates; one identical to a library fringe
    frame is linked to it instead of being rebuilt."""
    identities = {m.name: m.identity for m in matcher.masters}
    by_identity = {m.identity: m for m in library if not m.damaged and m.type == "fringe"}
    for master in fringes:
        if checksums is not None:
            master.identity = master_identity(master, checksums, cameras[master.camera], identities)
        twin = by_identity.get(master.identity) if master.identity else None
        if twin is not None:
            master.library_file = twin.file
            matcher.masters.remove(twin)
        matcher.masters.append(master)


def _imported_biases(matcher: Matcher, used: set[str]) -> None:
    """Each PixInsight dark used gets the bias that measures its dark current (its
    UNCERT's shot noise, ``pixinsight_import``), which is then used too; one without a
    usable bias gets none (its import says so)."""
    for master in [m for m in matcher.masters if m.source == "pixinsight" and m.type == "dark" and m.name in used]:
        bias = matcher.bias_for(target_of_master(master), record=False, exclude=lambda m: bool(m.derived_from))
        master.bias = bias.master.name if bias else None
        if master.bias:
            used.add(master.bias)


def inherited_flags(choice: Choice, masters: Mapping[str, Master]) -> list[str]:
    """The missing steps of the masters a frame gets, as its own flags: a master flat made
    without bias or dark gives its lights FLAT-NOBIAS, FLAT-NODARK."""
    return [
        f"{step.upper()}-{flag}"
        for step in MASTER_TYPES
        if getattr(choice, step)
        for flag in masters[getattr(choice, step)].flags
    ]


def output_names(rel_paths: Iterable[str], compression: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The calibrated file of each light (raw paths relative to raw_dir), all different.

    Each light gets ``plain_output_name``. Where several would share one (``a.fits`` and
    ``a.fits.fz``, or ``a.xisf``), the uncompressed FITS file keeps it and each other one keeps its
    compression or format as a word before the extension (``a_fz.fits``, ``a_xisf.fits``), with ``_2``, ``_3``... added
    (in path order) while that is still taken. Deterministic: the same raw paths give the
    same names. ``compression``: each light's ``output.compression``; a light written
    compressed (rice, gzip) gets ``.fz`` added to that name (``a.fits.fz``, ``a_fz.fits.fz``)."""
    paths = sorted(rel_paths)
    wanted = {p: plain_output_name(p) for p in paths}
    sharing = Counter(wanted.values())
    names = {p: wanted[p] for p in paths if sharing[wanted[p]] == 1 or wanted[p] == p}
    taken = set(wanted.values())
    for path in paths:
        if path in names:
            continue
        stem, dot, ext = wanted[path].rpartition(".")
        word = path.rpartition(".")[2].lower()
        base = f"{stem}_{word}" if dot else f"{wanted[path]}_{word}"
        candidate, n = f"{base}{dot}{ext if dot else ''}", 2
        while candidate in taken:
            candidate, n = f"{base}_{n}{dot}{ext if dot else ''}", n + 1
        names[path] = candidate
        taken.add(candidate)
    if not compression:
        return names
    # the names end in .fits/.fit/.fts (inventory), never .fz: adding it keeps them all different
    return {path: compressed_name(name, compression.get(path)) for path, name in names.items()}


#: Pixels one light job calibrates when ``lights_per_job`` is "auto": 100 lights of
#: 4096 x 4096 (a minute or so of work), 400 of 2048 x 2048. Fewer, longer jobs spend less
#: on starting processes and on the scheduler; the masters are read once per job.
LIGHT_JOB_PIXELS = 100 * 4096 * 4096


def lights_per_job(setting: int | str, pixels_per_light: int) -> int:
    """The most lights one job calibrates: ``setting`` (the config's ``lights_per_job``),
    or for "auto" as many as make LIGHT_JOB_PIXELS."""
    if setting == "auto":
        return max(1, LIGHT_JOB_PIXELS // max(int(pixels_per_light), 1))
    return int(setting)


def balanced_chunks(items: list, most: int) -> list[list]:
    """``items`` cut, in order, into the fewest chunks of at most ``most`` items, of sizes
    that differ by at most one (larger first): 500 by 400 gives 250 + 250, not 400 + 100."""
    n_chunks = -(-len(items) // max(most, 1))
    if n_chunks == 0:
        return []
    size, extra = divmod(len(items), n_chunks)
    chunks, start = [], 0
    for i in range(n_chunks):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def _pixels(shape: str) -> int:
    """Pixels of a 'NYxNX' shape (1 when unknown)."""
    try:
        ny, nx = parse_shape(shape)
    except (AttributeError, ValueError):
        return 1
    return max(ny * nx, 1)


def master_inputs(plan: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Raw frames (relative paths) and other masters a master is built from."""
    master = plan["masters"][name]
    if master.get("library_file"):  # identical to a library master: linked, not rebuilt
        return {"frames": [], "masters": [], "library": [master["library_file"]]}
    if master.get("derived_from"):  # a bias fitted from dark masters
        return {"frames": [], "masters": sorted(master["derived_from"]), "library": []}
    needed = set()
    if master["type"] == "dark" and master.get("bias"):
        needed.add(master["bias"])
    for frame in master["frames"]:
        calibration = frame.get("calibration") or {}
        needed.update(v for v in (calibration.get("bias"), calibration.get("dark"), calibration.get("flat")) if v)
    return {"frames": [f["path"] for f in master["frames"]], "masters": sorted(needed), "library": []}
