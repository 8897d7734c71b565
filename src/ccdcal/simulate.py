"""Deterministic simulator of raw nights with known truth (demo night, camera nights).

The raw frames are what a calibration pipeline consumes; the truth tells a test
what a perfect calibration must produce. Two generators share the frame model below:

* ``write_demo_night``: a CCD with overscan and a CMOS camera, fixed (the CLI).
* ``write_camera_night(raw_dir, truth_dir, CameraNight(...))``: one camera described
  by a frozen ``CameraSpec`` (geometry, true gain and read noise, bias, dark, flats,
  and which gain/read-noise cards its headers carry) and a tuple of ``FrameSet``
  (bias/dark/darkflat/flat/light: count, exposure, filter, time, flat levels and
  illumination, sky, stars, dark subtraction by the camera software). The presets
  ``night_*()`` are small nights for tests of gain, read noise, dark choice and flats.
* ``inject_cosmic_rays(frame, rng, n)``: sharp cosmic-ray hits (single pixels, 2-4 pixel
  clusters, short tracks; 50-5000 e-) added to a light's electrons, with their truth
  (``CosmicRays``), for tests of ``ccdcal.cosmic``.

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
Overscan columns (CCD only) hold ``level(y) + N(0, rn) / g`` and nothing else.  For the CMOS
camera ``bias2d`` includes the ~300 ADU pedestal and ``level`` is a tiny per-frame constant drift (recorded as
``overscan_offset_adu``, ``overscan_slope_adu = 0``).

All randomness comes from ``numpy.random.default_rng([seed, camera_code, stream,
index])``, so the same call writes byte-identical files.  No wall-clock time is
used; DATE-OBS values are synthetic (UT, night of 2026-11-20 unless a camera night
says otherwise).

Usage::

    python -m ccdcal.simulate RAW_DIR TRUTH_DIR [--seed N] [--night NAME]
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


def _rng(seed: int, camera_code: int, stream: int, index: int = 0) -> np.random.Generator:
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
        img[y0:y1, x0:x1] += pi * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma**2))
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


def fringe_pattern(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """An interference fringe pattern [y, x] (dimensionless, zero mean, largest |value|
    1): two sets of concentric rings centred off the frame (arcs across it, as a thinned
    CCD's thickness varies) and two plane waves, with periods of a quarter to half the
    frame's shorter side (broad arcs: what a 31-pixel smoothing keeps)."""
    rng = np.random.default_rng([seed, 7177])
    ny, nx = shape
    yy, xx = np.indices(shape, dtype=np.float64)
    pattern = np.zeros(shape)
    for _ in range(2):
        cx, cy = rng.uniform(-0.6, 1.6) * nx, rng.uniform(-0.6, 1.6) * ny
        period = rng.uniform(0.25, 0.5) * min(ny, nx)
        pattern += np.cos(2 * np.pi * np.hypot(xx - cx, yy - cy) / period + rng.uniform(0, 2 * np.pi))
    for _ in range(2):
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.25, 0.5) * min(ny, nx)
        phase = rng.uniform(0, 2 * np.pi)
        pattern += 0.5 * np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    pattern -= pattern.mean()
    return pattern / np.abs(pattern).max()


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


@dataclass(frozen=True)
class CosmicRays:
    """Cosmic rays injected by ``inject_cosmic_rays``: ``charge_e`` (float32 [y, x]) the
    electrons each pixel received (0 elsewhere), ``mask`` (bool) the truth, ``charge_e >
    0``; ``kinds`` how many events of each kind ('single', 'cluster', 'track')."""

    charge_e: np.ndarray
    mask: np.ndarray
    kinds: dict


#: Shares of the event kinds drawn by ``inject_cosmic_rays``.
COSMIC_RAY_KINDS = {"single": 0.4, "cluster": 0.35, "track": 0.25}


def inject_cosmic_rays(
    frame, rng, n, *, amplitude_e=(50.0, 5000.0), adu_per_e=1.0, kinds=None, track_length=(3, 8)
) -> CosmicRays:
    """Add ``n`` cosmic-ray events to ``frame`` (a float array [y, x], in place) and
    return the truth. ``adu_per_e``: the frame's unit per electron (1 for a frame in
    electrons, 1 / gain for one in ADU before the flat). Called on a light's electrons
    *before* its noise is drawn (``expose(extra_e=...)`` adds charge the same way),
    the deposit adds no Poisson noise of its own: its amplitude is already random.

    Each event draws its amplitude A (e-) log-uniformly in ``amplitude_e`` and a kind
    (``kinds``, default ``COSMIC_RAY_KINDS``, shares summing to 1):

    * single: one pixel of A;
    * cluster: a pixel of A and 1-3 of its 8 neighbours, each A x U(0.1, 0.6) (charge
      shared by diffusion): 2-4 pixels;
    * track: a straight line at a random angle, ``track_length`` (an inclusive range)
      8-connected pixels long (one per step along its major axis), each pixel
      A x U(0.5, 1.5) (the energy lost varies along the track).

    Deposits are sharp (a detector effect, not convolved with the PSF), events may
    overlap (their charges add), and pixels off the frame are dropped. The frame is not
    clipped: a caller that saturates must clip, and then mark those pixels as such."""
    frame = np.asarray(frame)
    ny, nx = frame.shape
    kinds = dict(COSMIC_RAY_KINDS if kinds is None else kinds)
    names = list(kinds)
    shares = np.array([kinds[k] for k in names], dtype=float)
    if abs(shares.sum() - 1.0) > 1e-9 or (shares < 0).any():
        raise ValueError(f"kinds shares must be >= 0 and sum to 1, not {kinds}")
    low, high = (float(a) for a in amplitude_e)
    if not 0 < low <= high:
        raise ValueError(f"amplitude_e = {amplitude_e}: needs 0 < low <= high")
    charge = np.zeros((ny, nx), dtype=np.float64)
    counts = dict.fromkeys(names, 0)
    neighbours = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(int(n)):
        kind = names[int(rng.choice(len(names), p=shares))]
        counts[kind] += 1
        amplitude = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        y, x = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        if kind == "single":
            pixels = [(y, x, amplitude)]
        elif kind == "cluster":
            picked = rng.choice(len(neighbours), size=int(rng.integers(1, 4)), replace=False)
            pixels = [(y, x, amplitude)] + [
                (y + neighbours[k][0], x + neighbours[k][1], amplitude * rng.uniform(0.1, 0.6)) for k in picked
            ]
        elif kind == "track":
            length = int(rng.integers(track_length[0], track_length[1] + 1))
            angle = rng.uniform(0, np.pi)
            # one pixel per step along the line's major axis: ``length`` 8-connected pixels
            step = np.arange(length) / max(abs(np.cos(angle)), abs(np.sin(angle)))
            pixels = [
                (int(cy), int(cx), amplitude * rng.uniform(0.5, 1.5))
                for cy, cx in zip(np.rint(y + step * np.sin(angle)), np.rint(x + step * np.cos(angle)))
            ]
        else:
            raise ValueError(f"unknown cosmic-ray kind {kind!r} (single, cluster, track)")
        for py, px, e in pixels:
            if 0 <= py < ny and 0 <= px < nx:
                charge[py, px] += e
    frame += charge * adu_per_e
    return CosmicRays(charge.astype(np.float32), charge > 0, counts)


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
    fringe_pattern: np.ndarray | None = None  # the detector's fringes (``fringe_pattern``), for red-band lights


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
    glow = 0.5 * np.exp(-np.hypot(xx - (CMOS_NX - 1), yy) / 35.0)  # top-right corner (y=0, x=max)
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
    calib = [_spec(f"ccd/bias/bias_{i:03d}.fits", "bias", "Bias Frame", 0.0, T) for i in range(1, 16)]
    calib += [_spec(f"ccd/darks/dark_300s_{i:03d}.fits", "dark", "Dark Frame", 300.0, T) for i in range(1, 11)]
    flats = [
        _spec(f"ccd/flats/flat_{f}_{i:03d}.fits", "flat", "Flat Field", t, T, filter=f)
        for f in ("V", "R")
        for i, t in enumerate(FLAT_EXPTIMES, 1)
    ]
    names = [f"NGC7331_{f}_{i:03d}" for f in ("V", "R") for i in range(1, 4)] + ["NGC7331_V_broken"]
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
    darks_m5 = [_spec(f"cmos/darks/dark_120s_-5C_{i:03d}.fits", "dark", "DARK", 120.0, -5.0) for i in range(1, 9)]
    darks_m10 = [_spec(f"cmos/darks/dark_120s_-10C_{i:03d}.fits", "dark", "DARK", 120.0, -10.0) for i in range(1, 11)]
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
    flats += [_spec(f"cmos/flats/flat_L_{i:03d}.fits", "flat", "FLAT", 2.0, -10.0, filter="L") for i in range(1, 11)]
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


