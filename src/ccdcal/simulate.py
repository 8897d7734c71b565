"""Deterministic simulator of a raw "demo night" from two cameras, with known truth.

The raw frames are what a calibration pipeline consumes; the truth tells a test
what a perfect calibration must produce.

Conventions
-----------
* Arrays are numpy ``[y, x]`` (row, column), 0-based.  FITS sections in headers
  and in the truth manifest are 1-based and inclusive, ``[x1:x2,y1:y2]``.
* Units: *electrons* (e-) for charge, dark current (e-/s) and read noise;
  *ADU* for everything stored in a raw file, for ``bias2d``, for overscan levels
  and for the truth ``signal``/``ideal_sigma`` images.  Gain ``g`` is in e-/ADU.

Physics model of one raw frame (ADU)::

    raw = level(y) + bias2d + [Poisson(dark_rate(T) * t + flat * S_e) + N(0, rn)] / g

rounded and clipped to uint16, where ``level(y) = offset_i + slope_i * y / ny``
(``y`` the 0-based row, ``ny`` the number of rows), ``S_e`` the sky + star signal
in electrons before the flat and ``dark_rate(T) = dark_rate(T_ref) * 2**((T -
T_ref) / 6)`` evaluated at the frame's *set point* (SET-TEMP; the cooler is
regulated, CCD-TEMP = set point + reading jitter and does not change the dark).
Overscan columns (CCD only) hold ``level(y) + N(0, rn) / g`` and nothing else.  For the CMOS camera ``bias2d`` includes the ~300 ADU pedestal and
``level`` is a tiny per-frame constant drift (recorded as
``overscan_offset_adu``, ``overscan_slope_adu = 0``).

All randomness comes from ``numpy.random.default_rng([seed, camera_code, stream,
index])``, so the same call writes byte-identical files.  No wall-clock time is
used; DATE-OBS values are synthetic (UT, night of 2026-11-20).

Usage::

    python -m ccdcal.simulate RAW_DIR TRUTH_DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

DEFAULT_SEED = 20261120
DARK_DOUBLING_C = 6.0  # dark current doubles every 6 C
SATURATION_ADU = 65535

# rng stream identifiers (third element of the seed sequence)
_STATIC, _FRAME, _WALK, _FIELD = 0, 1, 2, 3

CCD_NY, CCD_NX, CCD_NOVER = 512, 512, 32
CMOS_NY, CMOS_NX = 480, 640
FLAT_EXPTIMES = (1.0, 1.3, 1.7, 2.2, 3.0, 4.0, 5.0, 6.5, 8.0)


# --------------------------------------------------------------------------
# Small physical building blocks
# --------------------------------------------------------------------------


def _rng(
    seed: int, camera_code: int, stream: int, index: int = 0
) -> np.random.Generator:
    return np.random.default_rng([seed, camera_code, stream, index])


def dark_scale(temp_c: float, ref_temp_c: float) -> float:
    """Factor by which dark current at ``temp_c`` exceeds that at ``ref_temp_c``."""
    return float(2.0 ** ((temp_c - ref_temp_c) / DARK_DOUBLING_C))


def render_stars(shape, x, y, peak, fwhm) -> np.ndarray:
    """Sum of circular Gaussians sampled at pixel centres.

    ``x``, ``y`` are 0-based numpy coordinates, ``peak`` the peak value (same
    unit as the result, usually electrons), ``fwhm`` in pixels (scalar or array).
    """
    img = np.zeros(shape)
    ny, nx = shape
    fwhm = np.broadcast_to(np.asarray(fwhm, dtype=float), np.shape(x))
    for xi, yi, pi, fi in zip(x, y, peak, fwhm):
        sigma = fi / 2.354820045
        r = int(np.ceil(6 * sigma))
        x0, x1 = max(int(xi) - r, 0), min(int(xi) + r + 1, nx)
        y0, y1 = max(int(yi) - r, 0), min(int(yi) + r + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += pi * np.exp(
            -((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma**2)
        )
    return img


def _dust_donut(shape, cx, cy, radius, depth, soft=1.5) -> np.ndarray:
    """Multiplicative shadow of an out-of-focus dust mote (annulus, lighter centre)."""
    yy, xx = np.indices(shape)
    r = np.hypot(xx - cx, yy - cy)
    outer = 0.5 * (1 - np.tanh((r - radius) / soft))
    inner = 0.5 * (1 - np.tanh((r - 0.45 * radius) / soft))
    return 1.0 - depth * (outer - 0.6 * inner)


def make_flat(rng, shape, *, corner_level, donuts, prnu) -> np.ndarray:
    """Flat field (dimensionless, median 1): vignetting x dust donuts x (1 + prnu).

    ``donuts`` is a list of ``(cx, cy, radius_px, depth)``; ``prnu`` an array of
    pixel response deviations (already scaled).
    """
    ny, nx = shape
    cx = (nx - 1) / 2 + rng.uniform(-10, 10)
    cy = (ny - 1) / 2 + rng.uniform(-10, 10)
    yy, xx = np.indices(shape)
    rc2 = ((nx - 1) / 2) ** 2 + ((ny - 1) / 2) ** 2
    flat = 1.0 - (1.0 - corner_level) * ((xx - cx) ** 2 + (yy - cy) ** 2) / rc2
    for dcx, dcy, rad, depth in donuts:
        flat *= _dust_donut(shape, dcx, dcy, rad, depth)
    flat *= 1.0 + prnu
    return flat / np.median(flat)


def _random_donuts(rng, shape, n) -> list[tuple[float, float, float, float]]:
    ny, nx = shape
    return [
        (
            rng.uniform(40, nx - 40),
            rng.uniform(40, ny - 40),
            rng.uniform(15, 30),
            rng.uniform(0.02, 0.05),
        )
        for _ in range(n)
    ]


def _cosmic_rays(rng, shape, n) -> np.ndarray:
    """Image (electrons) with ``n`` cosmic-ray hits: single pixels or short tracks."""
    img = np.zeros(shape)
    ny, nx = shape
    for _ in range(n):
        x, y = rng.uniform(0, nx), rng.uniform(0, ny)
        length = int(rng.choice([1, 1, 2, 3, 4, 6]))
        ang = rng.uniform(0, np.pi)
        for k in range(length):
            xi, yi = int(x + k * np.cos(ang)), int(y + k * np.sin(ang))
            if 0 <= xi < nx and 0 <= yi < ny:
                img[yi, xi] += rng.uniform(1000, 5000)
    return img


def expose(
    rng,
    *,
    bias2d,
    gain,
    read_noise_e,
    dark_e,
    light_e,
    overscan_offset,
    overscan_slope,
    n_overscan=0,
    extra_e=None,
) -> np.ndarray:
    """The frame model: one raw uint16 frame [y, x] (data columns, then overscan).

    ``bias2d`` (ADU), ``dark_e`` (= dark_rate * t) and ``light_e`` (= flat * S_e)
    in electrons, all with the trimmed data shape.  ``extra_e`` is charge added
    without Poisson noise (cosmic rays).
    """
    ny, nx = bias2d.shape
    electrons = rng.poisson(dark_e + light_e).astype(float)
    electrons += rng.normal(0.0, read_noise_e, (ny, nx))
    if extra_e is not None:
        electrons += extra_e
    level = overscan_offset + overscan_slope * np.arange(ny) / ny
    frame = level[:, None] + bias2d + electrons / gain
    if n_overscan:
        over = level[:, None] + rng.normal(0.0, read_noise_e, (ny, n_overscan)) / gain
        frame = np.hstack([frame, over])
    return np.clip(np.rint(frame), 0, SATURATION_ADU).astype(np.uint16)


def ideal_sigma(*, signal_e, flat, dark_e, gain, read_noise_e) -> np.ndarray:
    """Noise (ADU) of a perfectly calibrated light: raw noise (read, shot, dark,
    quantization 1/12 ADU^2) propagated through the division by the flat."""
    var_adu = (read_noise_e**2 + flat * signal_e + dark_e) / gain**2 + 1.0 / 12.0
    return np.sqrt(var_adu) / flat


def overscan_sections(shape, n_overscan) -> dict[str, str]:
    """FITS sections (1-based, inclusive) of a frame with ``shape`` = [ny, nx] data
    pixels followed by ``n_overscan`` serial overscan columns; the first 4 overscan
    columns are left out of BIASSEC (the readout settles there on real CCDs)."""
    ny, nx = shape
    data = f"[1:{nx},1:{ny}]"
    return {
        "biassec": f"[{nx + 5}:{nx + n_overscan},1:{ny}]",
        "datasec": data,
        "trimsec": data,
    }


# --------------------------------------------------------------------------
# Cameras and schedule
# --------------------------------------------------------------------------


@dataclass
class Camera:
    """Static properties and truth maps of one camera (trimmed geometry).

    ``detector_cards`` are the (keyword, value, comment) cards the camera's software
    writes about gain and read noise (EGAIN, GAIN, RDNOISE...), in order.
    ``cosmic_rays_per_dark`` is the range [low, high) of hits drawn for each dark.
    """

    key: str
    code: int
    instrument: str
    telescope: str
    gain: float  # e-/ADU
    read_noise_e: float
    set_temp_c: float
    temp_jitter_c: float
    n_overscan: int
    bias2d: np.ndarray  # ADU
    dark_rate: np.ndarray  # e-/s at set_temp_c
    hot: np.ndarray  # bool
    flats: dict = field(default_factory=dict)
    detector_cards: tuple = ()
    cosmic_rays_per_dark: tuple[int, int] = (25, 60)


@dataclass
class Frame:
    """One planned exposure; ``index`` is its chronological position (rng index)."""

    rel_path: str
    kind: str  # bias | dark | darkflat | flat | light
    imagetyp: str
    exptime: float
    set_temp_c: float
    date_obs: datetime
    filter: str | None = None
    object: str | None = None
    index: int = 0


def _schedule(start: datetime, specs, readout_s: float) -> list[Frame]:
    """Place ``specs`` (dicts of Frame fields without date_obs) back to back."""
    frames, t = [], start
    for spec in specs:
        frames.append(Frame(date_obs=t, **spec))
        t = t + timedelta(seconds=spec["exptime"] + readout_s)
    return frames


def _make_ccd(seed: int) -> Camera:
    code = 1
    shape = (CCD_NY, CCD_NX)
    rng = _rng(seed, code, _STATIC)
    yy, xx = np.indices(shape)
    bias2d = 1.6 * xx / CCD_NX + 0.8 * yy / CCD_NY + 0.6 * ((xx - 256) / 256) ** 2
    for col in rng.choice(CCD_NX, 4, replace=False):
        bias2d[:, col] += rng.uniform(3, 8)
    background = 0.02 * (1 + 0.1 * (xx / CCD_NX - 0.5)) * rng.lognormal(0, 0.1, shape)
    hot = rng.random(shape) < 0.002
    dark_rate = background.copy()
    dark_rate[hot] = np.exp(rng.uniform(np.log(0.5), np.log(20), hot.sum()))
    window = _random_donuts(rng, shape, 2)
    prnu = rng.normal(0, 1, shape)
    flats = {
        "V": make_flat(
            rng,
            shape,
            corner_level=0.8,
            donuts=window + _random_donuts(rng, shape, 2),
            prnu=0.005 * prnu,
        ),
        "R": make_flat(
            rng,
            shape,
            corner_level=0.82,
            donuts=window + _random_donuts(rng, shape, 3),
            prnu=0.0045 * prnu,
        ),
    }
    return Camera(
        "ccd",
        code,
        "SimCam CCD47",
        "Demo 0.4m",
        1.5,
        9.0,
        -20.0,
        0.15,
        CCD_NOVER,
        bias2d,
        dark_rate,
        hot,
        flats,
        detector_cards=(
            ("EGAIN", 1.5, "Electronic gain in e-/ADU"),
            ("RDNOISE", 9.0, "Read noise in electrons"),
        ),
    )


def _make_cmos(seed: int) -> Camera:
    code = 2
    shape = (CMOS_NY, CMOS_NX)
    rng = _rng(seed, code, _STATIC)
    cols = np.clip(rng.normal(0, 0.8, CMOS_NX), -2, 2)
    rows = np.clip(rng.normal(0, 0.3, CMOS_NY), -1, 1)
    bias2d = 300.0 + cols[None, :] + rows[:, None]
    yy, xx = np.indices(shape)
    background = 0.01 * rng.lognormal(0, 0.1, shape)
    glow = 0.5 * np.exp(
        -np.hypot(xx - (CMOS_NX - 1), yy) / 35.0
    )  # top-right corner (y=0, x=max)
    hot = rng.random(shape) < 0.005
    dark_rate = background + glow
    dark_rate[hot] += np.exp(rng.uniform(np.log(1.0), np.log(30.0), hot.sum()))
    flats = {
        "L": make_flat(
            rng,
            shape,
            corner_level=0.78,
            donuts=_random_donuts(rng, shape, 4),
            prnu=rng.normal(0, 0.01, shape),
        )
    }
    return Camera(
        "cmos",
        code,
        "SimCMOS 294MM",
        "Demo RedCat 51",
        1.0,
        3.5,
        -10.0,
        0.1,
        0,
        bias2d,
        dark_rate,
        hot,
        flats,
        detector_cards=(
            ("GAIN", 120, "Sensor gain (camera setting, not e-/ADU)"),
            ("OFFSET", 30, "Sensor gain offset"),
            ("EGAIN", 1.0, "[e-/ADU] Electrons per A/D unit"),
        ),
    )


def _spec(path, kind, imagetyp, exptime, set_temp_c, **kw) -> dict:
    return dict(
        rel_path=path,
        kind=kind,
        imagetyp=imagetyp,
        exptime=exptime,
        set_temp_c=set_temp_c,
        **kw,
    )


def _ccd_plan() -> list[Frame]:
    """CCD night: biases + darks (afternoon), twilight flats V then R, lights."""
    d = datetime(2026, 11, 20)
    T = -20.0
    calib = [
        _spec(f"ccd/bias/bias_{i:03d}.fits", "bias", "Bias Frame", 0.0, T)
        for i in range(1, 16)
    ]
    calib += [
        _spec(f"ccd/darks/dark_300s_{i:03d}.fits", "dark", "Dark Frame", 300.0, T)
        for i in range(1, 11)
    ]
    flats = [
        _spec(f"ccd/flats/flat_{f}_{i:03d}.fits", "flat", "Flat Field", t, T, filter=f)
        for f in ("V", "R")
        for i, t in enumerate(FLAT_EXPTIMES, 1)
    ]
    names = [f"NGC7331_{f}_{i:03d}" for f in ("V", "R") for i in range(1, 4)] + [
        "NGC7331_V_broken"
    ]
    lights = [
        _spec(
            f"ccd/lights/{n}.fits",
            "light",
            "Light Frame",
            120.0,
            T,
            filter=n.split("_")[1],
            object="NGC7331",
        )
        for n in names
    ]
    frames = _schedule(d.replace(hour=14, minute=2), calib, 9.0)
    frames += _schedule(d.replace(hour=15, minute=52), flats, 9.0)
    frames += _schedule(d.replace(hour=17, minute=40), lights, 12.0)
    for i, fr in enumerate(frames):
        fr.index = i
    return frames


def _cmos_plan() -> list[Frame]:
    """CMOS night: dark library at -5 C and -10 C, darkflats, panel flats, lights."""
    d = datetime(2026, 11, 20)
    darks_m5 = [
        _spec(f"cmos/darks/dark_120s_-5C_{i:03d}.fits", "dark", "DARK", 120.0, -5.0)
        for i in range(1, 9)
    ]
    darks_m10 = [
        _spec(f"cmos/darks/dark_120s_-10C_{i:03d}.fits", "dark", "DARK", 120.0, -10.0)
        for i in range(1, 11)
    ]
    flats = [
        _spec(
            f"cmos/darkflats/darkflat_2s_{i:03d}.fits",
            "darkflat",
            "DARKFLAT",
            2.0,
            -10.0,
        )
        for i in range(1, 11)
    ]
    flats += [
        _spec(f"cmos/flats/flat_L_{i:03d}.fits", "flat", "FLAT", 2.0, -10.0, filter="L")
        for i in range(1, 11)
    ]
    lights = [
        _spec(
            f"cmos/lights/M 31_L_120s_{i:03d}.fits",
            "light",
            "LIGHT",
            120.0,
            -10.0,
            filter="L",
            object="M 31",
        )
        for i in range(1, 5)
    ]
    frames = _schedule(d.replace(hour=13), darks_m5, 1.5)
    frames += _schedule(d.replace(hour=13, minute=30), darks_m10, 1.5)
    frames += _schedule(d.replace(hour=15, minute=20), flats, 1.5)
    frames += _schedule(d.replace(hour=18, minute=30), lights, 1.5)
    for i, fr in enumerate(frames):
        fr.index = i
    return frames


# --------------------------------------------------------------------------
# Headers and I/O
# --------------------------------------------------------------------------


def _section_cards(cam: Camera) -> list[tuple[str, str, str]]:
    """BIASSEC/DATASEC/TRIMSEC cards of a camera with an overscan, else none."""
    if not cam.n_overscan:
        return []
    sections = overscan_sections(cam.bias2d.shape, cam.n_overscan)
    return [
        ("BIASSEC", sections["biassec"], "Serial overscan used for bias level"),
        ("DATASEC", sections["datasec"], "Image data section"),
        ("TRIMSEC", sections["trimsec"], "Section to keep after trimming"),
    ]


def _maxim_header(cam: Camera, fr: Frame, temp_c: float):
    """MaxIm DL style header (EXPTIME, 'Light Frame'...), with the camera's cards."""
    from astropy.io import fits

    h = fits.Header()
    h["EXPTIME"] = (fr.exptime, "Exposure time in seconds")
    h["DATE-OBS"] = (
        fr.date_obs.strftime("%Y-%m-%dT%H:%M:%S"),
        "YYYY-MM-DDThh:mm:ss observation start, UT",
    )
    h["SET-TEMP"] = (fr.set_temp_c, "CCD temperature setpoint in C")
    h["CCD-TEMP"] = (temp_c, "CCD temperature at start of exposure in C")
    h["XPIXSZ"] = (13.0, "Pixel Width in microns (after binning)")
    h["YPIXSZ"] = (13.0, "Pixel Height in microns (after binning)")
    h["XBINNING"] = (1, "Binning factor in width")
    h["YBINNING"] = (1, "Binning factor in height")
    h["XORGSUBF"] = (0, "Subframe X position in binned pixels")
    h["YORGSUBF"] = (0, "Subframe Y position in binned pixels")
    h["READOUTM"] = ("Normal", "Readout mode of image")
    for key, value, comment in cam.detector_cards:
        h[key] = (value, comment)
    h["SATURATE"] = (SATURATION_ADU, "Data value at which saturation occurs")
    for key, value, comment in _section_cards(cam):
        h[key] = (value, comment)
    h["IMAGETYP"] = (fr.imagetyp, "Type of image")
    if fr.filter:
        h["FILTER"] = (fr.filter, "Filter used when taking image")
    if fr.object:
        h["OBJECT"] = fr.object
    h["FOCALLEN"] = (3200.0, "Focal length of telescope in mm")
    h["APTDIA"] = (400.0, "Aperture diameter of telescope in mm")
    h["INSTRUME"] = (cam.instrument, "instrument or camera used")
    h["TELESCOP"] = (cam.telescope, "telescope used to acquire this image")
    h["SWCREATE"] = ("MaxIm DL Version 6.40 (sim)", "Software that created the image")
    return h


