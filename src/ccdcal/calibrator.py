"""The low-level interface, SuperPhot-style: one object holding calibration parameters,
called once per image.

    from ccdcal import Calibrator

    calibrate = Calibrator(
        overscans=[dict(xmin=0, xmax=4096, ymin=0, ymax=20)],   # numpy-style: 0-based, end excluded
        overscan_method="median",
        master_bias="masters/master_bias1.fits",
        gain=16.0,
        image_area=dict(xmin=0, xmax=4096, ymin=20, ymax=4116),
    )
    calibrate.set_masters(dark="masters/master_dark3.fits")
    calibrate(raw="raw1.fits", calibrated="calib1.fits")
    calibrate(raw="raw2.fits", calibrated="calib2.fits", gain=8.0)   # for this image only

Every parameter can be given at construction, changed as an attribute, or overridden for
one image as a keyword of ``calibrate``. A master left at None is not applied (so a raw
flat is calibrated with ``master_flat=None``). Regions are dicts ``xmin, xmax, ymin, ymax``
(0-based, end excluded, as numpy slices) or FITS sections ``'[x1:x2,y1:y2]'`` (1-based,
inclusive). ``overscan_method`` is a name of ``ccdcal.overscan.METHODS`` or a function
``f(image, overscans) -> corrected image`` given the whole raw frame (float32 ADU) and the
overscan regions as dicts. Output: the file format the workflow writes (float32 image,
UNCERT, MASK; see ccdcal.products).

Bad input is refused (ValueError, FrameError naming the file) before anything is written:
an output that is the raw file or a link to it, an ``overscan_method`` that is neither a
name of METHODS nor a function, a region empty or not wholly inside the raw frame, a gain
(e-/ADU) that is not finite and > 0, a read noise (e-) that is not finite and >= 0, a
master that is not a whole ccdcal product.

The workflow's light jobs use this class (``Calibrator.for_camera``), so there is one
implementation of light calibration.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from . import cfa
from .calibrate import Calibration, subtrahend
from .camera import LIGHT_MASTERS, CameraProfile
from .frames import FrameError, RawFrame, XisfFrame, copy_header_cards, open_frame
from .overscan import METHODS, Amplifier, FrameCorrector, Layout, layout_for
from .previews import write_thumbnail
from .products import (
    CORE_MASK_BITS,
    DEFAULT_QUANTIZE_LEVEL,
    Product,
    ascii_header_text,
    read_product,
    read_products,
    write_product,
)
from .provenance import add_software_cards
from .qc import light_statistics
from .sections import Section
from .steps import IMAGE_STEPS, Light, Step, history, in_stage, missing_flags, reading_layout, steps_run
from .writers import BackgroundWriter

PARAMETERS = (
    "steps",
    "overscans",
    "overscan_data",
    "overscan_method",
    "overscan_order",
    "image_area",
    "master_bias",
    "master_dark",
    "master_flat",
    "master_fringe",
    "dark_mode",
    "dark_scale",
    "gain",
    "gain_source",
    "read_noise",
    "read_noise_source",
    "dark_variance_rate",
    "saturation",
    "exposure_tolerance",
    "weak_threshold",
    "output_format",
    "normalize",
    "checksum",
    "compression",
    "quantize_level",
    *IMAGE_STEPS,  # each image step's settings (a mapping, as the profile's section of its name)
)
_UNSET = object()


def region(value: Any) -> Section:
    """A region as a Section: a dict xmin/xmax/ymin/ymax (0-based, end excluded) or a
    FITS section string (1-based, inclusive)."""
    if isinstance(value, Section):
        return value
    if isinstance(value, str):
        return Section.parse(value)
    return Section.from_slices(
        slice(int(value["ymin"]), int(value["ymax"])), slice(int(value["xmin"]), int(value["xmax"]))
    )


def region_in_frame(value: Any, shape: tuple[int, int], what: str) -> Section:
    """``region(value)`` for a raw frame of numpy ``shape`` (ny, nx); ValueError naming
    ``what`` (the parameter), the region as given and the frame size when it is malformed,
    empty or not wholly inside the frame (a negative dict bound would otherwise count from
    the far edge, as numpy indexes do; a bound past the edge would be clipped)."""
    try:
        section = region(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} {value!r}: give a dict xmin, xmax, ymin, ymax (0-based, end excluded) "
            f"or a FITS section '[x1:x2,y1:y2]' (1-based, inclusive) ({exc})"
        ) from None
    section.check_inside(shape, what, given=None if isinstance(value, Section) else value)
    return section


def refuse_same_file(raw: str | Path, calibrated: str | Path) -> None:
    """ValueError naming both paths when ``calibrated`` is the raw file or a link to it
    (symbolic or hard): writing it would replace the raw frame."""
    raw, calibrated = Path(raw), Path(calibrated)
    if calibrated.exists() and raw.exists():
        same = os.path.samefile(raw, calibrated)
    else:
        same = raw.resolve() == calibrated.resolve()
    if same:
        raise ValueError(
            f"the output {calibrated} is the raw file {raw} (the same file): "
            "refusing to write over the raw frame; give another output path"
        )


def _as_dict(section: Section) -> dict[str, int]:
    rows, cols = section.slices
    return {"xmin": cols.start, "xmax": cols.stop, "ymin": rows.start, "ymax": rows.stop}


#: Cards that described the raw layout and are wrong after trimming.
LAYOUT_KEYWORDS = ("BIASSEC", "DATASEC", "TRIMSEC", "CCDSEC", "AMPSEC", "DETSEC")


def light_header(
    raw: RawFrame | XisfFrame,
    rel_path: str,
    raw_digest: str,
    entry: Mapping[str, Any],
    masters: Mapping[str, Product | None],
    layout,
    levels: list[float],
    gain: float,
    gain_source: str,
    read_noise_e: float,
    rn_source: str,
    config_digest: str | None,
    steps_done: str = "overscan/trim, bias, dark, flat",
) -> fits.Header:
    """The calibrated light's header: the raw frame's cards (its layout's left out; WCS
    and LTV shifted by the trim), then what calibrated it (``steps_done``: the steps as
    ``steps.history`` says them)."""
    header = fits.Header()
    copy_header_cards(header, raw.primary_header if raw.hdu_index else None, raw.image_header)
    for key in LAYOUT_KEYWORDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    x0, y0 = layout.trim.x1 - 1, layout.trim.y1 - 1
    if x0 or y0:  # keep the WCS and IRAF physical coordinates right after trimming
        for axis, shift in (("1", x0), ("2", y0)):
            if f"CRPIX{axis}" in header:
                header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - shift
            header[f"LTV{axis}"] = (float(header.get(f"LTV{axis}", 0.0)) - shift, "offset to raw pixels")
    header["RAWFILE"] = (ascii_header_text(rel_path), "raw frame, relative to raw_dir (%-encoded)")
    header["RAWSUM"] = (raw_digest, "sha256[:16] of the raw file")
    header["TRIMSEC0"] = (str(layout.trim), "raw section kept (FITS 1-based)")
    header["OVSCMETH"] = (layout.method, "overscan method")
    for i, level in enumerate(levels, start=1):
        header[f"OVSCLV{i}"] = (round(level, 3), f"[ADU] mean overscan level, amplifier {i}")
    for step, key in (("bias", "BIAS"), ("dark", "DARK"), ("flat", "FLAT")):
        master = masters.get(step)
        if master is not None:
            header[f"{key}FILE"] = (master.path.name, f"master {step}")
            header[f"{key}SUM"] = (master.digest, f"sha256[:16] of the master {step}")
    if masters.get("dark") is not None:
        header["DARKMODE"] = (entry["dark_mode"], "unscaled (bias included) or scaled")
        header["DARKSCAL"] = (float(entry["dark_scale"]), "factor applied to the (bias-subtracted) dark")
    header["CALFLAGS"] = (",".join(entry["flags"]) or "OK", "missing calibration steps")
    header["GAINUSED"] = (gain, f"[e-/ADU] from {gain_source}")
    header["RNUSED"] = (round(read_noise_e, 4), f"[e-] read noise from {rn_source}"[:47])
    header["GAINSRC"] = (gain_source[:68], "where GAINUSED comes from")
    header["RNSOURCE"] = (rn_source[:68], "where RNUSED comes from")
    header.add_history(f"ccdcal: {steps_done}; UNCERT = 1 sigma; MASK bits MASKBn")
    add_software_cards(header, config_digest)
    return header


def output_format_array(
    image: np.ndarray,
    uncert: np.ndarray,
    header: fits.Header,
    output_format: str,
    normalize: float | None,
    raw_bitpix: int,
) -> tuple[np.ndarray, np.ndarray, fits.Header]:
    """XParallax's output options. ``normalize``: scale image and UNCERT so the mean of the
    finite pixels is that value (the pedestal is lost: said in the header). ``'same'``: the
    image in the raw file's integer type, rounded and clipped (16-bit: 0-65535 with BZERO),
    the header saying how many pixels were clipped; UNCERT stays float32."""
    if normalize is not None:
        finite = np.isfinite(image)
        mean = float(np.mean(image[finite], dtype=np.float64)) if finite.any() else 0.0
        if mean == 0.0:
            raise ValueError("cannot normalize an image whose mean is 0")
        factor = np.float32(normalize / mean)
        image *= factor
        uncert *= factor
        header["NORMVAL"] = (float(normalize), "image scaled so its mean is this (pedestal lost)")
        header["NORMSCAL"] = (float(factor), "factor applied to the image and UNCERT")
    if output_format == "same" and raw_bitpix > 0:
        low, high = (
            (0, 65535)
            if raw_bitpix == 16
            else (0, 255)
            if raw_bitpix == 8
            else (-(2 ** (raw_bitpix - 1)), 2 ** (raw_bitpix - 1) - 1)
        )
        dtype = {8: np.uint8, 16: np.uint16, 32: np.int32, 64: np.int64}[raw_bitpix]
        finite = np.isfinite(image)
        header["OUTFMT"] = ("same", f"integer output, as the raw file (BITPIX {raw_bitpix})")
        header["NCLIPLO"] = (int(np.count_nonzero(finite & (image < low - 0.5))), f"pixels clipped to {low}")
        header["NCLIPHI"] = (int(np.count_nonzero(finite & (image > high + 0.5))), f"pixels clipped to {high}")
        header["NNONFIN"] = (int(np.count_nonzero(~finite)), "non-finite pixels written as 0")
        header.add_history(
            "ccdcal: image rounded to integers and clipped; fractions of an ADU, "
            "values outside the integer range and non-finite values are lost"
        )
        image = np.clip(np.nan_to_num(np.round(image), nan=0.0), low, high).astype(dtype)
    else:
        header["OUTFMT"] = ("float32", "output image type")
    return image, uncert, header


class _FunctionCorrector:
    """Overscan correction by a user function on the whole raw frame, then the trim."""

    def __init__(self, raw: RawFrame | XisfFrame, function: Callable, overscans: list[Section], trim: Section):
        self.layout = Layout(raw.shape, trim, tuple(Amplifier(trim, o) for o in overscans), "function")
        self._raw, self._function, self._overscans = raw, function, overscans
        self.levels: list[float] = []

    def full(self, saturation: float | None = None, out: np.ndarray | None = None):
        """The corrected, trimmed frame (a new array: ``out`` is not used)."""
        image = self._raw.read()
        saturated = image >= saturation if saturation is not None else None
        corrected = np.asarray(self._function(image, [_as_dict(o) for o in self._overscans]), dtype=np.float32)
        rows, cols = self.layout.trim.slices
        if saturated is not None:
            saturated = saturated[rows, cols] if saturated.any() else None
        return np.ascontiguousarray(corrected[rows, cols]), saturated


class Calibrator:
    """Calibrates single images with masters and parameters; see the module docstring."""

    #: Prepared calibrations kept (a group's few exposures with a scaled dark); bounds memory.
    CALIBRATIONS_KEPT = 4

    def __init__(self, camera: Mapping[str, Any] | None = None, threads: int = 1, **parameters: Any):
        """``threads``: how many threads load masters and prepare a calibration (the
        workflow's light jobs calibrate that many lights at a time, each in one thread)."""
        if camera is None:
            from .config import camera_defaults  # here: jsonschema and yaml, which a job never needs

            camera = camera_defaults()
        self.camera = CameraProfile(dict(camera))
        self.threads = max(1, int(threads))
        for name in PARAMETERS:
            setattr(self, name, None)
        self.dark_mode = "auto"
        self.output_format = "float32"
        self.checksum = True
        self.compression = "none"
        self.quantize_level = DEFAULT_QUANTIZE_LEVEL
        self._update(parameters)
        self._masters: dict[tuple, Product] = {}
        self._calibrations: dict[tuple, Calibration] = {}
        self._lock = threading.Lock()
        self._planes = threading.local()

    @classmethod
    def for_camera(cls, camera: Mapping[str, Any], threads: int = 1, **parameters: Any) -> Calibrator:
        """A calibrator that reads the layout, gain, read noise and saturation of each frame
        as the camera profile says, and writes as its ``output`` says (what the workflow does)."""
        output = camera.get("output", {})
        settings = {
            "output_format": output.get("format", "float32"),
            "normalize": output.get("normalize"),
            "checksum": output.get("checksum", True),
            "compression": output.get("compression", "none"),
            "quantize_level": output.get("quantize_level", DEFAULT_QUANTIZE_LEVEL),
        }
        return cls(camera, threads=threads, **{**settings, **parameters})

    @staticmethod
    def _check(names) -> None:
        unknown = sorted(set(names) - set(PARAMETERS))
        if unknown:
            raise TypeError(f"unknown calibration parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")

    def _update(self, parameters: Mapping[str, Any]) -> None:
        self._check(parameters)
        for name, value in parameters.items():
            setattr(self, name, value)

    def set_masters(self, bias: Any = _UNSET, dark: Any = _UNSET, flat: Any = _UNSET, fringe: Any = _UNSET) -> None:
        """Set (a path) or remove (None) masters; those not named are unchanged."""
        for step, value in (("bias", bias), ("dark", dark), ("flat", flat), ("fringe", fringe)):
            if value is not _UNSET:
                setattr(self, f"master_{step}", value)

    # ------------------------------------------------------------------ pieces
    def _parameters(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        self._check(overrides)
        return {name: overrides.get(name, getattr(self, name)) for name in PARAMETERS}

    @staticmethod
    def _master_key(path: Path) -> tuple:
        stat = path.stat()
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns

    def _master(self, path: Any) -> Product | None:
        if path is None:
            return None
        path = Path(path)
        key = self._master_key(path)
        with self._lock:
            if key not in self._masters:
                self._masters[key] = read_product(path)
            return self._masters[key]

    def load_masters(self, paths: Iterable[str | Path]) -> None:
        """Read these masters now, ``threads`` files (and their digests) at a time, rather
        than one after the other as the first light needs them."""
        with self._lock:
            paths = [Path(p) for p in dict.fromkeys(paths) if p is not None]
            wanted = {self._master_key(p): p for p in paths}
            missing = [key for key in wanted if key not in self._masters]
            for key, product in zip(missing, read_products([wanted[k] for k in missing], self.threads)):
                self._masters[key] = product

    def _corrector(self, raw: RawFrame | XisfFrame, p: Mapping[str, Any], steps: list[Step]):
        """The reader of ``raw``: its overscan and trim as the parameters (else the
        profile) say, as far as the raw ``steps`` take them (``steps.reading_layout``)."""
        method = p["overscan_method"]
        if not (method is None or callable(method) or method in METHODS):
            raise ValueError(
                f"overscan_method {method!r}: give one of {', '.join(METHODS)} or a function f(image, overscans)"
            )
        overscans = (
            [region_in_frame(o, raw.shape, f"overscans[{i}]") for i, o in enumerate(p["overscans"])]
            if p["overscans"]
            else None
        )
        if p["image_area"] is not None:
            trim = region_in_frame(p["image_area"], raw.shape, "image_area")
        elif overscans is None:
            trim = layout_for(raw.header, raw.shape, self.camera.config).trim
        else:
            trim = Section.full(raw.shape)
        if callable(method) and any(s.name == "overscan" for s in steps):
            if not any(s.name == "trim" for s in steps):
                trim = Section.full(raw.shape)
            return _FunctionCorrector(raw, method, overscans or [], trim)
        if overscans is None and method is None:
            layout = layout_for(raw.header, raw.shape, self.camera.config)
            if p["image_area"] is not None:
                layout = Layout(layout.raw_shape, trim, layout.amplifiers, layout.method, layout.order, layout.axis)
        else:
            data = (
                [region_in_frame(d, raw.shape, f"overscan_data[{i}]") for i, d in enumerate(p["overscan_data"])]
                if p["overscan_data"]
                else None
            )
            if data is not None and len(data) != len(overscans or []):
                raise ValueError("overscan_data needs one data region per overscan region")
            amplifiers = tuple(Amplifier(data[i] if data else trim, o) for i, o in enumerate(overscans or []))
            order = p["overscan_order"] if p["overscan_order"] is not None else self.camera.config["overscan"]["order"]
            name = (method if isinstance(method, str) else None) or "median"
            layout = Layout(raw.shape, trim, amplifiers, name, order, "auto")
        return FrameCorrector(raw.read, reading_layout(layout, steps))

    def _light_planes(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This thread's image, UNCERT and MASK arrays for a light of ``shape``, reused from
        light to light: their contents are written over by each light, and new arrays of
        a full frame would cost the kernel zeroing their pages every time."""
        planes = getattr(self._planes, "arrays", None)
        if planes is None or planes[0].shape != tuple(shape):
            planes = self._planes.arrays = (
                np.empty(shape, np.float32),
                np.empty(shape, np.float32),
                np.empty(shape, np.uint8),
            )
        return planes

    def _value(self, raw: RawFrame | XisfFrame, p: Mapping[str, Any], what: str) -> tuple[float | None, str]:
        if p[what] is not None:
            return float(p[what]), p.get(f"{what}_source") or "parameter"
        return self.camera.value_or_keyword(raw.header, what)

    def _dark_choice(self, raw: RawFrame | XisfFrame, p, bias, dark) -> tuple[str | None, float | None]:
        """(mode, scale): 'unscaled' subtracts the dark as is (it includes the bias);
        'scaled' subtracts bias + k (dark - bias), k = dark_scale or t_frame / t_dark;
        'auto' is unscaled when the exposures match within exposure_tolerance."""
        if dark is None:
            return None, None
        mode = p["dark_mode"] or "auto"
        if mode == "unscaled":
            return "unscaled", 1.0
        t_frame = self.camera.exptime(raw.header) or 0.0
        t_dark = float(dark.header.get("EXPTIME", 0.0) or 0.0)
        tolerance = (
            p["exposure_tolerance"]
            if p["exposure_tolerance"] is not None
            else self.camera.config["dark"]["exposure_tolerance"]
        )
        if mode == "auto" and p["dark_scale"] is None and abs(t_frame - t_dark) <= tolerance + 1e-9:
            return "unscaled", 1.0
        if bias is None:
            raise ValueError(f"scaling the dark ({t_dark:g} s) to the frame ({t_frame:g} s) needs master_bias")
        if p["dark_scale"] is not None:
            return "scaled", float(p["dark_scale"])
        if t_dark <= 0:
            raise ValueError("the master dark has no exposure time (EXPTIME) to scale by")
        return "scaled", t_frame / t_dark

    # ------------------------------------------------------------------ calibrate
    def calibrate(
        self,
        raw: str | Path,
        calibrated: str | Path,
        raw_label: str | None = None,
        config_digest: str | None = None,
        flags: list[str] | None = None,
        writer: BackgroundWriter | None = None,
        statistics: dict | None = None,
        thumbnail: str | Path | None = None,
        **overrides: Any,
    ) -> Path | Future:
        """Calibrate ``raw`` into ``calibrated``; ``overrides`` apply to this image only.
        ``statistics``, a dict, receives the calibrated light's quality figures
        (``qc.light_statistics``, ADU), its overscan levels and ``raw_sha256``, the SHA-256
        (hex) of the raw bytes read (RAWSUM is its start); ``thumbnail``: a JPEG
        (path ending in .jpg) or PNG of the calibrated image is written there
        (``previews.write_thumbnail``).

        Returns the path written; with a ``writer`` (``ccdcal.writers.BackgroundWriter``)
        returns as soon as the file's bytes are made, with a Future that gives the path
        once the writer has put the file in place (or raises why it could not)."""
        p = self._parameters(overrides)
        refuse_same_file(raw, calibrated)
        settings = {name: p[name] if p[name] is not None else self.camera.config.get(name, {}) for name in IMAGE_STEPS}
        steps = steps_run(p["steps"] if p["steps"] is not None else self.camera.config.get("steps"), settings)
        given = {s: self._master(p[f"master_{s}"]) for s in LIGHT_MASTERS}
        label = raw_label or Path(raw).name
        with open_frame(raw, label=label, digest_on_read=True) as frame:
            frame.check_complete()
            light = Light(given, lambda bias, dark: self._dark_choice(frame, p, bias, dark), settings, source=label)
            for arithmetic in in_stage(steps, "arithmetic"):
                arithmetic.choose(light)
            corrector = self._corrector(frame, p, steps)
            trim = corrector.layout
            light.cfa, cfa_cards = cfa.trimmed(
                frame.header, trim.raw_shape, trim.trim.slices, self.camera.config.get("bayer_pattern", "header")
            )
            for name, master in (("bias", light.bias), ("dark", light.dark), ("flat", light.flat)):
                if master is not None and master.data.shape != corrector.layout.shape:
                    raise FrameError(
                        f"{label}: trimmed shape {corrector.layout.shape} differs from "
                        f"master {name} {master.path.name} {master.data.shape}"
                    )
            saturation, _ = self._value(frame, p, "saturation")
            if saturation is None:
                saturation = frame.integer_max
            gain, gain_source = self._value(frame, p, "gain")
            unknown = []
            if gain is None:
                gain, gain_source = 1.0, "default (unknown)"
                unknown.append("NOGAIN")
            rn_e, rn_source = self._value(frame, p, "read_noise")
            if rn_e is None:
                rn_e, rn_source = next(
                    (
                        (float(m.header["RDNOISE"]), f"master {m.path.name}")
                        for m in (light.bias, light.dark)
                        if m is not None and "RDNOISE" in m.header
                    ),
                    (0.0, "unknown"),
                )
                if rn_source == "unknown":
                    unknown.append("NORDNOISE")
            if not (math.isfinite(gain) and gain > 0):
                raise ValueError(f"gain = {gain!r} ({gain_source}): must be a finite number > 0 [e-/ADU]")
            if not (math.isfinite(rn_e) and rn_e >= 0):
                raise ValueError(f"read_noise = {rn_e!r} ({rn_source}): must be a finite number >= 0 [e-]")
            image_plane, uncert_plane, mask_plane = self._light_planes(corrector.layout.shape)
            data, saturated = corrector.full(saturation, out=image_plane)
            pedestal_key, pedestal = self.camera.pedestal(frame.header)
            if pedestal:
                data += np.float32(pedestal)
            mode, scale = light.dark_mode, light.dark_scale
            # a dark subtracted as is: its dark signal's shot noise is in the frame, and
            # not in raw - D; measured as ADU^2 per s (night_noise), else the master dark's
            # median dark current (DARKCUR, e-/s: a library's master on a night without
            # darks), else left out
            dark_variance, dark_variance_source = 0.0, ""
            exptime = self.camera.exptime(frame.header) or 0.0
            if mode == "unscaled" and p["dark_variance_rate"]:
                dark_variance = float(p["dark_variance_rate"]) * exptime
                dark_variance_source = "measured on tonight's dark pairs"
            elif mode == "unscaled" and light.dark is not None and light.dark.header.get("DARKCUR"):
                dark_variance = max(float(light.dark.header["DARKCUR"]), 0.0) * exptime / gain**2
                dark_variance_source = f"DARKCUR of {light.dark.path.name}"
            bias, dark, flat = light.subtracted_bias, light.dark, light.flat
            key = (
                id(bias),
                id(dark),
                mode,
                scale,
                id(flat),
                gain,
                rn_e,
                dark_variance,
                p["weak_threshold"] or self.camera.config["flat"]["weak_threshold"],
            )
            with self._lock:
                calibration = self._calibrations.get(key)
                if calibration is None:
                    sub = subtrahend(bias, dark, mode, scale)
                    calibration = Calibration(
                        sub, flat, gain, rn_e / gain, key[-1], threads=self.threads, extra_variance=dark_variance
                    )
                    if len(self._calibrations) >= self.CALIBRATIONS_KEPT:
                        self._calibrations.pop(next(iter(self._calibrations)))
                    self._calibrations[key] = calibration
            light.image, light.uncert, light.mask = calibration.apply(
                data, saturated, uncert=uncert_plane, mask=mask_plane
            )
            light.gain, light.read_noise = gain, rn_e
            for image_step in in_stage(steps, "image"):
                image_step.apply(light)
            image, uncert, mask = light.image, light.uncert, light.mask
            if statistics is not None:
                if "FRNGBEF" in light.cards:  # the fringes' share of the sky, before and after their removal
                    statistics.update(
                        fringe_amplitude=light.cards["FRNGAMP"][0],
                        fringe_before=light.cards["FRNGBEF"][0],
                        fringe_after=light.cards["FRNGAFT"][0],
                    )
                statistics.update(
                    light_statistics(image, uncert, mask, colour=light.cfa is not None),
                    overscan_levels=";".join(f"{v:.3f}" for v in corrector.levels),
                    raw_sha256=frame.digest(64),
                )
            if thumbnail is not None:
                write_thumbnail(image, thumbnail, mask, cfa=light.cfa)
            masters = {"bias": bias, "dark": dark, "flat": flat}
            entry = {
                "dark_mode": mode,
                "dark_scale": scale,
                "flags": flags if flags is not None else missing_flags(steps, light) + unknown,
            }
            header = light_header(
                frame,
                label,
                frame.digest(),
                entry,
                masters,
                corrector.layout,
                corrector.levels,
                gain,
                gain_source,
                rn_e,
                rn_source,
                config_digest,
                history(steps),
            )
            for key, card in {**cfa_cards, **light.cards}.items():
                header[key] = card
            if dark_variance:
                header["DARKVAR"] = (round(dark_variance, 4), "[ADU^2] dark shot noise in UNCERT")
                header["DARKVSRC"] = (ascii_header_text(dark_variance_source)[:68], "where DARKVAR comes from")
            if pedestal_key:  # applied: a reader must not add it again
                header.remove(pedestal_key, ignore_missing=True, remove_all=True)
                header["PEDAPPL"] = (pedestal, f"[ADU] added: the raw frame's {pedestal_key}")
        image, uncert, header = output_format_array(
            image, uncert, header, p["output_format"], p["normalize"], frame.bitpix
        )
        written = write_product(
            calibrated,
            image,
            uncert,
            mask,
            header,
            consume=True,
            checksum=bool(p["checksum"]),
            drop_cache=True,
            writer=writer,
            mask_bits=(*CORE_MASK_BITS, *(bit for s in steps for bit in s.mask_bits)),
            compression=p["compression"] or "none",
            quantize_level=p["quantize_level"] or DEFAULT_QUANTIZE_LEVEL,
        )
        return written if writer is not None else Path(calibrated)

    __call__ = calibrate