def _write_truth_image(truth_dir: Path, rel: str, data: np.ndarray, dtype=np.float32) -> str:
    _write_fits(truth_dir / rel, np.asarray(data, dtype=dtype))
    return rel


# --------------------------------------------------------------------------
# Per-camera writers
# --------------------------------------------------------------------------


def _light_signal_ccd(seed: int, cam: Camera, fr: Frame, rng) -> tuple[np.ndarray, dict]:
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
    level_adu = hi * (lo / hi) ** (k / (len(FLAT_EXPTIMES) - 1)) * rng.uniform(0.98, 1.02)
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
    fringe_e: np.ndarray | float = 0.0  # lights: fringes (e-, before the flat), not in signal_e


def _expose_frame(seed, cam: Camera, fr: Frame, offset, slope, make_signal) -> Exposure:
    """Expose ``fr`` (rng stream ``_FRAME``, index ``fr.index``);
    ``make_signal(fr, rng)`` gives the signal (e-, before the flat) and info of a flat
    or light."""
    rng = _rng(seed, cam.code, _FRAME, fr.index)
    temp_c = _temperature(rng, cam, fr)
    # regulated sensor: dark current follows the set point; CCD-TEMP is a noisy reading
    dark_e = cam.dark_rate * dark_scale(fr.set_temp_c, cam.set_temp_c) * fr.exptime
    signal_e, info, flat, fringe_e = 0.0, {}, None, 0.0
    if fr.kind in ("flat", "light"):
        flat = cam.flats[fr.filter]
        signal_e, info = make_signal(fr, rng)
        fringe_e = info.pop("fringe_e", 0.0)
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
        light_e=0.0 if flat is None else flat * (signal_e + fringe_e),
        overscan_offset=offset,
        overscan_slope=slope,
        n_overscan=cam.n_overscan,
        extra_e=extra,
    )
    return Exposure(raw, temp_c, signal_e, flat, dark_e, info, fringe_e)


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
        signal_e=exp.signal_e + exp.fringe_e,
        flat=exp.flat,
        dark_e=exp.dark_e,
        gain=cam.gain,
        read_noise_e=cam.read_noise_e,
    )


def _write_camera_frames(seed, cam, plan, raw_dir, truth_dir, manifest, levels, make_signal, header_fn):
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
            manifest["lights"][fr.rel_path] = _light_truth(truth_dir, cam, fr, exp, sigma)


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
        "dark_rate_e_per_s": _write_truth_image(truth_dir, f"{k}/dark_rate.fits", cam.dark_rate),
        "flats": {f: _write_truth_image(truth_dir, f"{k}/flat_{f}.fits", fl) for f, fl in cam.flats.items()},
        "hot_pixels": _write_truth_image(truth_dir, f"{k}/hot_pixels.fits", cam.hot, np.uint8),
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
        return _flat_signal_ccd(cam, fr, rng) if fr.kind == "flat" else _light_signal_ccd(seed, cam, fr, rng)

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
            return np.full(cam.bias2d.shape, level * cam.gain), {"sky_adu": float(level)}
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


#: The truth manifest's ``conventions`` (both generators).
CONVENTIONS = {
    "arrays": "numpy [y, x], 0-based; FITS sections 1-based inclusive [x1:x2,y1:y2]",
    "model": "raw = overscan_offset + overscan_slope*y/ny + bias2d + "
    "(Poisson(dark_rate*2**((set_temp_c-temperature_c_camera)/6)*t + flat*S_e) + N(0,rn)) / gain",
    "temperature": "frames[*].temperature_c is the CCD-TEMP reading (set point + jitter); "
    "dark current follows frames[*].set_temp_c",
    "signal": "ADU, S_e/gain (sky+stars, not flat-fielded, no dark, no bias)",
    "ideal_sigma": "ADU, sqrt((rn^2 + flat*S_e + dark_e)/gain^2 + 1/12) / flat",
}


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
        "conventions": dict(CONVENTIONS),
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


# --------------------------------------------------------------------------
# Configurable single-camera nights (write_camera_night)
# --------------------------------------------------------------------------

CAMERA_NIGHT_CODE = 3  # rng camera code of write_camera_night (the demo uses 1 and 2)
_CAMERA_DARK = 4  # rng stream of the darks a camera's software subtracts itself
FRAME_KINDS = ("bias", "dark", "darkflat", "flat", "light")
HEADER_STYLES = ("maxim", "nina")
#: ADU added back by camera software after subtracting its own dark (MaxIm DL: 100).
CAMERA_DARK_PEDESTAL_ADU = 100

_KIND_DIRS = {
    "bias": "bias",
    "dark": "darks",
    "darkflat": "darkflats",
    "flat": "flats",
    "light": "lights",
}
_IMAGETYP = {
    "maxim": {
        "bias": "Bias Frame",
        "dark": "Dark Frame",
        "darkflat": "Dark Frame",
        "flat": "Flat Field",
        "light": "Light Frame",
    },
    "nina": {
        "bias": "BIAS",
        "dark": "DARK",
        "darkflat": "DARKFLAT",
        "flat": "FLAT",
        "light": "LIGHT",
    },
}
_HEADER_WRITERS = {"maxim": _maxim_header, "nina": _nina_header}


