"""The gain (e-/ADU) and read noise (e-) a night's frames are calibrated with, per setup.

Three parts, one per stage of the workflow:

* :func:`noise_plans` (plan, pure Python on inventory records): for each setup (camera,
  binning, shape, gain setting, offset, readout mode) which frames measure its noise: a
  bias pair, pairs of flats of equal exposure with their zero pair (the bias pair, or two
  darks of the flats' exposure), dark pairs, the library masters it uses.
* :func:`measure_setup` (job): opens those frames (overscan-corrected and trimmed, ADU)
  and measures with :mod:`ccdcal.noise`: read noise from the bias pair, gain from the
  flat pairs' photon-transfer points (a fitted curve when the flats are at several
  levels), read noise from dark pairs when there is no bias (the dark current's shot
  noise removed by the intercept over exposures). A frame or measurement that fails is
  reported, never fatal: the record says why.
* :func:`decide` (job): the values used and where they come from (``GAINSRC``,
  ``RNSOURCE``). Gain: the camera profile's value; the header keyword the profile names;
  the measured gain; a library master's gain; else 1.0 with the flag ``NOGAIN``. When a
  header (or profile) value disagrees with the measurement by more than
  ``DISAGREEMENT_SIGMA`` of the measurement's uncertainty (with a ``GAIN_SYSTEMATIC``
  floor), a warning says so; the header's ``GAIN`` is ambiguous (CCD drivers write e-/ADU
  there, CMOS drivers the gain *setting*), so when it disagrees the measurement is used.
  Read noise: profile value; a bias pair tonight (exact, and tonight's: a header's value
  is often the nominal one, and a disagreement is warned about); the header keyword; a
  library bias's RDNOISE; dark pairs of several exposures tonight; another library
  master's RDNOISE (a dark library's darks carry the read noise measured when they were
  made); dark pairs of one exposure (an upper limit: the dark shot noise cannot be
  removed); else 0 with the flag ``NORDNOISE``. Never a silent default.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .camera import FRAME_TYPES, CameraProfile, safe_name
from .frames import FrameError, open_frame
from .noise import (
    NoiseMeasurementError,
    dark_variance_rate,
    flat_pair_point,
    photon_transfer,
    read_noise_from_dark_pairs,
    read_noise_from_pair,
)
from .overscan import FrameCorrector, layout_for, overscan_pixel_noise

log = logging.getLogger("ccdcal.noise")

#: Most flat pairs measured per setup (spread over the night's flats: their levels).
MAX_FLAT_PAIRS = 6
#: Most dark exposures whose pair measures the read noise when there is no bias.
MAX_DARK_EXPOSURES = 4
#: A given value disagrees with the measured one when they differ by more than this many
#: standard errors of the measurement ...
DISAGREEMENT_SIGMA = 3.0
#: ... with these fractional floors on that error (the method's own systematics: a
#: flat field's colour, non-linearity; a read noise in a header is rounded).
GAIN_SYSTEMATIC = 0.02
READ_NOISE_SYSTEMATIC = 0.02
#: Header keywords that hold the gain in e-/ADU for some cameras and a setting for others.
AMBIGUOUS_GAIN_KEYWORDS = ("GAIN",)
#: Header cards listed in the record, for the reader (what the camera said).
REPORTED_CARDS = ("GAIN", "EGAIN", "RDNOISE", "READNOIS", "RON")


def noise_name(setup: Mapping[str, Any]) -> str:
    """The setup's name, e.g. 'demo-ccd_1x1_1024x1024_g100': the noise record's file stem."""
    parts = [safe_name(setup["camera"]), setup["binning"], setup["shape"] or "noshape"]
    for prefix, key in (("g", "gain_setting"), ("o", "offset"), ("", "readout_mode")):
        if setup.get(key):
            parts.append(prefix + safe_name(str(setup[key])))
    return safe_name("_".join(parts))


def _pairs(paths: Sequence[str]) -> list[list[str]]:
    return [list(paths[i : i + 2]) for i in range(0, len(paths) - 1, 2)]


def _spread(items: list, most: int) -> list:
    """At most ``most`` of ``items``, evenly spread (first and last kept)."""
    if len(items) <= most:
        return items
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]


def noise_plans(
    records: Iterable,
    cameras: Mapping[str, Mapping[str, Any]],
    setups: Mapping[str, Mapping[str, Any]],
    library_files: Mapping[str, list[str]],
) -> dict[str, dict[str, Any]]:
    """The noise measurement of each setup: ``setups`` maps noise names to setup dicts
    (the plan's), ``library_files`` noise names to the library masters used (paths).
    Records are inventory FrameRecords; frames are raw_dir-relative paths, in time order."""
    by_setup: dict[str, list] = {name: [] for name in setups}
    for record in records:
        if record.ok:
            name = noise_name(_record_setup(record))
            if name in by_setup:
                by_setup[name].append(record)
    plans = {}
    for name, setup in sorted(setups.items()):
        frames = sorted(by_setup[name], key=lambda r: (r.time_s is None, r.time_s or 0.0, r.path))
        camera = cameras[setup["camera"]]
        tolerance = float(camera["dark"]["exposure_tolerance"])
        of_type = {kind: [r for r in frames if r.frame_type == kind] for kind in FRAME_TYPES}
        bias_pair = [r.path for r in of_type["bias"][:2]] if len(of_type["bias"]) >= 2 else []
        darks_at: dict[float, list[str]] = {}
        for record in _at_lights_temperature(of_type["dark"], of_type["light"], float(camera["temperature_tolerance"])):
            key = next((t for t in darks_at if abs(t - (record.exptime or 0.0)) <= tolerance), record.exptime or 0.0)
            darks_at.setdefault(key, []).append(record.path)
        # flats of one filter (and OBJECT: lamp settings) in time order, paired; with a
        # bias pair their levels need not be equal (flat_pair_point scales one to the
        # other), with a darkflat pair as zero their exposure must be the darks'
        flat_pairs = []
        flats_by: dict[tuple, list[str]] = {}
        for record in of_type["flat"]:
            exposure = None if bias_pair else round(record.exptime or 0.0, 3)
            flats_by.setdefault((record.filter, record.object, exposure), []).append(record)
        for (filt, _, exposure), group in sorted(flats_by.items(), key=lambda kv: str(kv[0])):
            zero, zero_kind = bias_pair, "bias pair"
            if not zero:
                darks = next((p for t, p in darks_at.items() if abs(t - exposure) <= tolerance), [])
                zero, zero_kind = (darks[:2], "darkflat pair") if len(darks) >= 2 else ([], "")
            if zero:
                flat_pairs += [
                    {
                        "flats": [a.path, b.path],
                        "zero": zero,
                        "zero_kind": zero_kind,
                        "filter": filt,
                        "exptime": [a.exptime, b.exptime],
                    }
                    for a, b in _pairs(group)
                ]
        dark_pairs = [{"exptime": t, "darks": paths[:2]} for t, paths in sorted(darks_at.items()) if len(paths) >= 2]
        header_frames = [kind_frames[0].path for kind_frames in of_type.values() if kind_frames]
        plans[name] = {
            "name": name,
            "setup": dict(setup),
            "bias_pair": bias_pair,
            "flat_pairs": _spread(flat_pairs, MAX_FLAT_PAIRS),
            "dark_pairs": _spread(dark_pairs, MAX_DARK_EXPOSURES),
            "header_frames": header_frames,
            "library": sorted(library_files.get(name, [])),
        }
    return plans


def _at_lights_temperature(darks: list, lights: list, tolerance: float) -> list:
    """The darks within ``tolerance`` (C) of the lights' median temperature (of the darks'
    when the lights have none): dark current doubles every ~6 C, and the pairs measure the
    dark noise the lights carry."""
    temperatures = [r.temperature_c for r in lights if r.temperature_c is not None] or [
        r.temperature_c for r in darks if r.temperature_c is not None
    ]
    if not temperatures:
        return darks
    reference = float(np.median(temperatures))
    return [r for r in darks if r.temperature_c is not None and abs(r.temperature_c - reference) <= tolerance]


def _record_setup(record) -> dict[str, Any]:
    return {
        "camera": record.camera,
        "binning": record.binning,
        "shape": record.shape,
        "gain_setting": record.gain_setting,
        "offset": record.offset,
        "readout_mode": record.readout_mode,
    }


def plan_frames(plan: Mapping[str, Any]) -> list[str]:
    """Every raw frame a noise plan reads (relative paths, sorted)."""
    paths = set(plan["bias_pair"]) | set(plan["header_frames"])
    for pair in plan["flat_pairs"]:
        paths.update(pair["flats"])
        paths.update(pair["zero"])
    for pair in plan["dark_pairs"]:
        paths.update(pair["darks"])
    return sorted(paths)


# ----------------------------------------------------------------------------- job


class _Frames:
    """Raw frames opened on demand, overscan-corrected and trimmed (float32 ADU), kept."""

    def __init__(self, raw_dir: Path, profile: CameraProfile):
        self.raw_dir, self.profile = raw_dir, profile
        self.images: dict[str, tuple[np.ndarray, float]] = {}
        self.headers: dict[str, fits.Header] = {}
        self.layouts: dict[str, Any] = {}
        self.levels: dict[str, list[float]] = {}  # each amplifier's mean overscan level, ADU
        self.overscan_noise: dict[str, list[float]] = {}  # biases: each overscan's pixel noise

    def image(self, rel: str, overscan_noise: bool = False) -> tuple[np.ndarray, float]:
        """(image ADU, saturation in raw ADU); FrameError/ValueError naming the file. With
        ``overscan_noise``, each overscan strip's pixel noise is kept too (biases)."""
        if rel not in self.images:
            with open_frame(self.raw_dir / rel, label=rel) as raw:
                raw.check_complete()
                layout = layout_for(raw.header, raw.shape, self.profile.config)
                saturation, _ = self.profile.value_or_keyword(raw.header, "saturation")
                corrector = FrameCorrector(raw.read, layout)
                data, _ = corrector.full()
                self.images[rel] = (
                    np.asarray(data, dtype=np.float32),  # a fresh array: no copy
                    float(saturation if saturation is not None else raw.integer_max),
                )
                self.headers[rel] = raw.header
                self.layouts[rel], self.levels[rel] = layout, corrector.levels
                if overscan_noise and layout.corrects:
                    self.overscan_noise[rel] = overscan_pixel_noise(raw.read, layout)
        return self.images[rel]

    def header(self, rel: str):
        if rel not in self.headers:
            with open_frame(self.raw_dir / rel, label=rel) as raw:
                self.headers[rel] = raw.header
        return self.headers[rel]


