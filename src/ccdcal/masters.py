"""Building master bias, dark and flat frames: what every kind shares (opening the
inputs, stacking them, the uncertainty of the combination, the header and the file);
what makes each kind what it is lives in its recipe (``master_recipes``).

Every input is overscan-corrected and trimmed as it is read, in blocks of rows, so the
stack held in memory stays within ``memory_limit_mb`` whatever the number of frames.
Flats are first bias/dark-subtracted (their own choice in the plan), then divided by
their own median (over ``flat.normalize_region``); the combined master flat is divided
by its median over the same region, so the master has median 1 there.

Master uncertainty (UNCERT, 1-sigma) is modelled, not measured from the scatter: each
input has variance a + b * signal (read noise, shot noise, the masters it was corrected
with), and the combination of n_used values has variance c * mean(a + b * signal) / n_used
with c = ccdcal.combine.variance_factor: 1 for a mean, the exact factor of a median of
n_used Gaussian values (1 for 2 values, -> pi/2), the Monte Carlo one of a rejection
(times n_used^2, c = 1, for a plain sum).

Read noise: from the camera profile or header; when unknown, measured as
1.4826 MAD(f1 - f2) / sqrt(2) from the first two inputs of a bias or dark (written as
RDNOISE, in e-). Never from two flats, whose difference is dominated by photon noise:
a flat takes the RDNOISE of the bias (else dark) master it was calibrated with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from . import cfa
from .calibrate import Subtrahend, subtrahend
from .camera import CameraProfile
from .cfa import CfaLayout
from .combine import CombineSpec, combine_block, variance_factor_table
from .frames import FrameError, RawFrame, XisfFrame, copy_header_cards, open_frame, plain_output_name
from .inventory import parse_shape
from .library import library_cards
from .master_recipes import RECIPES, MasterJob, central_rows
from .memory import memory_returned_promptly, release_free_memory
from .noise import NoiseMeasurementError, read_noise_from_pair
from .overscan import FrameCorrector, layout_for
from .parallel import map_in_threads, release_thread_buffers, row_blocks, thread_buffer
from .previews import write_figure_data
from .products import NONFINITE, Product, ascii_header_text, read_product, write_product
from .provenance import add_software_cards
from .qc import master_statistics
from .resources import MASTER_PLANES_BYTES_PER_PIXEL, rows_per_block
from .stats import median
from .writers import write_fits_atomic

log = logging.getLogger("ccdcal.masters")


@dataclass
class InputFrame:
    """One input of a master, open and ready to be read block by block."""

    rel_path: str
    raw: RawFrame | XisfFrame
    corrector: FrameCorrector
    saturation: float | None
    exptime: float
    gain: float  # e-/ADU
    read_noise_adu: float | None
    gain_source: str = "unknown"
    sub: Subtrahend | None = None
    scale: float = 1.0  # multiplies the calibrated frame (flats: 1 / own median)
    level: float | None = None  # flats: own median (ADU)
    rejected: np.ndarray | None = None  # flats: sorted flat indices of star pixels to drop
    stars: np.ndarray | None = None  # flats: star pixels found (quality checks: star coverage)
    peak: float | None = None  # flats: 99.9th percentile, raw ADU (quality checks: saturation)

    def block(self, y0: int, y1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows y0:y1 calibrated as this input needs (into ``out`` when given); saturated
        and rejected pixels -> NaN (the combine fills them from the other frames)."""
        data, saturated = self.corrector.block(y0, y1, self.saturation, out=out)
        if self.sub is not None:
            self.sub.subtract(data, slice(y0, y1))
        if saturated is not None and saturated.any():
            data[saturated] = np.nan
        if self.rejected is not None and self.rejected.size:
            nx = data.shape[1]
            lo, hi = np.searchsorted(self.rejected, [y0 * nx, y1 * nx])
            data.reshape(-1)[self.rejected[lo:hi] - y0 * nx] = np.nan
        if self.scale != 1.0:
            data *= np.float32(self.scale)
        return data