def _nina_header(cam: Camera, fr: Frame, temp_c: float):
    """N.I.N.A. style header (EXPOSURE, 'LIGHT'...), with the camera's cards."""
    from astropy.io import fits

    h = fits.Header()
    h["IMAGETYP"] = (fr.imagetyp, "Type of exposure")
    h["EXPOSURE"] = (fr.exptime, "[s] Exposure duration")
    h["DATE-OBS"] = (
        fr.date_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "Time of observation (UTC)",
    )
    h["XBINNING"] = (1, "X axis binning factor")
    h["YBINNING"] = (1, "Y axis binning factor")
    for key, value, comment in (*cam.detector_cards, *_section_cards(cam)):
        h[key] = (value, comment)
    h["XPIXSZ"] = (4.63, "[um] Pixel X axis size")
    h["YPIXSZ"] = (4.63, "[um] Pixel Y axis size")
    h["INSTRUME"] = (cam.instrument, "Imaging instrument name")
    h["SET-TEMP"] = (fr.set_temp_c, "[degC] CCD temperature setpoint")
    h["CCD-TEMP"] = (temp_c, "[degC] CCD temperature")
    h["TELESCOP"] = (cam.telescope, "Name of telescope")
    h["FOCALLEN"] = (250.0, "[mm] Focal length")
    if fr.filter:
        h["FILTER"] = (fr.filter, "Active filter name")
    if fr.object:
        h["OBJECT"] = (fr.object, "Name of the object of interest")
    h["SWCREATE"] = ("N.I.N.A. 3.1.2.9001 (sim)", "Software that created the file")
    return h


