"""Cosmetic correction of a calibrated light: flagged pixels replaced by a local median.

``correct_cosmetic(image, uncert, mask, settings=None, inplace=False) -> CosmeticResult``
with ``image`` a calibrated light (float, ADU, [y, x]), ``uncert`` its UNCERT (1 sigma,
ADU) or None, ``mask`` its MASK (uint8 bits, ``ccdcal.products``; only read). Returns
the corrected image and UNCERT (copies, or the inputs themselves with ``inplace``) and
how many pixels were ``replaced`` and left ``unfilled``.

What it does
------------
Every pixel whose MASK has one of ``settings.bits`` (default ``BADPIX``: the hot pixels
of the master dark and the dead / non-positive pixels of the master flat) gets the
*median of the usable pixels* of the (2 r + 1) x (2 r + 1) box centred on it (r =
``settings.radius``, default 1: its 8 neighbours), as Siril's and PixInsight WBPP's
cosmetic correction do. A neighbour is *usable* when it is inside the frame, its value
and UNCERT are finite, and its MASK has none of ``settings.bits | settings.exclude_bits``
(default exclude: BADPIX, SATURATED, NONFINITE, COSMIC: values known to be wrong;
WEAKFLAT pixels are usable, their values are right, only noisier). Medians are taken
over the *original* values: a replaced pixel never feeds another's median, so the result
does not depend on the order of the pixels. With an even count the median is the mean of
the two middle values (numpy's convention).

* Image (ADU, float32): the local median. It is exact on a smooth image: a plane
  a + b x + c y gives back its value at an isolated flagged pixel (8 neighbours symmetric
  about the centre).
* UNCERT (1 sigma, ADU): the standard error of that median as an estimate of the pixel's
  signal on a smooth image, ``sqrt(pi / 2) * s / sqrt(n)`` (1.2533 s / sqrt n), with
  ``n`` the usable neighbours and ``s`` the median of their UNCERT. It is smaller than a
  measured pixel's (0.44 s for n = 8) and correlated with the neighbours it came from;
  it does not cover structure finer than the box (a star's core). The pixel keeps its
  MASK bit, so a stacker that honours MASK leaves it out, and one that weights by
  1 / UNCERT^2 without looking at MASK counts it as what it is, an average of n pixels.
* MASK: unchanged. The pixel stays flagged (its bit tells that the value is a stand-in);
  no bit is added. The bits describe the measurement: a NONFINITE pixel replaced (when
  ``bits`` asks for it) keeps NONFINITE although its value is now finite.
* No usable neighbour (a cluster of flagged pixels larger than the box: a pixel more
  than r pixels inside it, or a box that is all flagged, off the frame or not finite):
  the pixel is left as it is, value and UNCERT, and counted in ``unfilled``. A bad
  column (1 pixel wide) is filled from its two sides; a 7 x 7 dead block with r = 1 gets
  its outer ring filled and its inner 5 x 5 left. Use a larger ``radius`` for larger
  clusters.

Cost: only the flagged pixels and their boxes are read (a full-frame pass finds them):
~30 ms per 4096^2 light with 0.1 % flagged pixels, in place (benchmarks/cosmic_cost.py;
about what ``Calibration.apply`` takes).
Bayer (CFA) frames (``cfa`` given): the box's pixels are two apart, all of the flagged
pixel's own colour (Siril's and WBPP's CFA cosmetic correction). In a pipeline, run it after
``ccdcal.cosmic`` (whose COSMIC pixels are then left out of the medians).

Settings (a mapping, e.g. a config section, read by ``CosmeticSettings.from_dict``)::

    bits: 1            # MASK bits of the pixels replaced (int, 1..255); 1 = BADPIX
    radius: 1          # box half-size r, pixels (1..5): 3x3 box
    exclude_bits: 27   # MASK bits that make a neighbour unusable (0..255);
                       # 27 = BADPIX | SATURATED | NONFINITE | COSMIC
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bottleneck as bn
import numpy as np

from .products import BADPIX, COSMIC, NONFINITE, SATURATED
from .specs import checked_int, spec_from_mapping

if TYPE_CHECKING:
    from .cfa import CfaLayout

#: Standard error of a median of n normal values: sqrt(pi / 2) sigma / sqrt(n).
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)

#: MASK bits of neighbours whose values are not used by default (known to be wrong).
UNUSABLE_BITS = BADPIX | SATURATED | NONFINITE | COSMIC

MAX_RADIUS = 5


@dataclass(frozen=True)
class CosmeticSettings:
    """What ``correct_cosmetic`` replaces and how (see the module docstring)."""

    bits: int = BADPIX
    radius: int = 1
    exclude_bits: int = UNUSABLE_BITS

    def __post_init__(self):
        object.__setattr__(self, "bits", checked_int("cosmetic", "bits", self.bits, 1, 255))
        object.__setattr__(self, "radius", checked_int("cosmetic", "radius", self.radius, 1, MAX_RADIUS))
        object.__setattr__(self, "exclude_bits", checked_int("cosmetic", "exclude_bits", self.exclude_bits, 0, 255))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CosmeticSettings:
        """Settings from a mapping (missing keys: the defaults); ValueError naming the key
        and the value for an unknown key or a value out of range."""
        return spec_from_mapping(cls, values, "cosmetic")


@dataclass(frozen=True)
class CosmeticResult:
    """``image`` and ``uncert`` corrected (the inputs themselves with ``inplace``);
    ``replaced``: pixels given a local median; ``unfilled``: flagged pixels left as they
    were (no usable neighbour)."""

    image: np.ndarray
    uncert: np.ndarray | None
    replaced: int
    unfilled: int


def box_offsets(radius: int, pitch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the (2 r + 1)^2 - 1 pixels around a centre, ``pitch`` pixels apart
    (2 on a Bayer frame: the nearest pixels of the centre's own colour)."""
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    keep = (dy != 0) | (dx != 0)
    return (dy[keep] * pitch).astype(np.intp), (dx[keep] * pitch).astype(np.intp)