@dataclass(frozen=True)
class CameraSpec:
    """One simulated camera: true properties, and what its headers say about them.

    Without an overscan the bias level sits in ``bias2d`` (as the demo CMOS) and
    ``bias_drift_adu``/``bias_slope_adu`` should stay ~0: nothing could track them.
    """

    key: str = "cam"  # folder under raw_dir and truth_dir; manifest key
    instrument: str = "SimCam KAF-1603"  # INSTRUME
    telescope: str = "Sim 0.3m"  # TELESCOP
    header_style: str = "maxim"  # "maxim" (MaxIm DL) or "nina" (N.I.N.A.)
    shape: tuple[int, int] = (128, 160)  # trimmed [ny, nx] pixels, each >= 96
    overscan_columns: int = 0  # serial overscan columns after the data (0: none)
    bias_level_adu: float = 1000.0  # mean bias level (ADU)
    bias_drift_adu: float = 0.05  # ADU step of the level's random walk, per frame
    bias_slope_adu: float = 0.0  # per-frame level gradient along y, in +-this ADU
    bias_pattern_adu: float = 2.0  # scale (ADU) of the static 2-D bias structure
    gain: float = 1.5  # true gain, e-/ADU
    read_noise_e: float = 9.0  # true read noise, e-
    dark_rate_e_per_s: float = 0.02  # median dark current at set_temp_c, e-/s
    hot_pixel_fraction: float = 0.002  # hot pixels get 0.5-20 e-/s more
    amp_glow_e_per_s: float = 0.0  # amp glow at the corner y = 0, x = nx - 1 (e-/s)
    set_temp_c: float = -20.0  # cooler set point (SET-TEMP), C
    temp_jitter_c: float = 0.2  # CCD-TEMP = set point + uniform(-this, +this), C
    flat_corner_level: float = 0.8  # vignetting: flat at the corners
    dust_motes: int = 2  # dust donuts per filter
    prnu: float = 0.005  # pixel response non-uniformity (rms, shared by the filters)
    cosmic_rays_per_dark: tuple[int, int] = (2, 6)  # hits per dark, in [low, high)
    #: card holding the true gain (e-/ADU): "EGAIN", "GAIN" or None
    gain_keyword: str | None = "EGAIN"
    #: a GAIN card holding a camera setting (CMOS driver, e.g. 100), or None
    gain_setting: int | None = None
    #: card holding the true read noise (e-), or None
    read_noise_keyword: str | None = "RDNOISE"
    #: a one-shot-colour sensor's Bayer pattern (BAYERPAT, XBAYROFF = YBAYROFF = 0,
    #: ROWORDER = TOP-DOWN: numpy row 0 is the first row read), or None (monochrome)
    bayer_pattern: str | None = None

    def __post_init__(self):
        if self.header_style not in HEADER_STYLES:
            raise ValueError(f"header_style {self.header_style!r}: one of {HEADER_STYLES}")
        if self.gain_keyword not in (None, "EGAIN", "GAIN"):
            raise ValueError(f"gain_keyword {self.gain_keyword!r}: EGAIN, GAIN or None")
        if self.gain_keyword == "GAIN" and self.gain_setting is not None:
            raise ValueError("GAIN holds either the gain (e-/ADU) or a setting, not both")
        if min(self.shape) < 96:
            raise ValueError(f"shape {self.shape}: at least 96 pixels a side (dust donuts)")


@dataclass(frozen=True)
class FrameSet:
    """``count`` frames of one ``kind`` taken back to back, ``<name>_001.fits``...

    ``start_h``: hours after 00:00 UT of the night's date (may be negative or > 24 for
    other sessions); None: right after the previous set (the first set: 12:00 UT).
    Flats: ``levels_adu`` gives each frame's level (ADU of signal where pixel response
    and illumination are 1), one per frame; the illumination is
    ``1 + illumination_tilt * (x / (nx - 1) - 0.5)`` (x the 0-based column: a lamp
    spectrum tilt; 0 = uniform sky); ``n_stars`` stars at random positions in each frame
    (twilight). Lights: ``sky_e`` per pixel (e-), ``n_stars`` stars of a field fixed for
    the set, dithered +-3 px; ``camera_dark_frames`` > 0: the camera software already
    subtracted a master of that many darks (see ``write_camera_night``).
    """

    name: str  # set name: file stem and manifest ``sets`` key
    kind: str  # bias | dark | darkflat | flat | light
    count: int = 1
    exptime_s: float = 0.0
    filter: str | None = None  # FILTER (flats and lights)
    object: str | None = None  # OBJECT ('flat lamp A', 'M 31'...)
    start_h: float | None = None
    set_temp_c: float | None = None  # None: the camera's set point
    levels_adu: tuple[float, ...] = ()
    illumination_tilt: float = 0.0
    n_stars: int = 0
    sky_e: float = 0.0
    camera_dark_frames: int = 0
    #: flats and lights of a colour camera: (R, G, B) factors of the light reaching the
    #: pixels of each colour (the flat lamp's colour; the sky's and stars' through the
    #: filters), or None (1, 1, 1)
    colour: tuple[float, float, float] | None = None
    #: lights: fringes of the sky's emission lines, their largest excursion as a fraction
    #: of the sky (the camera's ``fringe_pattern``), times a factor drawn per light in
    #: [0.6, 1.4] (the lines vary apart from the continuum); 0: none
    fringe: float = 0.0
    #: lights: the field's shift from light to light, uniform in +-this (px); 0: undithered
    dither_px: float = 3.0

    def __post_init__(self):
        if self.kind not in FRAME_KINDS:
            raise ValueError(f"set {self.name!r}: kind {self.kind!r} not in {FRAME_KINDS}")
        if self.count < 0 or self.exptime_s < 0:
            raise ValueError(f"set {self.name!r}: count and exptime_s must be >= 0")
        if self.kind == "bias" and self.exptime_s != 0:
            raise ValueError(f"set {self.name!r}: a bias has exptime_s 0")
        if (self.kind in ("flat", "light")) != (self.filter is not None):
            raise ValueError(f"set {self.name!r}: flats and lights (only) have a filter")
        if self.kind == "flat" and len(self.levels_adu) != self.count:
            raise ValueError(f"set {self.name!r}: one level per flat ({self.count})")
        if self.camera_dark_frames and self.kind != "light":
            raise ValueError(f"set {self.name!r}: only lights are dark-subtracted by the camera")
        if self.colour is not None and (self.kind not in ("flat", "light") or len(self.colour) != 3):
            raise ValueError(f"set {self.name!r}: a colour (R, G, B) is for flats and lights")


def _default_frame_sets() -> tuple[FrameSet, ...]:
    return (
        FrameSet("bias", "bias", 5, start_h=14.0),
        FrameSet("dark_60s", "dark", 5, 60.0),
        FrameSet(
            "flat_V",
            "flat",
            4,
            5.0,
            filter="V",
            levels_adu=(20000.0,) * 4,
            start_h=16.5,
        ),
        FrameSet(
            "light_V_60s",
            "light",
            3,
            60.0,
            filter="V",
            object="NGC 891",
            start_h=19.0,
            sky_e=800.0,
            n_stars=15,
        ),
    )


@dataclass(frozen=True)
class CameraNight:
    """A night of one camera: the camera and its frame sets (default: a small night)."""

    camera: CameraSpec = CameraSpec()
    frame_sets: tuple[FrameSet, ...] = field(default_factory=_default_frame_sets)
    date: str = "2026-11-20"  # UT date the sets' start_h count from
    readout_s: float = 2.0  # s between the end of one exposure and the next start

    def __post_init__(self):
        names = [fs.name for fs in self.frame_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"set names must be unique: {names}")
        if self.camera.bayer_pattern is None and any(fs.colour for fs in self.frame_sets):
            raise ValueError("sets with a colour need a camera with a bayer_pattern")

    @property
    def filters(self) -> tuple[str, ...]:
        """Filters of the flats and lights, sorted."""
        return tuple(sorted({fs.filter for fs in self.frame_sets if fs.filter}))