def _write_fits(path: Path, data: np.ndarray, header=None) -> None:
    from astropy.io import fits

    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)


def _write_truth_image(
    truth_dir: Path, rel: str, data: np.ndarray, dtype=np.float32
) -> str:
    _write_fits(truth_dir / rel, np.asarray(data, dtype=dtype))
    return rel


# --------------------------------------------------------------------------
# Per-camera writers
# --------------------------------------------------------------------------


def _light_signal_ccd(
    seed: int, cam: Camera, fr: Frame, rng
) -> tuple[np.ndarray, dict]:
    """Sky + stars (electrons, before the flat) of one CCD light; fixed field, small dither."""
    f = _rng(seed, cam.code, _FIELD)
    n = 40
    x0, y0 = f.uniform(20, CCD_NX - 20, n), f.uniform(20, CCD_NY - 20, n)
    peak_v = 10 ** f.uniform(np.log10(30), np.log10(25000), n)
    color = f.uniform(0.8, 1.4, n)
    peak_adu = np.minimum(peak_v * (color if fr.filter == "R" else 1.0), 30000.0)
    dx, dy = rng.uniform(-3, 3, 2)
    sky_e = (800.0 if fr.filter == "V" else 850.0) * rng.uniform(0.97, 1.03)
    xx = np.arange(CCD_NX)
    sky = sky_e * (1 + 0.03 * (xx / CCD_NX - 0.5))[None, :] * np.ones((CCD_NY, 1))
    stars = render_stars((CCD_NY, CCD_NX), x0 + dx, y0 + dy, peak_adu * cam.gain, 3.2)
    return sky + stars, {"sky_e": float(sky_e), "dither_px": [float(dx), float(dy)]}