def local_medians(
    image: np.ndarray,
    uncert: np.ndarray | None,
    flat_index: np.ndarray,
    usable_neighbour: np.ndarray | Any,
    radius: int,
    block: int = 65536,
    pitch: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """For the pixels ``flat_index`` (indices into the raveled 2-D ``image``): the median of
    the usable pixels in their box, the UNCERT of that median (see the module docstring;
    None without ``uncert``) and how many were used (0: median NaN).

    ``usable_neighbour(values, uncert_values, flat_indices) -> bool array``: which
    gathered pixels may be used (inside the frame is checked here). Float64 arithmetic,
    ``block`` pixels at a time (bounded memory for any number of pixels); ``pitch``: the
    box's pixels are this far apart (``box_offsets``)."""
    ny, nx = image.shape
    dy, dx = box_offsets(radius, pitch)
    flat_image = image.reshape(-1)
    flat_uncert = uncert.reshape(-1) if uncert is not None else None
    medians = np.empty(flat_index.size)
    sigmas = np.empty(flat_index.size) if uncert is not None else None
    counts = np.empty(flat_index.size, dtype=np.intp)
    for start in range(0, flat_index.size, block):
        index = flat_index[start : start + block]
        y, x = np.divmod(index, nx)
        yy = y[:, None] + dy[None, :]
        xx = x[:, None] + dx[None, :]
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        near = np.where(inside, yy * nx + xx, 0)
        values = flat_image[near].astype(np.float64)
        sigma_values = flat_uncert[near].astype(np.float64) if flat_uncert is not None else None
        good = inside & np.isfinite(values) & usable_neighbour(values, sigma_values, near)
        if sigma_values is not None:
            good &= np.isfinite(sigma_values)
        values[~good] = np.nan
        n = good.sum(axis=1)
        median = np.full(index.size, np.nan)
        some = n > 0
        median[some] = bn.nanmedian(values[some], axis=1)
        medians[start : start + index.size] = median
        counts[start : start + index.size] = n
        if sigmas is not None:
            sigma_values[~good] = np.nan
            sigma = np.full(index.size, np.nan)
            sigma[some] = MEDIAN_EFFICIENCY * bn.nanmedian(sigma_values[some], axis=1) / np.sqrt(n[some])
            sigmas[start : start + index.size] = sigma
    return medians, sigmas, counts


def replace_pixels(
    image: np.ndarray,
    uncert: np.ndarray | None,
    mask: np.ndarray,
    flat_index: np.ndarray,
    radius: int,
    unusable_bits: int,
    unusable_pixels: np.ndarray | None = None,
    pitch: int = 1,
) -> tuple[int, int]:
    """Replace the pixels ``flat_index`` of ``image`` (and ``uncert``) in place by their
    local medians (module docstring), neighbours with any of ``unusable_bits`` in ``mask``
    or in ``unusable_pixels`` (a sorted array of raveled indices, e.g. the cosmic-ray
    pixels, which carry no MASK bit yet) left out; ``pitch``: 2 on a Bayer frame (the box
    holds the pixels of the centre's colour). Returns (replaced, unfilled)."""
    flat_mask = mask.reshape(-1)

    def usable(values, sigma_values, near):
        ok = (flat_mask[near] & np.uint8(unusable_bits)) == 0
        if unusable_pixels is not None and unusable_pixels.size:
            where = np.searchsorted(unusable_pixels, near)
            where[where == unusable_pixels.size] = 0
            ok &= unusable_pixels[where] != near
        return ok

    medians, sigmas, counts = local_medians(image, uncert, flat_index, usable, radius, pitch=pitch)
    filled = counts > 0
    target = flat_index[filled]
    image.reshape(-1)[target] = medians[filled]
    if uncert is not None:
        uncert.reshape(-1)[target] = sigmas[filled]
    return int(filled.sum()), int((~filled).sum())


def flagged_pixels(mask: np.ndarray, bits: int) -> np.ndarray:
    """Raveled indices (sorted) of the pixels with any of ``bits`` in ``mask``."""
    return np.flatnonzero(np.bitwise_and(mask, np.uint8(bits)).reshape(-1))


def correct_cosmetic(
    image: np.ndarray,
    uncert: np.ndarray | None,
    mask: np.ndarray,
    settings: CosmeticSettings | Mapping[str, Any] | None = None,
    inplace: bool = False,
    cfa: CfaLayout | None = None,
) -> CosmeticResult:
    """Replace the pixels flagged with ``settings.bits`` by the median of the usable
    pixels around them (the module docstring has the rules, the UNCERT given to them and
    what happens where there is none). ``image`` (ADU, float) and ``uncert`` (1 sigma,
    ADU, or None) are copied first unless ``inplace``; ``mask`` is only read. ``cfa``: the
    Bayer layout of a colour frame (``ccdcal.cfa``): the box then holds the pixels of the
    centre's own colour, two pixels apart (the 3 x 3 box spans 5 x 5 pixels)."""
    if not isinstance(settings, CosmeticSettings):
        settings = CosmeticSettings.from_dict(settings)
    image = np.asarray(image)
    if image.ndim != 2 or np.shape(mask) != image.shape or (uncert is not None and np.shape(uncert) != image.shape):
        raise ValueError(
            f"image, uncert and mask must be 2-D planes of one shape, not {image.shape}, "
            f"{None if uncert is None else np.shape(uncert)}, {np.shape(mask)}"
        )
    if not inplace:
        image = image.copy()
        uncert = None if uncert is None else np.array(uncert, copy=True)
    elif not (image.flags.c_contiguous and (uncert is None or uncert.flags.c_contiguous)):
        raise ValueError("inplace needs C-contiguous image and uncert")
    index = flagged_pixels(mask, settings.bits)
    replaced, unfilled = replace_pixels(
        image, uncert, mask, index, settings.radius, settings.bits | settings.exclude_bits, pitch=2 if cfa else 1
    )
    return CosmeticResult(image, uncert, replaced, unfilled)