#: Box sizes (pixels) tried, largest first, and the fewest whole boxes one must give.
BOX_SIZES = (64, 32, 16)
MIN_WHOLE_BOXES = 24


def box_for(shape: tuple[int, int]) -> int:
    """The box size of the noise statistics for a frame of ``shape`` (ny, nx): the largest
    of BOX_SIZES giving at least MIN_WHOLE_BOXES whole boxes (the smallest otherwise)."""
    for box in BOX_SIZES:
        if (shape[0] // box) * (shape[1] // box) >= MIN_WHOLE_BOXES:
            return box
    return BOX_SIZES[-1]


#: The noise statistics use at most this many pixels per axis, about the frame's centre:
#: 256 boxes of 64 x 64 give a flat pair's gain to ~0.2 % and the read noise to ~0.1 %
#: (the median of 256 box estimates), far below what the night's decisions need, and a
#: 4096 x 4096 frame's statistics cost 1/16 of the whole frame's (the noise job heads
#: every master's inputs: the night's critical path).
MAX_NOISE_SIDE = 1024


def sampled(shape: tuple[int, int]) -> dict[str, Any]:
    """The ``box`` and ``region`` (numpy slices [y, x]: the central MAX_NOISE_SIDE square,
    None for a frame no larger) of the noise statistics of frames of ``shape`` (ny, nx)."""
    if max(shape) <= MAX_NOISE_SIDE:
        return {"box": box_for(shape), "region": None}
    (y0, ny), (x0, nx) = (((n - min(n, MAX_NOISE_SIDE)) // 2, min(n, MAX_NOISE_SIDE)) for n in shape)
    return {"box": box_for((ny, nx)), "region": (slice(y0, y0 + ny), slice(x0, x0 + nx))}


def level_of(image: np.ndarray) -> float:
    """The median (ADU) of every 4th row of ``image`` (numpy [y, x]): an image's level to
    ~1e-4 of its noise for a 4096 x 4096 frame, a quarter of a full median's time."""
    return float(np.median(image[::4]))


def _problem(rels: Sequence[str], exc: Exception) -> str:
    return f"{' + '.join(rels)}: {exc}"


def measure_setup(
    plan: Mapping[str, Any], camera: Mapping[str, Any], raw_dir: Path, threads: int = 1
) -> dict[str, Any]:
    """The night's noise measurements of one setup and the values decided (see
    :func:`decide`), as a JSON-able dict; problems are listed in it, never raised."""
    profile = CameraProfile(dict(camera))
    frames = _Frames(Path(raw_dir), profile)
    problems: list[str] = []
    measured: dict[str, Any] = {}

    read_noise_adu = None
    if plan["bias_pair"]:
        try:
            (a, _), (b, _) = (frames.image(rel, overscan_noise=True) for rel in plan["bias_pair"])
            estimate = read_noise_from_pair(a, b, **sampled(a.shape), threads=threads)
            read_noise_adu = estimate
            measured["read_noise_adu"] = {
                "value": estimate.value,
                "error": estimate.error,
                "method": f"bias pair {' + '.join(plan['bias_pair'])}",
                "upper_limit": False,
            }
        except (FrameError, ValueError, OSError) as exc:
            problems.append("read noise from the bias pair: " + _problem(plan["bias_pair"], exc))

    points, point_rows = [], []
    for pair in plan["flat_pairs"]:
        try:
            (f1, saturation), (f2, _) = (frames.image(rel) for rel in pair["flats"])
            (z1, _), (z2, _) = (frames.image(rel) for rel in pair["zero"])
            point = flat_pair_point(
                f1,
                f2,
                z1,
                z2,
                saturation=saturation,
                **sampled(f1.shape),
                zero_kind=pair["zero_kind"],
                threads=threads,
            )
        except (FrameError, ValueError, OSError) as exc:
            problems.append("flat pair: " + _problem(pair["flats"], exc))
            continue
        points.append(point)
        point_rows.append(
            {
                "flats": pair["flats"],
                "filter": pair["filter"],
                "exptime": pair["exptime"],
                "zero_kind": pair["zero_kind"],
                "signal_adu": point.signal,
                "gain": point.gain,
                "gain_error": point.gain_error,
                "level_ratio": point.level_ratio,
                "boxes_used": point.boxes_used,
            }
        )
    if points:
        try:
            result = photon_transfer(points)
            measured["gain"] = {
                "value": result.gain,
                "error": result.gain_error,
                "method": result.method,
                "points": point_rows,
                "nonlinearity": result.nonlinearity,
            }
        except NoiseMeasurementError as exc:
            problems.append(f"gain: {exc}")

    pairs = []
    for pair in plan["dark_pairs"]:
        try:
            (d1, _), (d2, _) = (frames.image(rel) for rel in pair["darks"])
        except (FrameError, ValueError, OSError) as exc:
            problems.append("dark pair: " + _problem(pair["darks"], exc))
            continue
        pairs.append((pair["exptime"], d1, d2))
    if pairs:
        statistics = sampled(pairs[0][1].shape)
        if read_noise_adu is None:
            try:
                rn = read_noise_from_dark_pairs(pairs, **statistics, threads=threads)
                measured["read_noise_adu"] = {
                    "value": rn.value,
                    "error": rn.error,
                    "method": rn.method,
                    "upper_limit": rn.upper_limit,
                }
            except (NoiseMeasurementError, ValueError) as exc:
                problems.append(f"read noise from dark pairs: {exc}")
        try:
            rate = dark_variance_rate(
                pairs,
                **statistics,
                threads=threads,
                read_noise=None if read_noise_adu is None else read_noise_adu.value,
            )
            exposures = sorted({t for t, _, _ in pairs})
            measured["dark_variance_rate"] = {
                "value": rate.value,
                "error": rate.error,
                "method": f"{len(pairs)} dark pairs at {', '.join(f'{t:g}' for t in exposures)} s",
            }
        except NoiseMeasurementError as exc:
            problems.append(f"dark-current noise: {exc}")
    overscan = overscan_figures(frames, plan, read_noise_adu.value if read_noise_adu else None)
    frames.images.clear()

    headers = []
    for rel in plan["header_frames"]:
        try:
            headers.append((rel, frames.header(rel)))
        except (FrameError, ValueError, OSError) as exc:
            problems.append(f"header of {rel}: {exc}")
    library = []
    for path in plan["library"]:
        try:
            library.append((path, fits.getheader(path)))
        except (OSError, ValueError) as exc:
            problems.append(f"library master {path}: {exc}")
    decided = decide(profile, headers, measured, library)
    cards = {}
    for rel, header in headers:
        for key in REPORTED_CARDS:
            value = header.get(key)
            if value is not None and key not in cards:
                cards[key] = {"value": value, "frame": rel}
    # the dark current's shot noise (ADU^2 per s): what a frame whose dark was subtracted
    # without a bias, and a dark master made without one, still carry; 0 when unmeasured
    rate = measured.get("dark_variance_rate", {}).get("value", 0.0)
    decided["dark_variance_rate"] = round(max(rate, 0.0), 8)
    return {
        "name": plan["name"],
        "setup": plan["setup"],
        **decided,
        "measured": measured,
        "overscan": overscan,
        "header_cards": {k: cards[k] for k in sorted(cards)},
        "problems": problems,
    }


def overscan_figures(frames: _Frames, plan: Mapping[str, Any], read_noise_adu: float | None) -> list[dict[str, Any]]:
    """Per amplifier with an overscan, what tells a usable overscan (ADU): its mean level on
    every frame measured (``levels``, time order); on the biases, its pixel noise against
    the read noise and the image area's level once it is subtracted (``bias_residual``:
    ~0 when the overscan holds the bias level); on the flats, how far its level rises above
    the biases' (``flat_excess``) for the flats' signal (``flat_signal``): an overscan that
    sees light (a section inside the illuminated area) rises with it (``light_fraction``:
    the rise beyond the spread of the unlit frames' levels, the night's drift, over the
    signal)."""
    layout = next(iter(frames.layouts.values()), None)
    if layout is None or not layout.corrects:
        return []
    biases = [rel for rel in plan["bias_pair"] if rel in frames.levels]
    flats = [rel for pair in plan["flat_pairs"] for rel in pair["flats"] if rel in frames.levels]
    darks = [rel for pair in plan["dark_pairs"] for rel in pair["darks"] if rel in frames.levels]
    order = {rel: i for i, rel in enumerate(plan_frames(plan))}
    figures = []
    for i, amp in enumerate(layout.amplifiers):
        entry: dict[str, Any] = {
            "amplifier": i + 1,
            "section": str(amp.overscan),
            "data": str(amp.data),
            "levels": [frames.levels[rel][i] for rel in sorted(frames.levels, key=order.get)],
        }
        rows, cols = _in_trim(amp.data, layout.trim)
        if biases:
            bias_level = float(np.mean([frames.levels[rel][i] for rel in biases]))
            entry["bias_residual"] = float(np.median([level_of(frames.images[rel][0][rows, cols]) for rel in biases]))
            noise = [frames.overscan_noise[rel][i] for rel in biases if rel in frames.overscan_noise]
            if noise and read_noise_adu:
                entry.update(
                    noise=float(np.mean(noise)),
                    read_noise=read_noise_adu,
                    noise_ratio=float(np.mean(noise)) / read_noise_adu,
                )
            if flats:
                # the unlit frames' spread is the night's drift, not light
                unlit = [frames.levels[rel][i] for rel in biases + darks]
                excess = float(np.median([frames.levels[rel][i] for rel in flats])) - bias_level
                signal = (
                    float(np.median([level_of(frames.images[rel][0][rows, cols]) for rel in flats]))
                    + excess
                    - entry["bias_residual"]
                )  # the flat's level above the bias
                beyond_drift = max(abs(excess) - (max(unlit) - min(unlit)), 0.0)
                entry.update(
                    flat_excess=excess, flat_signal=signal, light_fraction=beyond_drift / signal if signal > 0 else None
                )
        figures.append(entry)
    return figures


def _in_trim(data, trim) -> tuple[slice, slice]:
    """numpy slices, in the trimmed frame, of the part of a data section inside the trim."""
    x1, x2 = max(data.x1, trim.x1) - trim.x1, min(data.x2, trim.x2) - trim.x1 + 1
    y1, y2 = max(data.y1, trim.y1) - trim.y1, min(data.y2, trim.y2) - trim.y1 + 1
    return slice(y1, max(y1, y2)), slice(x1, max(x1, x2))


def _header_value(profile: CameraProfile, headers, what: str) -> tuple[float | None, str, list[str]]:
    """The value of the keyword the profile names for ``what`` in the setup's frames:
    (value, 'header KEY', warnings); a value differing between frames is warned about."""
    seen, warnings = [], []
    for rel, header in headers:
        value, source = profile.value_or_keyword(header, what)
        if value is not None:
            seen.append((value, source, rel))
        elif source != "unknown":
            warnings.append(f"{rel}: {source}")
    if not seen:
        return None, "unknown", warnings
    value, source, rel = seen[0]
    others = sorted({f"{v:g} ({r})" for v, _, r in seen[1:] if not math.isclose(v, value, rel_tol=1e-6)})
    if others:
        warnings.append(f"{source} differs between frames: {value:g} ({rel}), {', '.join(others)}; {value:g} used")
    return value, source, warnings


def _disagrees(given: float, measured: Mapping[str, Any], floor: float) -> float | None:
    """How many standard errors ``given`` is from the measurement, when beyond
    ``DISAGREEMENT_SIGMA`` (the error floored at ``floor`` x the value); else None."""
    error = math.hypot(measured["error"], floor * measured["value"])
    distance = abs(given - measured["value"]) / error
    return distance if distance > DISAGREEMENT_SIGMA else None


def decide(
    profile: CameraProfile,
    headers: Sequence[tuple[str, Any]],
    measured: Mapping[str, Any],
    library: Sequence[tuple[str, Any]] = (),
) -> dict[str, Any]:
    """The gain (e-/ADU) and read noise (e-) to use, their sources and errors, flags
    (NOGAIN, NORDNOISE) and warnings; see the module docstring for the order."""
    warnings: list[str] = []
    flags: list[str] = []
    m_gain = measured.get("gain")
    configured = profile.config["gain"].get("value")
    if configured is not None:
        gain, gain_source = float(configured), "config"
    else:
        gain, gain_source, header_warnings = _header_value(profile, headers, "gain")
        warnings += header_warnings
    gain_error = 0.0
    if gain is not None and m_gain:
        sigma = _disagrees(gain, m_gain, GAIN_SYSTEMATIC)
        keyword = gain_source.removeprefix("header ")
        if sigma is not None and gain_source.startswith("header") and keyword in AMBIGUOUS_GAIN_KEYWORDS:
            warnings.append(
                f"{gain_source} = {gain:g} is not the measured gain "
                f"{m_gain['value']:.4g} +- {m_gain['error']:.2g} e-/ADU ({sigma:.0f} sigma): "
                f"cameras write {keyword} in e-/ADU or as a setting; the measured gain is used"
            )
            gain = None
        elif sigma is not None:
            warnings.append(
                f"gain {gain:g} e-/ADU ({gain_source}) disagrees with the measured "
                f"{m_gain['value']:.4g} +- {m_gain['error']:.2g} e-/ADU ({sigma:.0f} sigma); "
                f"{gain:g} used"
            )
    if gain is None and m_gain:
        gain, gain_error = m_gain["value"], m_gain["error"]
        gain_source = f"measured: {m_gain['method']}"
    if gain is None:
        gain, gain_source = _library_value(library, "EGAIN", "GAINSRC")
    if gain is None:
        gain, gain_source = 1.0, "unknown: no flat pair with a zero pair to measure it, none given"
        flags.append("NOGAIN")
        warnings.append(
            "gain unknown: 1.0 e-/ADU used, the lights are flagged NOGAIN (give "
            "cameras[].gain, or take two flats and two biases)"
        )

    m_rn = measured.get("read_noise_adu")
    m_rn_e = None if not m_rn else {"value": m_rn["value"] * gain, "error": m_rn["error"] * gain}
    from_bias_pair = bool(m_rn) and m_rn["method"].startswith("bias pair")
    configured = profile.config["read_noise"].get("value")
    rn, rn_error, rn_source = None, 0.0, "unknown"
    if configured is not None:
        rn, rn_source = float(configured), "config"
    else:
        header_rn, header_source, header_warnings = _header_value(profile, headers, "read_noise")
        warnings += header_warnings
        if from_bias_pair:  # tonight's, and exact; a header's is often the nominal value
            rn, rn_error, rn_source = m_rn_e["value"], m_rn_e["error"], f"measured: {m_rn['method']}"
            sigma = None if header_rn is None else _disagrees(header_rn, m_rn_e, READ_NOISE_SYSTEMATIC)
            if sigma is not None:
                warnings.append(
                    f"read noise {header_rn:g} e- ({header_source}) is not tonight's: the bias "
                    f"pair gives {rn:.4g} +- {rn_error:.2g} e- ({sigma:.0f} sigma); the "
                    "measurement is used"
                )
        elif header_rn is not None:
            rn, rn_source = header_rn, header_source
    given = rn is not None and (rn_source == "config" or rn_source.startswith("header"))
    if given and m_rn_e and not m_rn["upper_limit"]:
        sigma = _disagrees(rn, m_rn_e, READ_NOISE_SYSTEMATIC)
        if sigma is not None:
            warnings.append(
                f"read noise {rn:g} e- ({rn_source}) disagrees with the measured "
                f"{m_rn_e['value']:.4g} +- {m_rn_e['error']:.2g} e- ({sigma:.0f} sigma); "
                f"{rn:g} used"
            )
    if rn is None:
        rn, rn_source = _library_value(library, "RDNOISE", "RNSOURCE", kind="bias")
    if rn is None and m_rn and not m_rn["upper_limit"]:
        rn, rn_error, rn_source = m_rn_e["value"], m_rn_e["error"], f"measured: {m_rn['method']}"
    if rn is None:  # a night of lights on a dark library: the darks' read noise
        rn, rn_source = _library_value(library, "RDNOISE", "RNSOURCE")
    if rn is None and m_rn:
        rn, rn_error, rn_source = m_rn_e["value"], m_rn_e["error"], f"measured: {m_rn['method']}"
        warnings.append(
            f"read noise {rn:.4g} e- is an upper limit (dark pairs of one exposure and no "
            "bias: the dark current's shot noise is in it); UNCERT is a little high"
        )
    if rn is None:
        rn, rn_source = 0.0, "unknown: no bias or dark pair to measure it, none given"
        flags.append("NORDNOISE")
        warnings.append(
            "read noise unknown: UNCERT lacks it, the lights are flagged NORDNOISE "
            "(give cameras[].read_noise, or take two biases)"
        )
    # to the precision the headers show them (RDNOISE, RNUSED: 4 decimals): one value
    # everywhere, whether a program reads it from this record or from a master
    return {
        "gain": round(gain, 6),
        "gain_error": gain_error,
        "gain_source": gain_source,
        "read_noise_e": round(rn, 4),
        "read_noise_error_e": rn_error,
        "read_noise_source": rn_source,
        "flags": flags,
        "warnings": warnings,
    }


def _library_value(
    library: Sequence[tuple[str, Any]], key: str, source_key: str, kind: str | None = None
) -> tuple[float | None, str]:
    """A value a library master carries (EGAIN, RDNOISE), when its source was known."""
    for path, header in library:
        if kind and header.get("CCDCALTY") != kind:
            continue
        value, source = header.get(key), str(header.get(source_key, ""))
        if isinstance(value, (int, float)) and value > 0 and source and not source.startswith("unknown"):
            return float(value), f"library master {Path(path).name} ({key} from {source})"
    return None, "unknown"