def _flat_signal_ccd(cam: Camera, fr: Frame, rng) -> tuple[np.ndarray, dict]:
    """Twilight sky (fading) + ~25 stars at random positions (telescope dithered)."""
    k = FLAT_EXPTIMES.index(fr.exptime)
    hi, lo = (29000.0, 12500.0) if fr.filter == "V" else (28000.0, 13000.0)
    level_adu = (
        hi * (lo / hi) ** (k / (len(FLAT_EXPTIMES) - 1)) * rng.uniform(0.98, 1.02)
    )
    n = int(rng.integers(22, 29))
    x, y = rng.uniform(0, CCD_NX, n), rng.uniform(0, CCD_NY, n)
    peak = 10 ** rng.uniform(np.log10(2000), np.log10(20000), n) * cam.gain
    stars = render_stars((CCD_NY, CCD_NX), x, y, peak, rng.uniform(2.8, 3.4, n))
    sky_rate = level_adu * cam.gain / fr.exptime
    return level_adu * cam.gain + stars, {
        "sky_adu": float(level_adu),
        "sky_rate_e_per_s": float(sky_rate),
        "n_stars": n,
    }


def _light_signal_cmos(seed: int, cam: Camera, rng) -> tuple[np.ndarray, dict]:
    f = _rng(seed, cam.code, _FIELD)
    n = 60
    x0, y0 = f.uniform(15, CMOS_NX - 15, n), f.uniform(15, CMOS_NY - 15, n)
    peak = 10 ** f.uniform(np.log10(30), np.log10(40000), n)
    dx, dy = rng.uniform(-4, 4, 2)
    sky_e = 300.0 * rng.uniform(0.97, 1.03)
    stars = render_stars((CMOS_NY, CMOS_NX), x0 + dx, y0 + dy, peak, 2.6)
    return sky_e + stars, {"sky_e": float(sky_e), "dither_px": [float(dx), float(dy)]}