def _detector_cards(c: CameraSpec) -> tuple:
    """Gain and read-noise cards as ``c`` says its software writes them."""
    cards = []
    if c.gain_setting is not None:
        cards.append(("GAIN", c.gain_setting, "Sensor gain"))
    if c.gain_keyword == "EGAIN":
        cards.append(("EGAIN", c.gain, "Electronic gain in e-/ADU"))
    elif c.gain_keyword == "GAIN":
        cards.append(("GAIN", c.gain, "Sensor gain"))
    if c.read_noise_keyword:
        cards.append((c.read_noise_keyword, c.read_noise_e, "Read noise in electrons"))
    return tuple(cards)


def _camera_from_spec(c: CameraSpec, filters, seed: int) -> Camera:
    """Truth maps of ``c``: bias2d, dark rate (hot pixels, glow), a flat per filter."""
    code = CAMERA_NIGHT_CODE
    rng = _rng(seed, code, _STATIC)
    ny, nx = c.shape
    yy, xx = np.indices(c.shape)
    bias2d = (
        c.bias_pattern_adu * (0.8 * xx / nx + 0.4 * yy / ny + 0.3 * ((xx - nx / 2) / (nx / 2)) ** 2)
        + rng.normal(0.0, 0.3 * c.bias_pattern_adu, nx)[None, :]
    )
    if not c.overscan_columns:  # the level is in the frame, not in an overscan
        bias2d += c.bias_level_adu
    dark_rate = c.dark_rate_e_per_s * (1 + 0.1 * (xx / nx - 0.5)) * rng.lognormal(0.0, 0.1, c.shape)
    dark_rate += c.amp_glow_e_per_s * np.exp(-np.hypot(xx - (nx - 1), yy) / (nx / 12))
    hot = rng.random(c.shape) < c.hot_pixel_fraction
    dark_rate[hot] += np.exp(rng.uniform(np.log(0.5), np.log(20.0), hot.sum()))
    prnu = c.prnu * rng.normal(0.0, 1.0, c.shape)
    flats = {}
    for k, band in enumerate(filters):
        frng = _rng(seed, code, _STATIC, 1 + k)
        donuts = _random_donuts(frng, c.shape, c.dust_motes)
        flats[band] = make_flat(frng, c.shape, corner_level=c.flat_corner_level, donuts=donuts, prnu=prnu)
    return Camera(
        c.key,
        code,
        c.instrument,
        c.telescope,
        c.gain,
        c.read_noise_e,
        c.set_temp_c,
        c.temp_jitter_c,
        c.overscan_columns,
        bias2d,
        dark_rate,
        hot,
        flats,
        detector_cards=_detector_cards(c),
        cosmic_rays_per_dark=c.cosmic_rays_per_dark,
        fringe_pattern=fringe_pattern(c.shape, seed),
    )


def colour_factors(c: CameraSpec, colour: tuple[float, float, float] | None) -> np.ndarray | float:
    """The factor of each pixel [y, x] of ``c``'s data array that light of ``colour``
    (R, G, B) gets through its Bayer filters; 1.0 for no colour."""
    if colour is None:
        return 1.0
    from .cfa import CfaLayout

    letters = CfaLayout(c.bayer_pattern).colour_map(c.shape)
    factors = np.empty(c.shape)
    for letter, value in zip("RGB", colour):
        factors[letters == letter] = value
    return factors


def _bayer_cards(c: CameraSpec) -> tuple:
    """The Bayer cards capture software writes for a colour sensor (none for mono)."""
    if c.bayer_pattern is None:
        return ()
    return (
        ("BAYERPAT", c.bayer_pattern, "Bayer color pattern"),
        ("XBAYROFF", 0, "X offset of Bayer array"),
        ("YBAYROFF", 0, "Y offset of Bayer array"),
        ("ROWORDER", "TOP-DOWN", "FITS Image Orientation"),
    )


def _night_plan(spec: CameraNight) -> list[tuple[Frame, int, int]]:
    """Every frame as (Frame, set index, position in the set), in time order;
    Frame.index is the position in that order."""
    midnight = datetime.fromisoformat(spec.date)
    style = _IMAGETYP[spec.camera.header_style]
    t = midnight + timedelta(hours=12)
    planned = []
    for set_index, fs in enumerate(spec.frame_sets):
        if fs.start_h is not None:
            t = midnight + timedelta(hours=fs.start_h)
        temp = spec.camera.set_temp_c if fs.set_temp_c is None else fs.set_temp_c
        specs = [
            _spec(
                f"{spec.camera.key}/{_KIND_DIRS[fs.kind]}/{fs.name}_{i:03d}.fits",
                fs.kind,
                style[fs.kind],
                fs.exptime_s,
                temp,
                filter=fs.filter,
                object=fs.object,
            )
            for i in range(1, fs.count + 1)
        ]
        frames = _schedule(t, specs, spec.readout_s)
        planned += [(fr, set_index, k) for k, fr in enumerate(frames)]
        if frames:
            t = frames[-1].date_obs + timedelta(seconds=fs.exptime_s + spec.readout_s)
    planned.sort(key=lambda item: item[0].date_obs)
    for index, (fr, _, _) in enumerate(planned):
        fr.index = index
    return planned


def _illumination(shape, tilt: float) -> np.ndarray:
    """Flat illumination [y, x] (mean 1): 1 + tilt * (x / (nx - 1) - 0.5)."""
    ny, nx = shape
    return np.broadcast_to(1.0 + tilt * (np.arange(nx) / (nx - 1) - 0.5), shape)


def _set_flat_signal(cam: Camera, fs: FrameSet, k: int, illumination, rng):
    """Signal (e-, before the pixel response) of flat ``k`` of ``fs``: its level times
    the illumination, plus ``fs.n_stars`` stars at random positions."""
    level_adu = fs.levels_adu[k]
    signal = level_adu * cam.gain * illumination
    if fs.n_stars:
        ny, nx = cam.bias2d.shape
        x, y = rng.uniform(0, nx, fs.n_stars), rng.uniform(0, ny, fs.n_stars)
        peak = 10 ** rng.uniform(np.log10(2000), np.log10(20000), fs.n_stars) * cam.gain
        fwhm = rng.uniform(2.8, 3.4, fs.n_stars)
        signal = signal + render_stars(cam.bias2d.shape, x, y, peak, fwhm)
    return signal, {"level_adu": float(level_adu), "n_stars": fs.n_stars}


def _set_light_signal(seed: int, cam: Camera, fs: FrameSet, set_index: int, rng):
    """Sky + stars (e-, before the flat) of a light: a field fixed per set, dithered."""
    f = _rng(seed, cam.code, _FIELD, set_index)
    ny, nx = cam.bias2d.shape
    x0, y0 = f.uniform(10, nx - 10, fs.n_stars), f.uniform(10, ny - 10, fs.n_stars)
    peak_adu = 10 ** f.uniform(np.log10(50), np.log10(20000), fs.n_stars)
    dx, dy = rng.uniform(-fs.dither_px, fs.dither_px, 2) if fs.dither_px else (0.0, 0.0)
    stars = render_stars(cam.bias2d.shape, x0 + dx, y0 + dy, peak_adu * cam.gain, 3.0)
    info = {"sky_e": float(fs.sky_e), "dither_px": [float(dx), float(dy)]}
    if fs.fringe:
        strength = fs.fringe * float(rng.uniform(0.6, 1.4))
        info.update(fringe_e=strength * fs.sky_e * cam.fringe_pattern, fringe_strength=strength)
    return fs.sky_e + stars, info


