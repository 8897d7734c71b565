"""Cosmic rays in a calibrated light: L.A.Cosmic (astroscrappy) driven by ccdcal's planes.

``find_cosmic_rays(image, uncert, mask, gain=, read_noise=, saturation=, settings=)``
finds the pixels of a calibrated light that a cosmic ray hit and returns them as a bool
plane, the MASK with bit ``COSMIC`` (16, ``MASKB16 = 'COSMIC'``) set on them and, with
``replace``, the image and UNCERT with those pixels replaced.

Units and conventions
---------------------
* ``image``: a calibrated light as ccdcal writes it, float ADU, bias (and dark)
  subtracted and divided by the flat, *sky included* (not sky-subtracted), arrays
  ``[y, x]``. ``uncert``: its UNCERT, 1 sigma in ADU (read noise, shot noise, masters,
  through the flat). ``mask``: its MASK, uint8 bits (``ccdcal.products``).
* ``gain`` in e-/ADU, ``read_noise`` in e-, ``saturation`` in ADU *of the calibrated
  image*: the level at and above which a pixel is saturated there (about the raw
  saturation less the bias level; None: no level, the SATURATED bits alone).
* astroscrappy works in electrons: it multiplies the image by ``gain``, ``invar`` by
  ``gain^2`` and compares ``satlevel`` (passed as ``saturation * gain``) with the
  electrons. With ``invar`` given, every test is a ratio of signal to noise, the same for
  any gain; ``gain`` then only scales ``satlevel``, and ``read_noise`` is not used.

Noise: UNCERT^2 as ``invar``, no ``inbkg``
------------------------------------------
astroscrappy wants the sky in ``indat`` so that, without ``invar``, it can model the
noise as ``gain * indat + read_noise^2``: right for a raw frame in ADU, wrong by the
flat (1 / F in variance) and the masters' noise for a flat-fielded one, and wrong for any
sky-subtracted one. Our UNCERT is that variance propagated exactly, so we hand it over
as ``invar`` (ADU^2). ``inbkg`` is left out: it is for spectra (sky lines subtracted
before the Laplacian), it would remove from the fine-structure image the very stars the
``objlim`` test protects, and astroscrappy counts its variance as ``gain * inbkg`` (Poisson
of raw electrons), again wrong after the flat. The light goes in as it is, sky included.

astroscrappy median-filters ``invar`` over 7 pixels (to forget the cosmic rays' own
shot noise). On a sharp star (FWHM 2-3 px) that median is the sky's variance, not the
star's: the star's edge, where L.A.Cosmic's Laplacian is positive and its fine-structure
image clipped to 0.01, then looks like a cosmic ray (measured: bright stars' edges flagged
on a 60 e- sky). So ``invar`` is UNCERT^2 grey-eroded over 3 x 3 (cosmic rays, narrower,
removed) then grey-dilated over 7 x 7 (``noise_variance``): its 7-pixel median is then at
least the star's own variance from one FWHM of the star's centre outwards (inside, the
fine-structure test protects the core), and the sky's (within 2 %) away from stars.

Steps
-----
1. ``inmask`` = pixels with any of ``masked_bits`` (default BADPIX, SATURATED, WEAKFLAT,
   NONFINITE, COSMIC), SATURATED pixels grown by ``saturated_grow`` pixels (saturated
   stars' edges), and non-finite image or UNCERT values (filled with the median for
   astroscrappy). astroscrappy never flags those and grows them by one more pixel
   itself: a cosmic ray touching a hot pixel is not flagged next to it.
2. ``astroscrappy.detect_cosmics`` on the light padded by 5 reflected pixels (its median
   filters copy their input into a border of up to 4 pixels instead of filtering it: a
   cosmic ray there was missed), with ``sigclip``, ``sigfrac``, ``objlim``, ``niter``,
   ``sepmed``, ``cleantype``, ``fsmode`` and the psf options as given.
3. Significance (``zmin``): L.A.Cosmic's Laplacian-to-noise test lets noise peaks through
   (~6e-4 of the pixels at sigclip 3.5). Each 8-connected group of flagged pixels is kept
   only if one of its pixels stands ``zmin`` sigma above the median of the 7 x 7 box
   around it (flagged and masked pixels left out), sigma the median UNCERT there.
4. Star cores (``star_ratio``): a group is dropped when it looks like a star's core: some
   pixel of the 3 x 3 box around the group's brightest pixel, itself at least half as
   bright (over the background of step 3), has its third faintest neighbour of 8 at
   least ``star_ratio`` times as bright as the brightest pixel. A star of FWHM >= 2 px
   has all 8 neighbours of its central pixel lit (>= 0.25 of its peak); a single pixel,
   a 2-4 pixel cluster or a track lights at most 5 of them.
5. Growth (``grow_z``): L.A.Cosmic's Laplacian is small on a faint pixel next to a bright
   one (the bright one's light enters it with a minus sign). Twice, an unflagged,
   unmasked neighbour of a flagged pixel is flagged when it stands ``grow_z`` sigma above
   the median of the unflagged, unmasked pixels of the 5 x 5 box around it (sigma: their
   median UNCERT) and is fainter than the brightest flagged pixel next to it (downhill:
   never into a star's core). This replaces astroscrappy's own neighbour rule (``sigfrac``
   1: off), which tests the same Laplacian: with sigfrac 0.7 instead, 0.47e-4 of the
   other pixels were flagged on average over the 12 test lights (0.91e-4 at most), most
   of them next to cosmic rays, against 0.21e-4 (0.44e-4), at the same detection.
6. With ``replace``: each flagged pixel gets the median of the usable pixels of the
   (2 ``replace_radius`` + 1)^2 box around it (neither flagged now nor with any of
   ``masked_bits``), the rule of ``ccdcal.cosmetic`` (not astroscrappy's cleaned array,
   which leaves a 2-pixel border and is rounded through electrons). Its UNCERT becomes
   that median's, 1.2533 s / sqrt(n) (n pixels used, s their median UNCERT; see
   ``ccdcal.cosmetic``). A flagged pixel with no usable pixel in its box keeps its value
   and UNCERT (``unfilled``). MASK: COSMIC on every flagged pixel, replaced or not; no
   other bit is touched.

Measured (tests/test_cosmic.py's lights: 1024^2, sky 60 / 800 / 2000 e-, 300 stars of
FWHM 2-3 px from 10 sigma to saturated, 600-800 cosmic-ray events of 50-5000 e-, 0.1 %
hot pixels; and 9 more of those): 96.4-98.7 % of the unmasked cosmic-ray pixels above
5 sigma flagged (the misses: on stars, next to hot pixels, in the 5-6 sigma band),
0.1-0.4e-4 of the other pixels flagged, no star core flagged (~3500 stars). astroscrappy
alone with its defaults on the same lights: 95-97 %, 2.3-4.6e-4, 3-10 star cores flagged
per 290 stars.

Cost (benchmarks/cosmic_cost.py, 4096^2, 2 cores): ~6-7 s wall, ~7.5 s CPU per light with
``niter`` 1 (astroscrappy's time: each more iteration adds ~5 s CPU), 165-190 times
``Calibration.apply`` and 30-35 times a light job's whole per-light work (read,
calibrate, write); ~0.9 GB of work arrays. astroscrappy's C code releases the GIL (two
lights on two threads: 1.84 times one, as two processes) and its median filters use
OpenMP (OMP_NUM_THREADS threads, all cores by default: set it to 1 when lights run on
several threads, or the two oversubscribe the cores).

Settings (a mapping, e.g. a config section, read by ``CosmicSettings.from_dict``)::

    sigclip: 3.5        # L.A.Cosmic Laplacian-to-noise limit (astroscrappy's default 4.5)
    sigfrac: 1.0        # neighbours' limit, x sigclip (0.3); 1: astroscrappy's rule off
    objlim: 8.0         # minimum Laplacian / fine-structure contrast (5.0): stars
    zmin: 4.5           # step 3: a group's best pixel, sigma above its background; 0: off
    star_ratio: 0.1     # step 4: third faintest neighbour / peak of a star; 0: off
    grow_z: 3.5         # step 5: sigma of a neighbour added to a group; 0: off
    niter: 1            # astroscrappy iterations (4): each costs the same; with step 5,
                        # more found nothing more in the tests
    sepmed: true        # separable median filters (faster)
    cleantype: meanmask # how astroscrappy cleans between iterations (meanmask, medmask,
                        # median, idw); not the replacement of step 6
    fsmode: median      # fine-structure image: median, or convolve (with the psf)
    psfmodel: gauss     # fsmode convolve: gauss, gaussx, gaussy, moffat
    psffwhm: 2.5        # px, fsmode convolve
    psfsize: 7          # px, odd, fsmode convolve
    psfbeta: 4.765      # moffat beta
    masked_bits: 31     # MASK bits never flagged (BADPIX|SATURATED|WEAKFLAT|NONFINITE|COSMIC)
    saturated_grow: 2   # px around SATURATED pixels also never flagged
    replace: false      # step 6
    replace_radius: 2   # px, box half-size of step 6 (5 x 5)

Run cosmic-ray detection before ``ccdcal.cosmetic``: the cosmetic medians then leave the
COSMIC pixels out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import astroscrappy
import numpy as np
from scipy import ndimage

from .cosmetic import box_offsets, flagged_pixels, local_medians, replace_pixels
from .products import BADPIX, COSMIC, NONFINITE, SATURATED, WEAKFLAT
from .specs import bad_option, checked_bool, checked_float, checked_int, checked_name, spec_from_mapping

FSMODES = ("median", "convolve")
PSFMODELS = ("gauss", "gaussx", "gaussy", "moffat")
CLEANTYPES = ("meanmask", "medmask", "median", "idw")

#: MASK bits whose pixels are astroscrappy's ``inmask`` by default: never flagged, never
#: used to clean (astroscrappy also leaves their 8 neighbours unflagged).
MASKED_BITS = BADPIX | SATURATED | WEAKFLAT | NONFINITE | COSMIC

#: Pixels of reflected border added around the light for astroscrappy, whose median
#: filters (up to 9 x 9) copy the input into their border instead of filtering it.
PAD = 5

#: Half-sizes of the grey erosion (cosmic rays out) and dilation (undo astroscrappy's
#: 7-pixel median) applied to UNCERT^2 before it becomes ``invar``.
NOISE_ERODE, NOISE_DILATE = 1, 3

#: Half-sizes of the boxes whose medians are a pixel's background and sigma in the
#: screening tests (7 x 7) and in the growth (5 x 5), and how many times the growth runs.
SCREEN_RADIUS, GROW_RADIUS, GROW_ROUNDS = 3, 2, 2


@dataclass(frozen=True)
class CosmicSettings:
    """How ``find_cosmic_rays`` works (module docstring: meanings, units, defaults)."""

    sigclip: float = 3.5
    sigfrac: float = 1.0
    objlim: float = 8.0
    zmin: float = 4.5
    star_ratio: float = 0.1
    grow_z: float = 3.5
    niter: int = 1
    sepmed: bool = True
    cleantype: str = "meanmask"
    fsmode: str = "median"
    psfmodel: str = "gauss"
    psffwhm: float = 2.5
    psfsize: int = 7
    psfbeta: float = 4.765
    masked_bits: int = MASKED_BITS
    saturated_grow: int = 2
    replace: bool = False
    replace_radius: int = 2

    def __post_init__(self):
        checked = {
            "sigclip": checked_float("cosmic_rays", "sigclip", self.sigclip, 0, strict=True),
            "sigfrac": checked_float("cosmic_rays", "sigfrac", self.sigfrac, 0, strict=True, maximum=1),
            "objlim": checked_float("cosmic_rays", "objlim", self.objlim, 0, strict=True),
            "zmin": checked_float("cosmic_rays", "zmin", self.zmin, 0),
            "star_ratio": checked_float("cosmic_rays", "star_ratio", self.star_ratio, 0, maximum=1),
            "grow_z": checked_float("cosmic_rays", "grow_z", self.grow_z, 0),
            "niter": checked_int("cosmic_rays", "niter", self.niter, 1, 10),
            "sepmed": checked_bool("cosmic_rays", "sepmed", self.sepmed),
            "cleantype": checked_name("cosmic_rays", "cleantype", self.cleantype, CLEANTYPES),
            "fsmode": checked_name("cosmic_rays", "fsmode", self.fsmode, FSMODES),
            "psfmodel": checked_name("cosmic_rays", "psfmodel", self.psfmodel, PSFMODELS),
            "psffwhm": checked_float("cosmic_rays", "psffwhm", self.psffwhm, 0, strict=True, maximum=50),
            "psfsize": checked_int("cosmic_rays", "psfsize", self.psfsize, 3, 51),
            "psfbeta": checked_float("cosmic_rays", "psfbeta", self.psfbeta, 1, strict=True),
            "masked_bits": checked_int("cosmic_rays", "masked_bits", self.masked_bits, 0, 255),
            "saturated_grow": checked_int("cosmic_rays", "saturated_grow", self.saturated_grow, 0, 10),
            "replace": checked_bool("cosmic_rays", "replace", self.replace),
            "replace_radius": checked_int("cosmic_rays", "replace_radius", self.replace_radius, 1, 5),
        }
        if checked["psfsize"] % 2 == 0:
            raise bad_option("cosmic_rays", "psfsize", "must be odd", self.psfsize)
        for name, value in checked.items():  # plain Python values (from numpy or YAML)
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CosmicSettings:
        """Settings from a mapping (missing keys: the defaults); ValueError naming the key
        and the value for an unknown key or a value of the wrong type or out of range."""
        return spec_from_mapping(cls, values, "cosmic_rays")


@dataclass(frozen=True)
class CosmicResult:
    """What ``find_cosmic_rays`` found and did.

    ``crmask``: bool [y, x], the cosmic-ray pixels. ``mask``: MASK with COSMIC set on
    them (a copy, or the input with ``inplace``). ``image``, ``uncert``: with
    ``replace``, the flagged pixels replaced (copies, or the inputs with ``inplace``);
    without, the inputs themselves, untouched. ``flagged``: pixels flagged (in
    ``crmask``); ``dropped``: pixels astroscrappy flagged that steps 3-4 dropped (noise
    peaks, star cores); ``grown``: pixels step 5 added; ``replaced`` and ``unfilled``:
    of the flagged, given a local median or left as they were (no usable neighbour)."""

    crmask: np.ndarray
    image: np.ndarray
    uncert: np.ndarray | None
    mask: np.ndarray
    flagged: int
    dropped: int
    grown: int
    replaced: int
    unfilled: int


def _running(a: np.ndarray, radius: int, op, axis: int) -> np.ndarray:
    """``op`` (np.fmin / np.fmax) over a window of 2 radius + 1 along ``axis``,
    the ends padded with their edge values: log2(window) + 1 array passes."""
    if radius <= 0:
        return a
    width = 2 * radius + 1
    n = a.shape[axis]
    padded = np.pad(a, [(radius, radius) if k == axis else (0, 0) for k in range(a.ndim)], mode="edge")

    def part(x, start, length):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + length)
        return x[tuple(index)]

    span, current = 1, padded  # current[i] = op over padded[i : i + span]
    while 2 * span <= width:
        length = current.shape[axis] - span
        current = op(part(current, 0, length), part(current, span, length))
        span *= 2
    return op(part(current, 0, n), part(current, width - span, n))


def _box(a: np.ndarray, radius: int, op) -> np.ndarray:
    return _running(_running(a, radius, op, 0), radius, op, 1)


def noise_variance(uncert: np.ndarray) -> np.ndarray:
    """The variance (ADU^2, float32) handed to astroscrappy as ``invar``: UNCERT^2,
    grey-eroded over 3 x 3 (the shot noise of the cosmic rays themselves out: they are
    narrower than 3 pixels) then grey-dilated over 7 x 7 (astroscrappy median-filters
    ``invar`` over 7 pixels, which on the edge of a star of FWHM 2-3 px leaves the sky's
    variance; after the dilation that median is at least the star's own variance from one
    FWHM of its centre outwards)."""
    variance = np.square(np.asarray(uncert, dtype=np.float32))
    # fmin / fmax: a NaN (a NONFINITE pixel) does not spread; it gets its neighbours' value
    return _box(_box(variance, NOISE_ERODE, np.fmin), NOISE_DILATE, np.fmax)


def _grow(plane: np.ndarray, index: np.ndarray, radius: int) -> None:
    """Set ``plane`` (bool, 2-D, C order) True in the (2 radius + 1)^2 box around each of
    the raveled ``index`` pixels, touching only those boxes."""
    ny, nx = plane.shape
    y, x = np.divmod(index, nx)
    for dy in range(-radius, radius + 1):
        yy = np.clip(y + dy, 0, ny - 1)
        for dx in range(-radius, radius + 1):
            plane[yy, np.clip(x + dx, 0, nx - 1)] = True


def _starlike(image, index, group, count, background, flat_mask, bits, ratio) -> np.ndarray:
    """Which groups (bool per label 0..count) look like a star's core (module docstring):
    some pixel of the 3 x 3 box around the group's brightest pixel, itself at least half
    as bright (over the background), has its third faintest neighbour (of 8) at least
    ``ratio`` times as bright as the brightest pixel."""
    ny, nx = image.shape
    flat_image = image.reshape(-1)
    excess = flat_image[index] - background
    excess[~np.isfinite(excess)] = -np.inf
    order = np.lexsort((-excess, group))  # by group, brightest first
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    keep = np.isfinite(excess[first]) & (excess[first] > 0)
    first = first[keep]
    labels, peak, level = group[first], excess[first], background[first]
    y, x = np.divmod(index[first], nx)
    dy, dx = box_offsets(1)
    dy, dx = np.r_[0, dy], np.r_[0, dx]  # the pixel itself first

    def light(yy, xx):
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        near = np.where(inside, yy * nx + xx, 0)
        values = flat_image[near] - level.reshape((-1,) + (1,) * (yy.ndim - 1))
        values[~inside | ((flat_mask[near] & bits) != 0) | ~np.isfinite(values)] = 0
        return values

    cy, cx = y[:, None] + dy, x[:, None] + dx  # (groups, 9) candidate centres
    centre = light(cy, cx)
    around = light(cy[:, :, None] + dy[1:], cx[:, :, None] + dx[1:])  # (groups, 9, 8)
    third = np.partition(around, 2, axis=2)[:, :, 2]
    third[centre < 0.5 * peak[:, None]] = -np.inf
    starlike = np.zeros(count + 1, dtype=bool)
    starlike[labels] = third.max(axis=1) >= ratio * peak
    return starlike


def _grow_significant(
    crmask: np.ndarray,
    image: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    settings: CosmicSettings,
    rounds: int = GROW_ROUNDS,
) -> int:
    """Add to ``crmask`` the 8-neighbours of its pixels that stand ``settings.grow_z``
    sigma above the median of their own unflagged, unmasked 8 neighbours (sigma: the
    median of those neighbours' UNCERT) and are fainter than the brightest flagged pixel
    next to them, ``rounds`` times (module docstring, step 5); returns how many."""
    ny, nx = crmask.shape
    flat_cr, flat_mask = crmask.reshape(-1), mask.reshape(-1)
    bits = np.uint8(settings.masked_bits)
    dy, dx = box_offsets(1)

    def usable(values, sigmas, near):
        return ((flat_mask[near] & bits) == 0) & ~flat_cr[near]

    added = 0
    for _ in range(rounds):
        index = np.flatnonzero(crmask)
        if index.size == 0:
            break
        y, x = np.divmod(index, nx)
        yy, xx = (y[:, None] + dy).ravel(), (x[:, None] + dx).ravel()
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        candidates = np.unique(yy[inside] * nx + xx[inside])
        candidates = candidates[~flat_cr[candidates] & ((flat_mask[candidates] & bits) == 0)]
        if candidates.size == 0:
            break
        background, _, _ = local_medians(image, None, candidates, usable, GROW_RADIUS)
        sigma, _, _ = local_medians(noise, None, candidates, usable, GROW_RADIUS)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (image.reshape(-1)[candidates] - background) / sigma
        # downhill only: fainter than the brightest flagged pixel next to it (a cosmic
        # ray's faint edge; a star's core next to a flagged pixel is uphill)
        cy, cx = np.divmod(candidates, nx)
        ny_, nx_ = cy[:, None] + dy, cx[:, None] + dx
        inside = (ny_ >= 0) & (ny_ < ny) & (nx_ >= 0) & (nx_ < nx)
        near = np.where(inside, ny_ * nx + nx_, 0)
        flagged_light = np.where(inside & flat_cr[near], image.reshape(-1)[near], -np.inf).max(axis=1)
        downhill = image.reshape(-1)[candidates] < flagged_light
        new = candidates[np.isfinite(z) & (z >= settings.grow_z) & downhill]
        if new.size == 0:
            break
        flat_cr[new] = True
        added += new.size
    return added


def _screen(
    crmask: np.ndarray, image: np.ndarray, noise: np.ndarray, mask: np.ndarray, settings: CosmicSettings
) -> int:
    """Drop from ``crmask`` every 8-connected group of flagged pixels that fails the
    significance test (``zmin``) or looks like a star's core (``star_ratio``), the
    module docstring's steps 3 and 4; returns how many pixels were dropped.

    Per pixel z = (value - b) / s: b the median of the 7 x 7 box around it, s the
    median of UNCERT there, both over the pixels neither flagged nor masked."""
    index = np.flatnonzero(crmask)
    if index.size == 0 or (settings.zmin <= 0 and settings.star_ratio <= 0):
        return 0
    flat_mask, flat_cr = mask.reshape(-1), crmask.reshape(-1)
    bits = np.uint8(settings.masked_bits)

    def usable(values, sigmas, near):
        return ((flat_mask[near] & bits) == 0) & ~flat_cr[near]

    background, _, _ = local_medians(image, None, index, usable, SCREEN_RADIUS)
    labels, count = ndimage.label(crmask, np.ones((3, 3), dtype=bool))
    group = labels.reshape(-1)[index]
    drop_group = np.zeros(count + 1, dtype=bool)
    if settings.zmin > 0:
        sigma, _, _ = local_medians(noise, None, index, usable, SCREEN_RADIUS)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (image.reshape(-1)[index] - background) / sigma
        z[~np.isfinite(z)] = np.inf  # nothing to compare with: kept
        best = np.full(count + 1, -np.inf)
        np.maximum.at(best, group, z)
        drop_group |= best < settings.zmin
    if settings.star_ratio > 0:
        drop_group |= _starlike(image, index, group, count, background, flat_mask, bits, settings.star_ratio)
    drop = index[drop_group[group]]
    flat_cr[drop] = False
    return int(drop.size)


def find_cosmic_rays(
    image: np.ndarray,
    uncert: np.ndarray | None,
    mask: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    saturation: float | None = None,
    settings: CosmicSettings | Mapping[str, Any] | None = None,
    inplace: bool = False,
) -> CosmicResult:
    """Find (and with ``settings.replace``, replace) the cosmic-ray pixels of a calibrated
    light; the module docstring is the specification.

    ``image``: float ADU [y, x] (bias/dark subtracted, flat divided, sky included);
    ``uncert``: its 1-sigma UNCERT (ADU), or None (astroscrappy's own noise model from
    ``gain`` and ``read_noise`` then); ``mask``: its MASK (uint8 bits); ``gain``: e-/ADU;
    ``read_noise``: e-; ``saturation``: ADU in the calibrated image at and above which
    a pixel is saturated, or None. ``inplace``: write the results into ``image``,
    ``uncert`` (with ``replace``) and ``mask`` (C-contiguous) instead of copies."""
    if not isinstance(settings, CosmicSettings):
        settings = CosmicSettings.from_dict(settings)
    gain = checked_float("find_cosmic_rays", "gain", gain, 0, strict=True)
    read_noise = checked_float("find_cosmic_rays", "read_noise", read_noise, 0)
    if saturation is not None:
        saturation = checked_float("find_cosmic_rays", "saturation", saturation, 0, strict=True)
    image = np.asarray(image)
    shape = image.shape
    if image.ndim != 2 or np.shape(mask) != shape or (uncert is not None and np.shape(uncert) != shape):
        raise ValueError(
            f"image, uncert and mask must be 2-D planes of one shape, not {shape}, "
            f"{None if uncert is None else np.shape(uncert)}, {np.shape(mask)}"
        )
    if inplace and not all(
        a is None or (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable)
        for a in (image, uncert, mask)
    ):
        raise ValueError("inplace needs writeable C-contiguous numpy arrays")
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 MASK bits, not {mask.dtype}")

    # astroscrappy's inputs, with a reflected border of PAD pixels
    masked = np.bitwise_and(mask, np.uint8(settings.masked_bits)).astype(bool)
    if settings.masked_bits & SATURATED and settings.saturated_grow:
        _grow(masked, flagged_pixels(mask, SATURATED), settings.saturated_grow)
    data = np.asarray(image, dtype=np.float32)
    variance = noise_variance(uncert) if uncert is not None else None
    bad = ~np.isfinite(data)
    if variance is not None:
        bad |= ~np.isfinite(variance)
    if bad.any():  # astroscrappy's filters need numbers everywhere: masked, then filled
        masked |= bad
        good = ~masked
        data = np.where(np.isfinite(data), data, np.float32(np.median(data[good]) if good.any() else 0))
        if variance is not None:
            variance = np.where(
                np.isfinite(variance), variance, np.float32(np.median(variance[good]) if good.any() else 1)
            )
    pad = min(PAD, shape[0] - 1, shape[1] - 1)
    crmask, _ = astroscrappy.detect_cosmics(
        np.pad(data, pad, mode="reflect"),
        inmask=np.pad(masked, pad, mode="reflect"),
        invar=None if variance is None else np.pad(variance, pad, mode="reflect"),
        sigclip=settings.sigclip,
        sigfrac=settings.sigfrac,
        objlim=settings.objlim,
        gain=gain,
        readnoise=read_noise,
        satlevel=np.inf if saturation is None else saturation * gain,
        niter=settings.niter,
        sepmed=settings.sepmed,
        cleantype=settings.cleantype,
        fsmode=settings.fsmode,
        psfmodel=settings.psfmodel,
        psffwhm=settings.psffwhm,
        psfsize=settings.psfsize,
        psfbeta=settings.psfbeta,
        verbose=False,
    )
    crmask = np.ascontiguousarray(crmask[pad : pad + shape[0], pad : pad + shape[1]])
    crmask &= ~masked
    noise = (
        np.asarray(uncert)
        if uncert is not None
        else np.sqrt(np.maximum(data, 0) / np.float32(gain) + np.float32(read_noise / gain) ** 2)
    )
    dropped = _screen(crmask, data, noise, mask, settings)
    grown = _grow_significant(crmask, data, noise, mask, settings) if settings.grow_z > 0 else 0

    out_mask = mask if inplace else np.array(mask, copy=True)
    out_image, out_uncert = image, uncert
    index = np.flatnonzero(crmask)
    replaced = unfilled = 0
    if settings.replace:
        if not inplace:
            out_image = np.array(image, copy=True)
            out_uncert = None if uncert is None else np.array(uncert, copy=True)
        replaced, unfilled = replace_pixels(
            out_image,
            out_uncert,
            out_mask,
            index,
            settings.replace_radius,
            settings.masked_bits | COSMIC,
            unusable_pixels=index,
        )
    out_mask.reshape(-1)[index] |= np.uint8(COSMIC)
    return CosmicResult(crmask, out_image, out_uncert, out_mask, int(index.size), dropped, grown, replaced, unfilled)