def _temperature(rng, cam: Camera, fr: Frame) -> float:
    return round(fr.set_temp_c + rng.uniform(-cam.temp_jitter_c, cam.temp_jitter_c), 2)


@dataclass
class Exposure:
    """One exposed frame and what its truth needs: ``raw`` uint16 [y, x] (data, then
    overscan), CCD-TEMP reading (C), ``signal_e`` (e-, before the flat), the true
    ``flat`` (None for bias and dark), ``dark_e`` (e-) and the signal's ``info``."""

    raw: np.ndarray
    temp_c: float
    signal_e: np.ndarray | float
    flat: np.ndarray | None
    dark_e: np.ndarray
    info: dict


def _expose_frame(seed, cam: Camera, fr: Frame, offset, slope, make_signal) -> Exposure:
    """Expose ``fr`` (rng stream ``_FRAME``, index ``fr.index``); ``make_signal(fr, rng)``
    gives the signal (e-, before the flat) and info of a flat or light."""
    rng = _rng(seed, cam.code, _FRAME, fr.index)
    temp_c = _temperature(rng, cam, fr)
    # regulated sensor: dark current follows the set point; CCD-TEMP is a noisy reading
    dark_e = cam.dark_rate * dark_scale(fr.set_temp_c, cam.set_temp_c) * fr.exptime
    signal_e, info, flat = 0.0, {}, None
    if fr.kind in ("flat", "light"):
        flat = cam.flats[fr.filter]
        signal_e, info = make_signal(fr, rng)
    extra = None
    if fr.kind == "dark":
        n_cr = int(rng.integers(*cam.cosmic_rays_per_dark))
        extra = _cosmic_rays(rng, cam.bias2d.shape, n_cr)
        info = {"n_cosmic_rays": n_cr}
    raw = expose(
        rng,
        bias2d=cam.bias2d,
        gain=cam.gain,
        read_noise_e=cam.read_noise_e,
        dark_e=dark_e,
        light_e=0.0 if flat is None else flat * signal_e,
        overscan_offset=offset,
        overscan_slope=slope,
        n_overscan=cam.n_overscan,
        extra_e=extra,
    )
    return Exposure(raw, temp_c, signal_e, flat, dark_e, info)