def _camera_master_dark(seed, cam: Camera, fr: Frame, n_frames, offset, slope):
    """Mean (ADU, float [y, x], data then overscan) of the ``n_frames`` darks camera
    software took at ``fr``'s exposure and set point, at level ``offset``/``slope``;
    without cosmic rays (the software rejects them)."""
    dark_e = cam.dark_rate * dark_scale(fr.set_temp_c, cam.set_temp_c) * fr.exptime
    frames = [
        expose(
            np.random.default_rng([seed, cam.code, _CAMERA_DARK, fr.index, k]),
            bias2d=cam.bias2d,
            gain=cam.gain,
            read_noise_e=cam.read_noise_e,
            dark_e=dark_e,
            light_e=0.0,
            overscan_offset=offset,
            overscan_slope=slope,
            n_overscan=cam.n_overscan,
        )
        for k in range(n_frames)
    ]
    return np.mean(frames, axis=0)


def _subtract_camera_dark(raw, master_dark, header, n_frames, fr: Frame) -> np.ndarray:
    """What MaxIm DL's auto-dark writes: raw - master dark + pedestal, rounded and
    clipped to uint16; PEDESTAL = -pedestal (MaxIm: add it to get zero-based ADU),
    CALSTAT = 'D' and a HISTORY card in ``header``."""
    header["PEDESTAL"] = (-CAMERA_DARK_PEDESTAL_ADU, "Add to get zero-based ADU")
    header["CALSTAT"] = ("D", "Calibration state: dark subtracted")
    header.add_history(f"Auto-Dark Subtraction: master of {n_frames} darks, {fr.exptime:g} s at {fr.set_temp_c:g} C")
    written = raw - master_dark + CAMERA_DARK_PEDESTAL_ADU
    return np.clip(np.rint(written), 0, SATURATION_ADU).astype(np.uint16)


def _camera_dark_ideal_sigma(cam: Camera, exp: Exposure, n_frames: int) -> np.ndarray:
    """``ideal_sigma`` (ADU) of a light the camera dark-subtracted: the raw light's
    variance, plus that of the camera's master (one dark's / n_frames), plus a second
    rounding (1/12 ADU^2), all divided by the flat."""
    one_dark = ideal_sigma(
        signal_e=0.0,
        flat=1.0,
        dark_e=exp.dark_e,
        gain=cam.gain,
        read_noise_e=cam.read_noise_e,
    )
    raw_var = (_raw_ideal_sigma(cam, exp) * exp.flat) ** 2
    return np.sqrt(raw_var + one_dark**2 / n_frames + 1.0 / 12.0) / exp.flat


#: Conventions of a camera night beyond ``CONVENTIONS``.
CAMERA_NIGHT_CONVENTIONS = {
    "flat_signal": "flat S_e = level_adu * gain * illumination (+ twilight stars); "
    "illumination = 1 + illumination_tilt * (x/(nx-1) - 0.5), x = 0-based column, "
    "sets[*].illumination (null: uniform); the pixel response is "
    "cameras[*].flats[filter]",
    "camera_dark": "a light of a set with camera_dark (not null) holds "
    "rint(raw - camera_dark.image + pedestal_adu), the header PEDESTAL = "
    "-pedestal_adu, CALSTAT = 'D': bias, level and dark are already removed (up to "
    "the level difference frames[*].overscan_offset_adu - "
    "camera_dark.overscan_offset_adu); a correct calibration subtracts the pedestal "
    "(or the overscan) only, then divides by the flat: (written - pedestal_adu) / "
    "flat = signal within ideal_sigma",
    "camera_dark_ideal_sigma": "ADU, sqrt((rn^2 + flat*S_e + dark_e)/gain^2 + 1/12 + "
    "((rn^2 + dark_e)/gain^2 + 1/12)/camera_dark.frames + 1/12) / flat",
}


def _set_truth(fs: FrameSet, frames: list[str], flat) -> dict:
    """The manifest's ``sets`` entry of ``fs`` (``flat``: truth path or None);
    illumination and camera_dark are filled in by the caller when there are any."""
    return {
        "kind": fs.kind,
        "count": fs.count,
        "exptime": fs.exptime_s,
        "filter": fs.filter,
        "object": fs.object,
        "frames": frames,
        "levels_adu": list(fs.levels_adu),
        "flat": flat,
        "illumination_tilt": fs.illumination_tilt,
        "illumination": None,
        "n_stars": fs.n_stars,
        "sky_e": fs.sky_e,
        "camera_dark": None,
        "colour": None if fs.colour is None else list(fs.colour),
    }


def _bias_levels(c: CameraSpec, seed: int, n_frames: int):
    """Per-frame level offset and slope (ADU): a random walk of step ``bias_drift_adu``
    around ``bias_level_adu`` (around 0 without an overscan: the level is in bias2d)."""
    walk = _rng(seed, CAMERA_NIGHT_CODE, _WALK)
    base_level = c.bias_level_adu if c.overscan_columns else 0.0
    offsets = base_level + np.cumsum(walk.normal(0.0, c.bias_drift_adu, n_frames))
    slopes = walk.uniform(-c.bias_slope_adu, c.bias_slope_adu, n_frames)
    return offsets, slopes


def _camera_dark(seed, cam: Camera, fs: FrameSet, members, offsets, slopes, truth_dir):
    """The master dark the camera software subtracts from the lights ``members`` of
    ``fs``, taken at their mean level, and its truth entry (image written)."""
    indices = [fr.index for fr in members]
    offset, slope = float(offsets[indices].mean()), float(slopes[indices].mean())
    n_frames = fs.camera_dark_frames
    master = _camera_master_dark(seed, cam, members[0], n_frames, offset, slope)
    rel = f"{cam.key}/camera_dark_{fs.name}.fits"
    return master, {
        "frames": n_frames,
        "image": _write_truth_image(truth_dir, rel, master),
        "pedestal_adu": CAMERA_DARK_PEDESTAL_ADU,
        "overscan_offset_adu": offset,
        "overscan_slope_adu": slope,
    }