def open_inputs(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    raw_dir: Path,
    masters: Mapping[str, Product],
    noise: Mapping[str, Any] | None = None,
) -> tuple[list[InputFrame], dict[str, str]]:
    """Open the master's input frames; a frame that cannot be used is dropped: (inputs,
    {raw path: why dropped}). A compressed frame is decompressed here (and kept), so that a
    corrupt one is dropped now rather than failing the combine. ``noise``: the setup's
    gain and read noise (``night_noise.measure_setup``); without it, each frame's from the
    profile or its header (gain 1.0 when unknown, said in GAINSRC and flagged NOGAIN)."""
    profile = CameraProfile(dict(camera))
    expected = parse_shape(spec["setup"]["shape"])
    inputs, dropped = [], {}
    for entry in spec["frames"]:
        rel = entry["path"]
        raw = None
        try:
            raw = open_frame(raw_dir / rel, label=rel)
            raw.check_complete()
            layout = layout_for(raw.header, raw.shape, profile.config)
            if layout.shape != expected:
                raise FrameError(f"{rel}: trimmed shape {layout.shape} differs from the group's {expected}")
            raw.read(slice(0, 1))
            corrector = FrameCorrector(raw.read, layout)
        except (FrameError, ValueError) as exc:
            if raw is not None:
                raw.close()
            dropped[rel] = str(exc).removeprefix(f"{rel}: ")
            log.warning("dropped %s: %s", rel, dropped[rel])
            continue
        saturation, _ = profile.value_or_keyword(raw.header, "saturation")
        if noise is not None:
            gain, gain_source = float(noise["gain"]), noise["gain_source"]
            read_noise_e = float(noise["read_noise_e"])
        else:
            gain, gain_source = profile.value_or_keyword(raw.header, "gain")
            read_noise_e, _ = profile.value_or_keyword(raw.header, "read_noise")
            if gain is None:
                gain, gain_source = 1.0, "unknown"
        frame = InputFrame(
            rel_path=rel,
            raw=raw,
            corrector=corrector,
            saturation=saturation if saturation is not None else raw.integer_max,
            exptime=float(entry.get("exptime") or 0.0),
            gain=gain,
            read_noise_adu=None if read_noise_e is None else read_noise_e / gain,
            gain_source=gain_source,
        )
        calibration = entry.get("calibration")
        if calibration:
            frame.sub = subtrahend(
                masters.get(calibration["bias"]) if calibration.get("bias") else None,
                masters.get(calibration["dark"]) if calibration.get("dark") else None,
                calibration.get("dark_mode"),
                calibration.get("dark_scale"),
            )
        inputs.append(frame)
    return inputs, dropped