def _frame_entry(cam: Camera, fr: Frame, exp: Exposure, offset, slope) -> dict:
    """The manifest's ``frames`` entry of one written frame."""
    return {
        "type": fr.kind,
        "camera": cam.key,
        "imagetyp": fr.imagetyp,
        "exptime": fr.exptime,
        "temperature_c": exp.temp_c,
        "set_temp_c": fr.set_temp_c,
        "filter": fr.filter,
        "date_obs": fr.date_obs.isoformat(),
        "overscan_offset_adu": float(offset),
        "overscan_slope_adu": float(slope),
        **exp.info,
    }


def _light_truth(truth_dir: Path, cam: Camera, fr: Frame, exp: Exposure, sigma) -> dict:
    """Write a light's ``signal`` (ADU, S_e / gain) and ``ideal_sigma`` (ADU) truth
    images; return its manifest ``lights`` entry."""
    stem = "lights/" + fr.rel_path[: -len(".fits")]
    sig = _write_truth_image(truth_dir, stem + ".signal.fits", exp.signal_e / cam.gain)
    sig_path = _write_truth_image(truth_dir, stem + ".ideal_sigma.fits", sigma)
    return {
        "camera": cam.key,
        "filter": fr.filter,
        "exptime": fr.exptime,
        "signal": sig,
        "ideal_sigma": sig_path,
        "temperature_c": exp.temp_c,
        "object": fr.object,
        **exp.info,
    }