def write_camera_night(raw_dir, truth_dir, spec: CameraNight, seed: int = DEFAULT_SEED) -> dict:
    """Write the frames of ``spec`` as ``raw_dir/<key>/<bias|darks|darkflats|flats|
    lights>/<set name>_NNN.fits`` and the truth under ``truth_dir``; return the
    manifest (also ``truth_dir/truth.json``). Same arguments, same bytes: all randomness
    comes from ``default_rng([seed, CAMERA_NIGHT_CODE, stream, ...])``.

    Manifest keys: ``seed``; ``conventions``; ``cameras`` (as the demo's: gain, read
    noise, set point, bias2d, dark rate at the set point, flats = pixel response per
    filter, hot pixels, overscan sections; plus ``bias_level_adu``,
    ``amp_glow_e_per_s`` and ``header``: style and the gain/read-noise cards written);
    ``sets`` (per set: kind, count, exptime, filter, object, frames, levels_adu, flat,
    illumination, n_stars, sky_e, camera_dark); ``frames`` (as the demo's, plus
    ``object`` and ``set``); ``lights`` (as the demo's, plus ``set``).

    Lights "already dark-subtracted by the camera software" (``camera_dark_frames``)
    follow MaxIm DL's auto-dark: the software subtracts a master of that many darks of
    the light's exposure and set point (bias included, so bias and dark both go), adds
    a 100 ADU pedestal against negative values and writes PEDESTAL = -100 (MaxIm: add
    it to get zero-based ADU), CALSTAT = 'D' and a HISTORY card. A correct calibration
    subtracts only the pedestal, then divides by the flat; the master's noise is baked
    in, so ``ideal_sigma`` includes it (``conventions['camera_dark_ideal_sigma']``).
    """
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    c = spec.camera
    cam = _camera_from_spec(c, spec.filters, seed)
    plan = _night_plan(spec)
    offsets, slopes = _bias_levels(c, seed, len(plan))
    truth = _camera_truth(cam, truth_dir)
    truth["bias_level_adu"] = c.bias_level_adu
    truth["amp_glow_e_per_s"] = c.amp_glow_e_per_s
    if any(fs.fringe for fs in spec.frame_sets):  # lights' fringes: strength x sky x this, before the flat
        truth["fringe_pattern"] = _write_truth_image(truth_dir, f"{cam.key}/fringe_pattern.fits", cam.fringe_pattern)
    truth["header"] = {
        "style": c.header_style,
        "cards": {key: value for key, value, _ in cam.detector_cards},
    }
    manifest = {
        "seed": int(seed),
        "conventions": {**CONVENTIONS, **CAMERA_NIGHT_CONVENTIONS},
        "cameras": {cam.key: truth},
        "sets": {},
        "frames": {},
        "lights": {},
    }
    illuminations, camera_darks = {}, {}
    for set_index, fs in enumerate(spec.frame_sets):
        members = [fr for fr, s, _ in plan if s == set_index]
        flat = truth["flats"][fs.filter] if fs.filter else None
        entry = _set_truth(fs, [fr.rel_path for fr in members], flat)
        if fs.kind == "flat":
            illuminations[set_index] = _illumination(c.shape, fs.illumination_tilt)
            if fs.illumination_tilt:
                rel = f"{cam.key}/illumination_{fs.name}.fits"
                entry["illumination"] = _write_truth_image(truth_dir, rel, illuminations[set_index])
        if fs.camera_dark_frames and members:
            camera_darks[set_index], entry["camera_dark"] = _camera_dark(
                seed, cam, fs, members, offsets, slopes, truth_dir
            )
        manifest["sets"][fs.name] = entry
    position = {fr.index: (s, k) for fr, s, k in plan}

    def signal(fr, rng):
        set_index, k = position[fr.index]
        fs = spec.frame_sets[set_index]
        if fr.kind == "flat":
            made, info = _set_flat_signal(cam, fs, k, illuminations[set_index], rng)
        else:
            made, info = _set_light_signal(seed, cam, fs, set_index, rng)
        return made * colour_factors(c, fs.colour), info

    for fr, set_index, _ in plan:
        fs = spec.frame_sets[set_index]
        offset, slope = offsets[fr.index], slopes[fr.index]
        exp = _expose_frame(seed, cam, fr, offset, slope, signal)
        header = _HEADER_WRITERS[c.header_style](cam, fr, exp.temp_c)
        for key, value, comment in _bayer_cards(c):
            header[key] = (value, comment)
        raw = exp.raw
        if fs.camera_dark_frames:
            raw = _subtract_camera_dark(raw, camera_darks[set_index], header, fs.camera_dark_frames, fr)
        _write_fits(raw_dir / fr.rel_path, raw, header)
        entry = _frame_entry(cam, fr, exp, offset, slope)
        manifest["frames"][fr.rel_path] = {**entry, "object": fr.object, "set": fs.name}
        if fr.kind == "light":
            if fs.camera_dark_frames:
                sigma = _camera_dark_ideal_sigma(cam, exp, fs.camera_dark_frames)
            else:
                sigma = _raw_ideal_sigma(cam, exp)
            light = _light_truth(truth_dir, cam, fr, exp, sigma)
            manifest["lights"][fr.rel_path] = {**light, "set": fs.name}
    (truth_dir / "truth.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------
# Preset camera nights (each <= 40 frames of 128x160 pixels)
# --------------------------------------------------------------------------


def _pairs(*levels_adu: float) -> tuple[float, ...]:
    """Each level twice: equal-level flat pairs for photon transfer."""
    return tuple(level for level in levels_adu for _ in range(2))


def night_gain_as_eadu() -> CameraNight:
    """CCD (MaxIm DL headers, 16 overscan columns) writing GAIN = 1.5 in e-/ADU (true
    1.5), RDNOISE = 9, no EGAIN: 10 biases, 10 darks 60 s, 10 V flats of 5 s at 2000,
    5000, 10000, 20000, 30000 ADU (2 per level), 5 V lights 60 s."""
    camera = CameraSpec(
        key="ccd",
        instrument="SimCam KAF-1603ME",
        shape=(128, 160),
        overscan_columns=16,
        bias_drift_adu=1.5,
        bias_slope_adu=1.5,
        gain=1.5,
        read_noise_e=9.0,
        gain_keyword="GAIN",
    )
    sets = (
        FrameSet("bias", "bias", 10, start_h=14.0),
        FrameSet("dark_60s", "dark", 10, 60.0),
        FrameSet(
            "flat_V",
            "flat",
            10,
            5.0,
            filter="V",
            levels_adu=_pairs(2000.0, 5000.0, 10000.0, 20000.0, 30000.0),
            start_h=16.5,
        ),
        FrameSet(
            "light_V_60s",
            "light",
            5,
            60.0,
            filter="V",
            object="NGC 891",
            start_h=19.0,
            sky_e=800.0,
            n_stars=20,
        ),
    )
    return CameraNight(camera, sets)


def night_gain_as_setting() -> CameraNight:
    """CMOS (N.I.N.A. headers, no overscan, 500 ADU pedestal, amp glow) writing
    GAIN = 100 as a camera setting (true gain 0.8 e-/ADU), no EGAIN, no RDNOISE, no
    biases: 10 darks 120 s, 10 darkflats 2 s, 10 L flats of 2 s at 3000, 6000, 12000,
    20000, 30000 ADU (2 per level), 5 L lights 120 s."""
    camera = CameraSpec(
        key="cmos",
        instrument="SimCMOS 533MM",
        telescope="Sim 80mm refractor",
        header_style="nina",
        bias_level_adu=500.0,
        bias_pattern_adu=1.0,
        gain=0.8,
        read_noise_e=1.8,
        dark_rate_e_per_s=0.005,
        hot_pixel_fraction=0.003,
        amp_glow_e_per_s=0.3,
        set_temp_c=-10.0,
        flat_corner_level=0.75,
        dust_motes=3,
        prnu=0.01,
        gain_keyword=None,
        gain_setting=100,
        read_noise_keyword=None,
    )
    sets = (
        FrameSet("dark_120s", "dark", 10, 120.0, start_h=13.0),
        FrameSet("darkflat_2s", "darkflat", 10, 2.0, start_h=15.5),
        FrameSet(
            "flat_L",
            "flat",
            10,
            2.0,
            filter="L",
            levels_adu=_pairs(3000.0, 6000.0, 12000.0, 20000.0, 30000.0),
        ),
        FrameSet(
            "light_L_120s",
            "light",
            5,
            120.0,
            filter="L",
            object="M 33",
            start_h=19.0,
            sky_e=400.0,
            n_stars=20,
        ),
    )
    return CameraNight(camera, sets)


def night_single_frame_darks() -> CameraNight:
    """CCD (MaxIm DL headers, EGAIN, RDNOISE): 10 biases, ONE 20 s dark, eleven 60 s
    darks, 6 V flats of 23 s, 3 V lights of 60 s and 3 of 23 s. For the 23 s frames the
    60 s master scaled x0.38 adds far less noise than the single 20 s dark scaled x1.15.
    """
    camera = CameraSpec(
        key="ccd",
        instrument="SimCam KAF-3200ME",
        gain=1.2,
        read_noise_e=7.0,
        dark_rate_e_per_s=0.1,
        hot_pixel_fraction=0.005,
        set_temp_c=-15.0,
    )
    sets = (
        FrameSet("bias", "bias", 10, start_h=13.0),
        FrameSet("dark_20s", "dark", 1, 20.0),
        FrameSet("dark_60s", "dark", 11, 60.0),
        FrameSet(
            "flat_V_23s",
            "flat",
            6,
            23.0,
            filter="V",
            levels_adu=(15000.0,) * 6,
            start_h=16.5,
        ),
        FrameSet(
            "light_V_60s",
            "light",
            3,
            60.0,
            filter="V",
            object="NGC 2403",
            start_h=18.5,
            sky_e=600.0,
            n_stars=15,
        ),
        FrameSet(
            "light_V_23s",
            "light",
            3,
            23.0,
            filter="V",
            object="NGC 2403",
            sky_e=230.0,
            n_stars=15,
        ),
    )
    return CameraNight(camera, sets)


def night_temperature_jitter() -> CameraNight:
    """Camera without overscan (MaxIm DL headers, EGAIN, RDNOISE), set point -15 C,
    every CCD-TEMP jittering within +-0.2 C; NO biases (the bias comes from the darks):
    8 darks each at 30, 60 and 120 s, 8 R flats of 3 s at 18000 ADU, 5 R lights 120 s.
    """
    camera = CameraSpec(
        key="cam",
        instrument="SimCam ICX814",
        bias_level_adu=800.0,
        gain=1.0,
        read_noise_e=4.0,
        dark_rate_e_per_s=0.25,
        hot_pixel_fraction=0.003,
        set_temp_c=-15.0,
        temp_jitter_c=0.2,
    )
    sets = (
        FrameSet("dark_30s", "dark", 8, 30.0, start_h=13.0),
        FrameSet("dark_60s", "dark", 8, 60.0),
        FrameSet("dark_120s", "dark", 8, 120.0),
        FrameSet(
            "flat_R",
            "flat",
            8,
            3.0,
            filter="R",
            levels_adu=(18000.0,) * 8,
            start_h=16.5,
        ),
        FrameSet(
            "light_R_120s",
            "light",
            5,
            120.0,
            filter="R",
            object="IC 342",
            start_h=18.5,
            sky_e=500.0,
            n_stars=20,
        ),
    )
    return CameraNight(camera, sets)


def night_lamp_flats() -> CameraNight:
    """CCD (MaxIm DL headers, 16 overscan columns): 10 biases, 5 darks 60 s, two
    lamp-flat sets of 8 R flats (4 s, 20000 ADU) told apart only by OBJECT ('flat lamp
    A' / 'flat lamp B') and file name, whose illumination changes along x by +6 % and
    -6 % (illumination_tilt); 4 R lights 60 s under a uniform sky."""
    camera = CameraSpec(
        key="ccd",
        instrument="SimCam KAF-1603ME",
        overscan_columns=16,
        bias_drift_adu=1.5,
        bias_slope_adu=1.5,
        gain=1.3,
        read_noise_e=8.0,
    )
    lamp = dict(filter="R", levels_adu=(20000.0,) * 8)
    sets = (
        FrameSet("bias", "bias", 10, start_h=14.0),
        FrameSet("dark_60s", "dark", 5, 60.0),
        FrameSet(
            "flat_lamp_A",
            "flat",
            8,
            4.0,
            object="flat lamp A",
            illumination_tilt=0.06,
            start_h=16.0,
            **lamp,
        ),
        FrameSet(
            "flat_lamp_B",
            "flat",
            8,
            4.0,
            object="flat lamp B",
            illumination_tilt=-0.06,
            **lamp,
        ),
        FrameSet(
            "light_R_60s",
            "light",
            4,
            60.0,
            filter="R",
            object="NGC 7331",
            start_h=18.5,
            sky_e=700.0,
            n_stars=20,
        ),
    )
    return CameraNight(camera, sets)


def night_dark_subtracted() -> CameraNight:
    """Cooled CMOS without overscan (MaxIm DL headers, EGAIN, RDNOISE, 300 ADU
    pedestal, amp glow) whose 5 L lights of 120 s were dark-subtracted by MaxIm DL's
    auto-dark (a master of 8 darks; PEDESTAL = -100, CALSTAT = 'D', HISTORY); also 10
    biases, 10 darks 120 s (not to be subtracted again) and 10 L flats of 2 s at 20000
    ADU."""
    camera = CameraSpec(
        key="cmos",
        instrument="SimCMOS 294MM",
        bias_level_adu=300.0,
        bias_pattern_adu=1.0,
        gain=1.0,
        read_noise_e=3.0,
        hot_pixel_fraction=0.004,
        amp_glow_e_per_s=0.3,
        set_temp_c=-10.0,
        prnu=0.01,
    )
    sets = (
        FrameSet("bias", "bias", 10, start_h=14.0),
        FrameSet("dark_120s", "dark", 10, 120.0),
        FrameSet(
            "flat_L",
            "flat",
            10,
            2.0,
            filter="L",
            levels_adu=(20000.0,) * 10,
            start_h=16.0,
        ),
        FrameSet(
            "light_L_120s",
            "light",
            5,
            120.0,
            filter="L",
            object="M 27",
            start_h=19.0,
            sky_e=300.0,
            n_stars=20,
            camera_dark_frames=8,
        ),
    )
    return CameraNight(camera, sets)


def night_osc() -> CameraNight:
    """A one-shot-colour CMOS (N.I.N.A. headers, BAYERPAT RGGB, no overscan, EGAIN and
    RDNOISE written, 0.4 % hot pixels): 8 biases, 8 darks 120 s, 8 flats of
    3 s under a lamp of colour 1.0 : 0.7 : 0.5 (R : G : B) at 8000 and 16000 ADU (its
    green level), 4 lights 120 s of a sky of colour 0.8 : 1.0 : 0.6."""
    camera = CameraSpec(
        key="osc",
        instrument="SimCMOS 571MC",
        telescope="Sim 72mm refractor",
        header_style="nina",
        bias_level_adu=800.0,
        bias_drift_adu=0.0,
        bias_pattern_adu=1.0,
        gain=0.5,
        read_noise_e=2.5,
        dark_rate_e_per_s=0.01,
        hot_pixel_fraction=0.004,
        set_temp_c=-10.0,
        flat_corner_level=0.8,
        prnu=0.01,
        bayer_pattern="RGGB",
    )
    lamp, sky = (1.0, 0.7, 0.5), (0.8, 1.0, 0.6)
    sets = (
        FrameSet("bias", "bias", 8, start_h=13.0),
        FrameSet("dark_120s", "dark", 8, 120.0),
        FrameSet(
            "flat_OSC", "flat", 8, 3.0, filter="OSC", levels_adu=_pairs(8000.0, 16000.0) * 2, colour=lamp, start_h=16.0
        ),
        FrameSet(
            "light_OSC_120s",
            "light",
            4,
            120.0,
            filter="OSC",
            object="M 42",
            start_h=19.0,
            sky_e=600.0,
            n_stars=20,
            colour=sky,
        ),
    )
    return CameraNight(camera, sets)


def night_fringes() -> CameraNight:
    """A thinned CCD in red bands (MaxIm DL headers, 16 overscan columns): fringes of the
    sky's emission lines (``fringe_pattern``: arcs and waves, 2 % of the sky at their
    largest, x0.6-1.4 from light to light) in 12 z lights 120 s dithered +-15 px and 8 i
    lights 120 s not dithered; 5 biases, 5 darks 120 s, 5 z and 5 i flats (a lamp: no
    fringes)."""
    camera = CameraSpec(
        key="red",
        instrument="SimCam deep-depletion (fringes)",
        overscan_columns=16,
        gain=1.2,
        read_noise_e=5.0,
        dark_rate_e_per_s=0.005,
    )
    sets = (
        FrameSet("bias", "bias", 5, start_h=14.0),
        FrameSet("dark_120s", "dark", 5, 120.0),
        FrameSet("flat_z", "flat", 5, 4.0, filter="z", levels_adu=(20000.0,) * 5, start_h=16.5),
        FrameSet("flat_i", "flat", 5, 3.0, filter="i", levels_adu=(20000.0,) * 5),
        FrameSet(
            "light_z_120s",
            "light",
            12,
            120.0,
            filter="z",
            object="NGC 4565",
            start_h=19.0,
            sky_e=2500.0,
            n_stars=15,
            fringe=0.02,
            dither_px=15.0,
        ),
        FrameSet(
            "light_i_120s",
            "light",
            8,
            120.0,
            filter="i",
            object="NGC 4565",
            sky_e=1800.0,
            n_stars=15,
            fringe=0.02,
            dither_px=0.0,
        ),
    )
    return CameraNight(camera, sets)


def night_tiny() -> CameraNight:
    """The workflow's bundled test night (``.test/raw``, ``make test-night``): the
    smallest night that goes through every rule, 12 frames of 96x104 pixels (300 kB). A CCD
    (MaxIm DL headers, EGAIN, RDNOISE, 8 overscan columns named by BIASSEC/DATASEC/TRIMSEC,
    so a configuration without a profile for it calibrates it): 3 biases, 3 darks 60 s, 4
    V flats of 5 s at 10000 and 20000 ADU (2 per level, for the gain), 2 V lights 60 s."""
    camera = CameraSpec(key="ccd", instrument="SimCam KAF-0261 (test night)", shape=(96, 96), overscan_columns=8)
    sets = (
        FrameSet("bias", "bias", 3, start_h=14.0),
        FrameSet("dark_60s", "dark", 3, 60.0),
        FrameSet("flat_V", "flat", 4, 5.0, filter="V", levels_adu=_pairs(10000.0, 20000.0), start_h=16.5),
        FrameSet("light_V_60s", "light", 2, 60.0, filter="V", object="NGC 891", start_h=19.0, sky_e=800.0, n_stars=8),
    )
    return CameraNight(camera, sets)


#: The preset nights by name (``python -m ccdcal.simulate --night NAME``).
NIGHTS = {
    name.removeprefix("night_"): preset
    for name, preset in sorted(globals().items())
    if name.startswith("night_") and callable(preset)
}


@dataclass(frozen=True)
class LightScore:
    """How a calibrated light compares with its truth (``score_light``).

    ``scatter_ratio``: robust scatter (1.4826 MAD) of calibrated - expected over the
    median UNCERT; ``z_scatter``: robust scatter of (calibrated - expected) / UNCERT (1.0
    when UNCERT is right pixel by pixel); ``uncert_ratio``: median UNCERT over the median
    ideal_sigma (above 1 by the masters' noise); ``scale``: the calibrated/truth level
    factor fitted (the master flat's normalization); ``pixels``: how many were used
    (MASK = 0, finite)."""

    scatter_ratio: float
    z_scatter: float
    uncert_ratio: float
    scale: float
    pixels: int


def score_light(calibrated, truth_dir, light: dict, illumination=None) -> LightScore:
    """Compare a calibrated light (FITS with UNCERT and MASK) with the truth of
    ``light`` (a manifest ``lights`` entry). ``illumination``: the truth illumination of
    the flats it was calibrated with (a lamp's, ``sets[*].illumination``), which the
    calibrated image is divided by; None for a uniform one. Expected = scale x signal /
    illumination, scale fitted as the median ratio where the signal is well above 0."""
    from astropy.io import fits

    truth_dir = Path(truth_dir)
    with fits.open(calibrated) as hdul:
        data = hdul[0].data.astype(np.float64)
        uncert = hdul["UNCERT"].data.astype(np.float64)
        mask = hdul["MASK"].data
    signal = fits.getdata(truth_dir / light["signal"]).astype(np.float64)
    ideal = fits.getdata(truth_dir / light["ideal_sigma"]).astype(np.float64)
    if illumination is not None:
        signal = signal / fits.getdata(truth_dir / illumination).astype(np.float64)
    good = (mask == 0) & np.isfinite(data) & np.isfinite(uncert) & (uncert > 0)
    bright = good & (signal > 5 * ideal)
    scale = float(np.median(data[bright] / signal[bright])) if bright.any() else 1.0
    residual = (data - scale * signal)[good]

    def robust_std(values):
        return float(1.4826 * np.median(np.abs(values - np.median(values))))

    return LightScore(
        scatter_ratio=robust_std(residual) / float(np.median(uncert[good])),
        z_scatter=robust_std(residual / uncert[good]),
        uncert_ratio=float(np.median(uncert[good]) / np.median(ideal[good])),
        scale=scale,
        pixels=int(good.sum()),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccdcal.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", help="output directory for the raw frames")
    parser.add_argument("truth_dir", help="output directory for the truth (truth.json + FITS)")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"base seed (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--night",
        choices=sorted(NIGHTS),
        help="a preset camera night (night_<NAME>() here) instead of the demo night",
    )
    args = parser.parse_args(argv)
    if args.night:
        manifest = write_camera_night(args.raw_dir, args.truth_dir, NIGHTS[args.night](), seed=args.seed)
    else:
        manifest = write_demo_night(args.raw_dir, args.truth_dir, seed=args.seed)
    print(
        f"wrote {len(manifest['frames'])} frames ({len(manifest['lights'])} lights) to {args.raw_dir}, "
        f"truth to {args.truth_dir}/truth.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