def measure_read_noise(a: np.ndarray, b: np.ndarray) -> float:
    """Read noise (ADU) from two frames of the same kind (``noise.read_noise_from_pair``,
    in boxes of 64 pixels, smaller on a small frame). Raises NoiseMeasurementError."""
    box = max(4, min(64, min(a.shape) // 4))
    return read_noise_from_pair(a, b, box=box).value


def _read_noise_of_masters(masters: Mapping[str, Product], gain: float) -> tuple[float | None, str]:
    """Read noise (ADU) from the RDNOISE (e-) of the bias master, else the dark master, used
    to calibrate a master's inputs: (None, 'unknown') when there is none."""
    ranked = sorted(masters.values(), key=lambda m: (m.header.get("CCDCALTY") != "bias", m.path.name))
    for master in ranked:
        if "RDNOISE" in master.header:
            kind = master.header.get("CCDCALTY", "")
            return float(master.header["RDNOISE"]) / gain, f"master {kind}".strip()
    return None, "unknown"


def _read_noise_and_flags(
    spec,
    inputs: list[InputFrame],
    masters: Mapping[str, Product],
    noise: Mapping[str, Any] | None,
    shape: tuple[int, int],
) -> tuple[float, str, list[str]]:
    """The read noise (ADU) of the master's inputs, its source, and the flags to add:
    the setup's (``noise``; NOGAIN is not a bias's: its UNCERT is read noise in ADU); else
    the profile's or header's; a flat's bias master's; a pair of the inputs; a single
    frame's bias master's; else 0 with NORDNOISE."""
    kind = spec["type"]
    gain = inputs[0].gain
    if noise is not None:
        flags = [f for f in noise.get("flags", []) if kind != "bias" or f != "NOGAIN"]
        if "NORDNOISE" in flags:
            return 0.0, noise["read_noise_source"], flags
        return float(noise["read_noise_e"]) / gain, noise["read_noise_source"], flags
    flags = ["NOGAIN"] if inputs[0].gain_source == "unknown" and kind != "bias" else []
    read_noise, source = inputs[0].read_noise_adu, "config/header"
    if read_noise is None and kind != "flat" and len(inputs) >= 2:
        y0, y1 = central_rows(shape)
        a, _ = inputs[0].corrector.block(y0, y1)
        b, _ = inputs[1].corrector.block(y0, y1)
        try:
            read_noise, source = measure_read_noise(a, b), f"measured ({kind} pair)"
        except NoiseMeasurementError as exc:
            log.warning(
                "master %s: read noise not measured on %s + %s: %s",
                spec["name"],
                inputs[0].rel_path,
                inputs[1].rel_path,
                exc,
            )
    if read_noise is None:  # a flat, or one frame: the bias's, if it has one
        read_noise, source = _read_noise_of_masters(masters, gain)
    if read_noise is None:
        log.warning(
            "master %s: read noise unknown (no pair of frames, no bias, none in the "
            "profile or header): its UNCERT lacks it (CALFLAGS NORDNOISE)",
            spec["name"],
        )
        return 0.0, "unknown", [*flags, "NORDNOISE"]
    return read_noise, source, flags


def bias_from_darks(
    spec: Mapping[str, Any], darks: list[Product], output: Path, config_digest: str | None
) -> dict[str, Any]:
    """A master bias for a camera with no bias frames: per pixel, the intercept at zero
    exposure of a least-squares line through the master darks' levels (ADU) against their
    exposures (s). Intercept b = sum_i c_i D_i with c_i = 1/n - tbar (t_i - tbar) / Stt; its
    variance sum_i c_i^2 var_i uses the darks' UNCERT."""
    t = np.array([float(d.header["EXPTIME"]) for d in darks])
    n, tbar = len(t), float(np.mean(t))
    stt = float(np.sum((t - tbar) ** 2))
    coefficients = [np.float32(1.0 / n - tbar * (ti - tbar) / stt) for ti in t]
    data = np.zeros(darks[0].data.shape, dtype=np.float32)
    mask = np.zeros(data.shape, dtype=np.uint8)
    for c, dark in zip(coefficients, darks):
        data += dark.data * c
        mask |= dark.mask & NONFINITE
    # A dark made without a bias has only its read noise in UNCERT (its shot noise cannot be
    # told from the pedestal); with the intercept known, add the dark current's shot noise
    # (D - b) / gain, scaled like the read-noise term (UNCERT^2 / read noise^2 = c / n_used).
    variance = np.zeros_like(data)
    for c, dark in zip(coefficients, darks):
        gain = float(dark.header.get("EGAIN", 1.0) or 1.0)
        rn_adu = float(dark.header.get("RDNOISE", 0.0) or 0.0) / gain
        var_i = dark.variance.copy()
        if rn_adu > 0 and "DARKVAR" not in dark.header:  # else its shot noise is in UNCERT
            var_i += np.maximum(dark.data - data, 0) / np.float32(gain) * (dark.variance / np.float32(rn_adu**2))
        variance += var_i * (c * c)
    mask[~np.isfinite(data)] |= NONFINITE
    header = darks[0].header.copy()
    for key in [
        k
        for k in header
        if k.startswith(("IMCMB", "FLEVL"))
        or k in ("NHOTPIX", "HOTSIGMA", "DARKCUR", "DARKVAR", "BIASFILE", "DARKBIAS", "BUNIT", "CHECKSUM", "DATASUM")
    ]:
        header.remove(key, ignore_missing=True, remove_all=True)
    header["IMAGETYP"] = ("MASTER BIAS", "ccdcal master calibration")
    header["CCDCALTY"] = ("bias", "master type")
    header["EXPTIME"] = (0.0, "[s] the intercept at zero exposure")
    header["BIASSRC"] = ("darks", "fitted: dark level against exposure, per pixel")
    header["NCOMBINE"] = (len(darks), "master darks fitted")
    for i, dark in enumerate(darks, start=1):
        header[f"IMCMB{i:03d}"] = dark.path.name
        header[f"FITEXP{i:02d}"] = (float(t[i - 1]), f"[s] exposure of dark {i}")
    if spec.get("identity"):
        header["MASTERID"] = (spec["identity"], "digest of inputs, parameters, masters, version")
    add_software_cards(header, config_digest)
    uncert = np.sqrt(variance)
    write_product(output, data, uncert, mask, header, unit="adu")
    return {
        "name": spec["name"],
        "type": "bias",
        "n_used": n,
        "used": [d.path.stem for d in darks],
        "dropped": {},
        "median": float(np.nanmedian(data)),
        "read_noise_e": float(header.get("RDNOISE", 0.0)),
        "qc": master_statistics("bias", data, uncert, mask),
    }


def combine_inputs(
    inputs: list[InputFrame],
    spec: CombineSpec,
    shape: tuple[int, int],
    memory_limit_mb: float,
    threads: int,
    reserved_bytes: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Combine the inputs block by block: (combined image, n_used per pixel)."""
    ny, nx = shape
    step = rows_per_block(len(inputs), nx, memory_limit_mb, threads, reserved_bytes)
    data = np.empty(shape, dtype=np.float32)
    n_used = np.empty(shape, dtype=np.uint16)

    def work(y0: int) -> None:
        y1 = min(ny, y0 + step)
        stack = thread_buffer("combine stack", (len(inputs), y1 - y0, nx), np.float32)
        for i, frame in enumerate(inputs):
            frame.block(y0, y1, out=stack[i])
        result = combine_block(stack, spec)
        data[y0:y1] = result.data
        n_used[y0:y1] = result.n_used

    map_in_threads(work, range(0, ny, step), threads)
    release_thread_buffers()
    return data, n_used


def _variance_factor(spec: CombineSpec, n_used: np.ndarray) -> np.ndarray:
    """var(master) / var(one input) per pixel, as a new float32 plane: c(n_used) / n_used
    with c = :func:`~ccdcal.combine.variance_factor` (n_used = 0 counts as 1), or n_used
    for a plain sum (as ccdproc's sum_combine). Looked up in row blocks (bounded
    temporaries)."""
    if spec.method == "sum":
        return n_used.astype(np.float32)
    n = np.maximum(n_used, 1)
    table = variance_factor_table(spec, n)
    per_value = (table / np.maximum(np.arange(table.size), 1)).astype(np.float32)
    factor = np.empty(n.shape, dtype=np.float32)
    for rows in row_blocks(n.shape[0], 256):
        factor[rows] = per_value[n[rows]]
    return factor


def master_cfa(frame: InputFrame, camera: Mapping[str, Any]) -> tuple[CfaLayout | None, dict[str, Any]]:
    """The Bayer layout of the master's array and its Bayer cards (``cfa.trimmed``),
    from its first input; (None, {}) for a monochrome camera."""
    layout = frame.corrector.layout
    return cfa.trimmed(frame.raw.header, layout.raw_shape, layout.trim.slices, camera.get("bayer_pattern", "header"))


def _master_header(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    inputs: list[InputFrame],
    combine: CombineSpec,
    config_digest: str | None,
    dropped: list[str],
) -> fits.Header:
    header = fits.Header()
    first = inputs[0]
    copy_header_cards(header, first.raw.primary_header if first.raw.hdu_index else None, first.raw.image_header)
    # cards that describe one input, not the master
    for key in (
        "DATE-OBS",
        "DATE",
        "TIME-OBS",
        "UT",
        "OBJECT",
        "CCD-TEMP",
        "BIASSEC",
        "DATASEC",
        "TRIMSEC",
        "CHECKSUM",
        "DATASUM",
        "EXPTIME",
        "EXPOSURE",
        "SATURATE",
    ):
        header.remove(key, ignore_missing=True, remove_all=True)
    set_temps = [t for t in (f.raw.header.get("SET-TEMP") for f in inputs) if t is not None]
    for key, card in library_cards(spec, set_temps[0] if set_temps else None).items():
        header[key] = card
    header["EGAIN"] = (first.gain, "[e-/ADU] gain used")
    header["GAINSRC"] = (first.gain_source[:68], "where EGAIN comes from")
    header["NCOMBINE"] = (len(inputs), "number of frames combined")
    header["CALFLAGS"] = (",".join(spec.get("flags") or []) or "OK", "steps its inputs were calibrated without")
    header["COMBMETH"] = (combine.method, "combine method")
    header["REJECT"] = (combine.rejection, "rejection")
    if combine.rejection in ("sigma_clip", "mad_clip", "winsorized_sigma"):
        header["REJLOW"] = (combine.sigma_low, "lower rejection threshold (sigma)")
        header["REJHIGH"] = (combine.sigma_high, "upper rejection threshold (sigma)")
    header["OVSCMETH"] = (first.corrector.layout.method, "overscan method")
    for key, card in master_cfa(first, camera)[1].items():
        header[key] = card
    for i, frame in enumerate(inputs, start=1):
        header[f"IMCMB{i:03d}"] = ascii_header_text(frame.rel_path)
    if dropped:
        header["NDROPPED"] = (len(dropped), "inputs that could not be used")
        for rel, reason in dropped.items():
            header.add_history(ascii_header_text(f"dropped {rel}: {reason}"))
    add_software_cards(header, config_digest)
    return header


def write_intermediates(
    spec: Mapping[str, Any], camera: Mapping[str, Any], raw_dir: str | Path, out_dir: str | Path
) -> list[Path]:
    """Each input of a master, overscan-corrected and trimmed (float32 ADU, the raw header
    less its layout cards), as ``out_dir/<raw path>`` (``keep_intermediates``)."""
    written = []
    profile = CameraProfile(dict(camera))
    for entry in spec["frames"]:
        rel = entry["path"]
        with open_frame(Path(raw_dir) / rel, label=rel) as raw:
            layout = layout_for(raw.header, raw.shape, profile.config)
            corrector = FrameCorrector(raw.read, layout)
            data, _ = corrector.full()
            header = fits.Header()
            copy_header_cards(header, raw.primary_header if raw.hdu_index else None, raw.image_header)
            for key in ("BIASSEC", "DATASEC", "TRIMSEC"):
                header.remove(key, ignore_missing=True, remove_all=True)
            header["OVSCMETH"] = (layout.method, "overscan method")
            for i, level in enumerate(corrector.levels, start=1):
                header[f"OVSCLV{i}"] = (round(level, 3), f"[ADU] mean overscan level, amplifier {i}")
            add_software_cards(header)
        path = Path(out_dir) / plain_output_name(rel)
        write_fits_atomic(fits.HDUList([fits.PrimaryHDU(data, header=header)]), path)
        written.append(path)
    return written


def build_master(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    raw_dir: str | Path,
    masters: Mapping[str, Product],
    output: str | Path,
    *,
    memory_limit_mb: float = 1024,
    threads: int = 2,
    config_digest: str | None = None,
    noise: Mapping[str, Any] | None = None,
    preview: str | None = None,
) -> dict[str, Any]:
    """Build the master described by ``spec`` (a plan entry) and write it to ``output``.

    ``masters`` holds the masters its inputs are calibrated with (flats), or the bias used
    to measure the dark current (darks); ``noise`` the setup's gain and read noise (see
    ``open_inputs``); ``preview``: the PNG path of its preview, written from the master in
    memory, whose histogram the summary holds (``write_figure_data``). Returns a
    summary dict.
    """
    raw_dir = Path(raw_dir)
    kind = spec["type"]
    if spec.get("derived_from"):
        summary = bias_from_darks(spec, [masters[name] for name in spec["derived_from"]], Path(output), config_digest)
        if preview:
            product = read_product(output)
            summary["histogram"] = write_figure_data("bias", product.data, product.mask, preview)
        return summary
    combine = CombineSpec.from_dict(camera["combine"][kind])
    inputs, dropped = open_inputs(spec, camera, raw_dir, masters, noise)
    if not inputs:
        raise FrameError(
            f"master {spec['name']}: none of its {len(spec['frames'])} inputs is usable: "
            + "; ".join(f"{rel}: {why}" for rel, why in dropped.items())
        )
    try:
        shape = inputs[0].corrector.layout.shape
        read_noise, read_noise_source, flags = _read_noise_and_flags(spec, inputs, masters, noise, shape)
        if flags:
            spec = {**spec, "flags": [*(spec.get("flags") or []), *flags]}
        cfa_layout, _ = master_cfa(inputs[0], camera)
        job = MasterJob(
            spec, camera, masters, noise, shape, inputs[0].gain, read_noise, read_noise_source, threads, cfa_layout
        )
        return _build(job, inputs, dropped, combine, Path(output), memory_limit_mb, config_digest, preview)
    finally:
        for frame in inputs:
            frame.raw.close()


def _build(
    job: MasterJob,
    inputs: list[InputFrame],
    dropped: dict[str, str],
    combine: CombineSpec,
    output: Path,
    memory_limit_mb: float,
    config_digest: str | None,
    preview: str | None,
) -> dict[str, Any]:
    """Stack the inputs and finish the master by its kind's recipe (``master_recipes``);
    write it to ``output``. Returns the summary ``build_master`` returns."""
    spec, camera, shape, kind = job.spec, job.camera, job.shape, job.spec["type"]
    recipe = RECIPES[kind]
    # masters held (image, variance, mask) and the master's own planes (image, n_used,
    # variance, mask) come out of the memory limit before the stacks
    reserved = (
        sum(m.data.nbytes * 3 for m in job.masters.values()) + shape[0] * shape[1] * MASTER_PLANES_BYTES_PER_PIXEL
    )
    inputs = recipe.select(inputs, dropped, job)
    job.gain = inputs[0].gain  # the first stacked input's
    with memory_returned_promptly():
        data, n_used = combine_inputs(inputs, combine, shape, memory_limit_mb, job.threads, reserved)
    release_free_memory()
    variance = _variance_factor(combine, n_used)  # becomes the variance, then UNCERT, in place
    del n_used
    finished = recipe.finish(data, variance, inputs, job)
    mask = finished.mask
    mask[~np.isfinite(data)] |= NONFINITE
    uncert = np.sqrt(variance, out=variance)

    header = _master_header(spec, camera, inputs, combine, config_digest, dropped)
    header["RDNOISE"] = (round(job.read_noise * job.gain, 4), "[e-] read noise")
    header["RNSOURCE"] = (job.read_noise_source, "where RDNOISE comes from")
    header["MEDLEVEL"] = (round(median(data), 6), "median of the master (ADU; 1 for a flat)")
    for key, value in finished.cards.items():
        header[key] = value
    write_product(output, data, uncert, mask, header, unit=recipe.unit)
    histogram = write_figure_data(kind, data, mask, preview) if preview else None
    quality = master_statistics(kind, data, uncert, mask)
    quality.update(recipe.quality(inputs, finished, job))
    quality["overscan_levels"] = {f.rel_path: f.corrector.levels for f in inputs if f.corrector.levels}
    return {
        "name": spec["name"],
        "type": kind,
        "n_used": len(inputs),
        "used": [frame.rel_path for frame in inputs],
        "dropped": dropped,
        "median": median(data),
        "read_noise_e": job.read_noise * job.gain,
        "qc": quality,
        "histogram": histogram,
    }