def _raw_ideal_sigma(cam: Camera, exp: Exposure) -> np.ndarray:
    """``ideal_sigma`` (ADU) of a light written as the camera read it."""
    return ideal_sigma(
        signal_e=exp.signal_e,
        flat=exp.flat,
        dark_e=exp.dark_e,
        gain=cam.gain,
        read_noise_e=cam.read_noise_e,
    )


def _write_camera_frames(
    seed, cam, plan, raw_dir, truth_dir, manifest, levels, make_signal, header_fn
):
    """Expose and write every frame of ``plan``; fill ``manifest`` frames/lights/junk."""
    for fr, (offset, slope) in zip(plan, levels):
        exp = _expose_frame(seed, cam, fr, offset, slope, make_signal)
        path = raw_dir / fr.rel_path
        _write_fits(path, exp.raw, header_fn(cam, fr, exp.temp_c))
        if fr.rel_path.endswith("_broken.fits"):
            size = path.stat().st_size
            with open(path, "r+b") as fh:
                fh.truncate(size // 2)
            manifest["junk"][fr.rel_path] = "truncated"
            continue
        manifest["frames"][fr.rel_path] = _frame_entry(cam, fr, exp, offset, slope)
        if fr.kind == "light":
            sigma = _raw_ideal_sigma(cam, exp)
            manifest["lights"][fr.rel_path] = _light_truth(
                truth_dir, cam, fr, exp, sigma
            )


def _camera_truth(cam: Camera, truth_dir: Path) -> dict:
    """Truth of one camera (values, and images written under ``truth_dir/<key>/``)."""
    k = cam.key
    ny = cam.bias2d.shape[0]
    out = {
        "instrument": cam.instrument,
        "telescope": cam.telescope,
        "gain": cam.gain,
        "read_noise_e": cam.read_noise_e,
        "temperature_c": cam.set_temp_c,
        "saturation_adu": SATURATION_ADU,
        "dark_doubling_c": DARK_DOUBLING_C,
        "shape": list(cam.bias2d.shape),
        "bias2d": _write_truth_image(truth_dir, f"{k}/bias2d.fits", cam.bias2d),
        "dark_rate_e_per_s": _write_truth_image(
            truth_dir, f"{k}/dark_rate.fits", cam.dark_rate
        ),
        "flats": {
            f: _write_truth_image(truth_dir, f"{k}/flat_{f}.fits", fl)
            for f, fl in cam.flats.items()
        },
        "hot_pixels": _write_truth_image(
            truth_dir, f"{k}/hot_pixels.fits", cam.hot, np.uint8
        ),
        "overscan": None,
    }
    if cam.n_overscan:
        out["overscan"] = {
            **overscan_sections(cam.bias2d.shape, cam.n_overscan),
            "level_model": f"offset + slope * y / ny, y = 0-based row, ny = {ny}",
        }
    return out


def write_ccd(raw_dir: Path, truth_dir: Path, seed: int, manifest: dict) -> None:
    """CCD camera, MaxIm DL style headers, 512x544 raw with 32 overscan columns."""
    cam = _make_ccd(seed)
    plan = _ccd_plan()
    walk = _rng(seed, cam.code, _WALK)
    offsets = 1000.0 + walk.uniform(-5, 5) + np.cumsum(walk.normal(0, 1.5, len(plan)))
    slopes = walk.uniform(-1.5, 1.5, len(plan))
    manifest["cameras"]["ccd"] = _camera_truth(cam, truth_dir)

    def signal(fr, rng):
        return (
            _flat_signal_ccd(cam, fr, rng)
            if fr.kind == "flat"
            else _light_signal_ccd(seed, cam, fr, rng)
        )

    _write_camera_frames(
        seed,
        cam,
        plan,
        raw_dir,
        truth_dir,
        manifest,
        zip(offsets, slopes),
        signal,
        _maxim_header,
    )


def write_cmos(raw_dir: Path, truth_dir: Path, seed: int, manifest: dict) -> None:
    """CMOS camera, NINA style headers, 480x640, no overscan, pedestal in bias2d."""
    cam = _make_cmos(seed)
    plan = _cmos_plan()
    walk = _rng(seed, cam.code, _WALK)
    drifts = np.clip(walk.normal(0, 0.05, len(plan)), -0.2, 0.2)
    truth = _camera_truth(cam, truth_dir)
    truth["pedestal_adu"] = 300.0
    truth["dark_rate_e_per_s_m5"] = _write_truth_image(
        truth_dir,
        "cmos/dark_rate_m5.fits",
        cam.dark_rate * dark_scale(-5.0, cam.set_temp_c),
    )
    truth["temperature_m5_c"] = -5.0
    manifest["cameras"]["cmos"] = truth

    def signal(fr, rng):
        if fr.kind == "flat":  # uniform panel, ~20000 ADU
            level = 20000.0 * rng.uniform(0.99, 1.01)
            return np.full(cam.bias2d.shape, level * cam.gain), {
                "sky_adu": float(level)
            }
        return _light_signal_cmos(seed, cam, rng)

    _write_camera_frames(
        seed,
        cam,
        plan,
        raw_dir,
        truth_dir,
        manifest,
        zip(drifts, np.zeros(len(plan))),
        signal,
        _nina_header,
    )


def write_demo_night(raw_dir, truth_dir, seed: int = DEFAULT_SEED) -> dict:
    """Write the demo night's raw frames under ``raw_dir`` and the truth under
    ``truth_dir``; return the truth manifest (also written to ``truth_dir/truth.json``).

    Raw paths in the manifest are relative to ``raw_dir``, truth paths to ``truth_dir``.
    """
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "seed": int(seed),
        "conventions": {
            "arrays": "numpy [y, x], 0-based; FITS sections 1-based inclusive [x1:x2,y1:y2]",
            "model": "raw = overscan_offset + overscan_slope*y/ny + bias2d + "
            "(Poisson(dark_rate*2**((set_temp_c-temperature_c_camera)/6)*t + flat*S_e) + N(0,rn)) / gain",
            "temperature": "frames[*].temperature_c is the CCD-TEMP reading (set point + jitter); "
            "dark current follows frames[*].set_temp_c",
            "signal": "ADU, S_e/gain (sky+stars, not flat-fielded, no dark, no bias)",
            "ideal_sigma": "ADU, sqrt((rn^2 + flat*S_e + dark_e)/gain^2 + 1/12) / flat",
        },
        "cameras": {},
        "lights": {},
        "frames": {},
        "junk": {},
    }
    write_ccd(raw_dir, truth_dir, seed, manifest)
    write_cmos(raw_dir, truth_dir, seed, manifest)
    (raw_dir / "notes.txt").write_text(
        "2026-11-20 observing log: clear after 17h UT, seeing ~2.5 arcsec.\n"
        "Demo 0.4m + SimCam CCD47: NGC7331 V,R. RedCat 51 + SimCMOS 294MM: M 31 L.\n"
        "Last NGC7331 V frame lost (disk full), file is broken.\n"
    )
    manifest["junk"] = {"notes.txt": "not FITS", **manifest["junk"]}
    (truth_dir / "truth.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccdcal.simulate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("raw_dir", help="output directory for the raw frames")
    parser.add_argument(
        "truth_dir", help="output directory for the truth (truth.json + FITS)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"base seed (default {DEFAULT_SEED})",
    )
    args = parser.parse_args(argv)
    manifest = write_demo_night(args.raw_dir, args.truth_dir, seed=args.seed)
    print(
        f"wrote {len(manifest['frames'])} frames ({len(manifest['lights'])} lights) to {args.raw_dir}, "
        f"truth to {args.truth_dir}/truth.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
