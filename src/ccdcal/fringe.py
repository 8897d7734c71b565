"""Fringes: the interference pattern night-sky emission lines make in a thinned CCD.

In red bands (i, z) the sky's emission lines interfere in the CCD's thin silicon: a
pattern of arcs and waves fixed on the detector, whose strength follows the sky's line
emission, not the flat's lamp, so flat-fielding cannot remove it. Survey pipelines (LSST
ip_isr, DRAGONS for GMOS) build a *fringe frame* from many science frames of the band and
subtract it from each light, scaled by an amplitude fitted on that light. This module is
that science; it knows nothing of the workflow.

Conventions: images are calibrated lights (bias, dark and flat done), ADU, numpy [y, x];
UNCERT is 1 sigma in ADU; MASK is ccdcal's uint8 bits (non-zero: not used here).

Building (``build_fringe_frame``), from N calibrated lights of one camera, setup and band:

1. each light's sky: a plane ``B = c0 + c1 x + c2 y`` fitted (iteratively clipped) to its
   good pixels, and its level ``S`` (the plane's value at the centre). A plane, not the
   local background mesh: a mesh follows the fringes and would take them away;
2. its sources: pixels more than ``source_sigma`` times the robust rms (1.4826 MAD)
   above the mean of the 15 x 15 box around them (which follows the fringes), or whose
   3 x 3 mean is (a star's faint wings), grown by ``grow`` pixels; with the masked
   pixels, left out;
3. its normalized residual ``R = (image - B) / S`` (dimensionless) and that residual's
   noise ``UNCERT / S``;
4. per pixel, over the frames that saw it: values further than ``clip_sigma`` of their own
   noise from the frames' median are rejected (cosmic rays, satellites, faint stars the
   source mask missed), the rest averaged, weighted by 1 / noise^2: the fringe frame
   ``F``, its UNCERT ``1 / sqrt(sum of weights)`` and the count of frames used;
5. its UNCERT raised to its measured pixel-to-pixel scatter when that is larger
   (NOISEFAC): the lights share their masters' noise (one master dark for all), which
   does not average down with N as UNCERT, from independent lights, says;
6. pixels no frame saw (a star at the same place in every frame of an undithered night),
   and ``grow`` pixels around them (where the star's wings may be left), are filled from
   their neighbours (a normalized convolution: a Gaussian of ``fill_sigma`` pixels over
   the pixels that have a value) and flagged FRINGEFILL in its MASK, their UNCERT that of
   the neighbours' mean (which is wrong by the fringe structure under the star: the flag
   says so);
7. smoothed by a Gaussian of ``smooth_sigma`` pixels (its noise shrinks, fringes tens of
   pixels wide stay), its UNCERT with it, and made zero-median (a fringe pattern carries
   no sky level).

Removing (``remove_fringes``): the light's plane ``B`` and sources as in 1-2; the amplitude
``a`` (ADU) minimizing ``sum w (image - B - a F)^2`` over blocks of ``fit_bin`` pixels of
its good background (w = 1 / UNCERT^2; ``a / S`` is the light's fringe strength relative
to the frames' average; ``fit_amplitude``);
then ``image -= a F`` and ``UNCERT^2 += a^2 UNCERT_F^2``: the fringe frame's own noise,
which N frames make N times smaller than one frame's relative variance, and its
smoothing (``smooth_sigma``) several times smaller again.

Measuring (``fringe_statistic``): the robust scatter (1.4826 MAD) of the light's
source-masked residual from its plane, smoothed by a ``smoothing`` x ``smoothing`` box
(31 px: the pixel noise averaged away, the fringes kept), over its sky level: the fraction
of the sky the fringes make, before and after.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .specs import checked_float, checked_int, spec_from_mapping

#: MASK bit of fringe-frame pixels no frame saw, filled from their neighbours.
FRINGEFILL = 32
#: Side (px) of the box sources are found against (``measure_sky``).
SOURCE_BOX = 15
#: The amplitude fit (``fit_amplitude``): blocks further than this many sigma (their
#: noise, or the blocks' robust spread when larger) from the model are left out, and the
#: fit done again, at most this many times.
FIT_CLIP, FIT_ITERATIONS = 4.0, 5


@dataclass(frozen=True)
class FringeSettings:
    """How fringe frames are built and fitted (the profile's ``fringe`` section, units in
    the module docstring)."""

    source_sigma: float = 3.0  # sources: above the plane by this many robust rms
    grow: int = 3  # px added around each source
    clip_sigma: float = 4.0  # combine: a frame further than this many of its sigma from the median is rejected
    fill_sigma: float = 4.0  # px: the Gaussian that fills pixels no frame saw
    smooth_sigma: float = 1.0  # px: the Gaussian the frame is smoothed by (its noise, not its fringes)
    fit_bin: int = 16  # px: the amplitude is fitted on blocks of this side (the noise averaged away)
    smoothing: int = 31  # px: box of the fringe statistic
    min_frames: int = 3  # fewest lights a fringe frame is built from

    def __post_init__(self) -> None:
        checked_float("fringe", "source_sigma", self.source_sigma, 0.0, strict=True)
        checked_int("fringe", "grow", self.grow, 0, 50)
        checked_float("fringe", "clip_sigma", self.clip_sigma, 0.0, strict=True)
        checked_float("fringe", "fill_sigma", self.fill_sigma, 0.0, strict=True)
        checked_float("fringe", "smooth_sigma", self.smooth_sigma, 0.0)
        checked_int("fringe", "fit_bin", self.fit_bin, 1, 256)
        checked_int("fringe", "smoothing", self.smoothing, 1, 1001)
        checked_int("fringe", "min_frames", self.min_frames, 1)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> FringeSettings:
        """From the profile's ``fringe`` section (its ``filters``, which say where the step
        runs, are not a setting of the science); an unknown key is an error naming it."""
        return spec_from_mapping(cls, {k: v for k, v in (values or {}).items() if k != "filters"}, "fringe")


@dataclass
class Sky:
    """A light's sky: the plane's coefficients (ADU; x, y 0-based columns and rows), its
    level at the centre ``level`` (ADU), the robust rms about it (ADU) and the pixels
    used (good, not sources)."""

    coefficients: tuple[float, float, float]
    level: float
    rms: float
    background: np.ndarray  # bool [y, x]: the pixels the plane and fits use

    def plane(self, shape: tuple[int, int], rows: slice | None = None) -> np.ndarray:
        """The plane (float32) over ``rows`` (all by default) of an image of ``shape``."""
        c0, c1, c2 = self.coefficients
        y = np.arange(shape[0], dtype=np.float32)[rows if rows is not None else slice(None)]
        x = np.arange(shape[1], dtype=np.float32)
        return np.float32(c0) + np.float32(c1) * x[None, :] + np.float32(c2) * y[:, None]


def _robust_rms(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def measure_sky(image: np.ndarray, mask: np.ndarray | None, settings: FringeSettings) -> Sky:
    """The light's sky plane, level, rms and background pixels (module docstring, 1-2):
    fitted on every 4th pixel of every 4th row, clipped at 3 rms three times; then the
    sources above ``source_sigma`` rms, grown by ``grow``. ValueError when too few good
    pixels are left (a frame full of masked pixels)."""
    from scipy.ndimage import binary_dilation

    image = np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    good = np.isfinite(image)
    if mask is not None:
        good &= np.asarray(mask) == 0
    step = max(1, min(4, min(ny, nx) // 64))
    yy, xx = np.mgrid[0:ny:step, 0:nx:step]
    values = image[::step, ::step]
    use = good[::step, ::step].copy()
    if use.sum() < 100:
        raise ValueError(f"too few good pixels ({int(use.sum())} sampled) to measure the sky")
    design = np.stack([np.ones(values.shape, np.float64), xx, yy], axis=-1)
    coefficients = np.zeros(3)
    rms = float("nan")
    for _ in range(4):
        coefficients, *_ = np.linalg.lstsq(design[use], values[use].astype(np.float64), rcond=None)
        residual = values - design @ coefficients
        rms = _robust_rms(residual[use])
        centre = np.median(residual[use])
        keep = use & (np.abs(residual - centre) < 3 * rms)
        if keep.sum() < 100:
            break
        use = keep
    sky = Sky((float(coefficients[0]), float(coefficients[1]), float(coefficients[2])), 0.0, rms, good)
    sky.level = float(coefficients[0] + coefficients[1] * (nx - 1) / 2 + coefficients[2] * (ny - 1) / 2)
    from scipy.ndimage import uniform_filter

    # sources against what is around them: the mean of a 15-pixel box (it follows fringes
    # tens of pixels wide, whose crests would pass for faint sources against the plane
    # alone) of the pixels that are not bright sources (twice the limit above the plane,
    # grown: a star's own light would raise the box's mean and hide its wings)
    residual = np.where(good, image - sky.plane(image.shape), 0.0).astype(np.float32)
    limit = np.float32(settings.source_sigma * rms)
    with np.errstate(invalid="ignore"):
        bright = good & (residual > 2 * limit)
    around = good & ~_grown(bright, 2 * settings.grow + 2)
    weight = uniform_filter(around.astype(np.float32), SOURCE_BOX, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        local_sky = uniform_filter(np.where(around, residual, 0.0), SOURCE_BOX, mode="nearest") / weight
    residual -= np.where(weight > 0.05, local_sky, 0.0).astype(np.float32)
    limit = np.float32(settings.source_sigma * _robust_rms(residual[around][::7]))
    with np.errstate(invalid="ignore"):
        # a pixel above the limit, or the mean of its 3 x 3 above a third of it (the same
        # significance: a star's faint wings)
        local = uniform_filter(np.where(good, residual, 0.0), 3, mode="nearest")
        sources = bright | (good & ((residual > limit) | (local > limit / np.float32(3))))
    if settings.grow and sources.any():
        radius = settings.grow
        disk = np.add.outer(np.arange(-radius, radius + 1) ** 2, np.arange(-radius, radius + 1) ** 2) <= radius**2
        sources = binary_dilation(sources, structure=disk)
    sky.background = good & ~sources
    return sky


@dataclass
class FringeFrame:
    """A fringe frame: ``data`` (dimensionless, fraction of the sky, zero median),
    ``uncert`` (1 sigma, same unit), ``mask`` (FRINGEFILL where no frame saw the pixel),
    ``count`` (frames used per pixel, uint16), header ``cards`` and each input's ``skies``
    (ADU)."""

    data: np.ndarray
    uncert: np.ndarray
    mask: np.ndarray
    count: np.ndarray
    cards: dict[str, tuple[Any, str]] = field(default_factory=dict)
    skies: list[float] = field(default_factory=list)


def build_fringe_frame(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    settings: FringeSettings | Mapping[str, Any] | None = None,
    workdir: str | os.PathLike | None = None,
    block_rows: int = 256,
) -> FringeFrame:
    """The fringe frame of calibrated lights ``frames`` ((image, UNCERT, MASK) each, one
    at a time: ADU, 1 sigma ADU, uint8 bits), as the module docstring builds it. Each
    light's normalized residual and noise go to a temporary file in ``workdir`` (default:
    the system's), so the memory holds one light and ``block_rows`` rows of the stack.
    ValueError when fewer than ``settings.min_frames`` lights are given or usable."""
    if not isinstance(settings, FringeSettings):
        settings = FringeSettings.from_dict(settings)
    with tempfile.TemporaryDirectory(prefix="ccdcal-fringe-", dir=workdir) as scratch:
        residuals, noises, skies, shape = [], [], [], None
        for index, (image, uncert, mask) in enumerate(frames):
            image = np.asarray(image, dtype=np.float32)
            if shape is None:
                shape = image.shape
            elif image.shape != shape:
                raise ValueError(f"light {index + 1}: shape {image.shape} differs from the first's {shape}")
            sky = measure_sky(image, mask, settings)
            if not (math.isfinite(sky.level) and sky.level > 0):
                raise ValueError(f"light {index + 1}: sky level {sky.level:.4g} ADU is not positive")
            scale = np.float32(1.0 / sky.level)
            residual = np.lib.format.open_memmap(Path(scratch) / f"r{index}.npy", "w+", np.float32, shape)
            noise = np.lib.format.open_memmap(Path(scratch) / f"s{index}.npy", "w+", np.float32, shape)
            for start in range(0, shape[0], block_rows):
                rows = slice(start, min(start + block_rows, shape[0]))
                values = (image[rows] - sky.plane(shape, rows)) * scale
                values[~sky.background[rows]] = np.nan
                residual[rows] = values
                noise[rows] = np.asarray(uncert[rows], dtype=np.float32) * scale
            residual.flush()
            noise.flush()
            residuals.append(residual)
            noises.append(noise)
            skies.append(sky.level)
        if len(residuals) < settings.min_frames:
            raise ValueError(f"{len(residuals)} lights: a fringe frame needs at least {settings.min_frames}")
        data, uncert, count = _combine(residuals, noises, shape, settings.clip_sigma, block_rows)
        del residuals, noises
    unseen = count == 0
    # the lights share their masters' noise (one master dark for all): the frame's
    # pixel-to-pixel scatter is then above what its UNCERT, from independent lights,
    # says; its UNCERT is raised to the scatter measured (NOISEFAC)
    factor = max(1.0, _noise_factor(data, uncert, ~unseen))
    uncert *= np.float32(factor)
    mask = np.zeros(shape, dtype=np.uint8)
    if unseen.any():  # and their margin, where the wings of the stars that made them may be left
        refill = _grown(unseen, settings.grow)
        _fill(data, uncert, refill, settings.fill_sigma)
        mask[refill] |= FRINGEFILL
        unseen = refill
    if settings.smooth_sigma > 0:
        data, uncert = _smoothed(data, uncert, settings.smooth_sigma)
    data -= np.float32(np.nanmedian(data[~unseen]) if (~unseen).any() else 0.0)
    cards = {
        "NCOMBINE": (len(skies), "lights combined into the fringe frame"),
        "FRNGFILL": (int(unseen.sum()), "pixels no light saw (and margin), filled"),
        "FRNGRMS": (round(_robust_rms(data[~unseen]), 6), "robust rms of the fringe frame (of the sky)"),
        "FRNGNOIS": (round(float(np.median(uncert[~unseen])) if (~unseen).any() else 0.0, 6), "median UNCERT"),
        "NOISEFAC": (round(factor, 4), "UNCERT raised to the scatter: shared masters' noise"),
        "FRNGSMTH": (settings.smooth_sigma, "[px] Gaussian the frame was smoothed by"),
        "FRNGSSIG": (settings.source_sigma, "sources: above the sky plane by this x rms"),
        "FRNGGROW": (settings.grow, "px grown around each source"),
        "FRNGCLIP": (settings.clip_sigma, "combine: rejected beyond this x own sigma"),
    }
    return FringeFrame(data, uncert, mask, count, cards, skies)


def _combine(
    residuals: list[np.ndarray], noises: list[np.ndarray], shape: tuple[int, int], clip: float, block_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the frames' values within ``clip`` of their own sigma from the median,
    averaged with weights 1 / sigma^2; (mean, its 1 sigma, frames used). NaN: not seen."""
    data = np.full(shape, np.nan, dtype=np.float32)
    uncert = np.full(shape, np.nan, dtype=np.float32)
    count = np.zeros(shape, dtype=np.uint16)
    for start in range(0, shape[0], block_rows):
        rows = slice(start, min(start + block_rows, shape[0]))
        values = np.stack([r[rows] for r in residuals])
        sigma = np.stack([s[rows] for s in noises])
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a pixel no frame saw: NaN, said by count
            centre = np.nanmedian(values, axis=0) if values.shape[0] > 2 else np.nanmean(values, axis=0)
            usable = np.isfinite(values) & np.isfinite(sigma) & (sigma > 0)
            usable &= np.abs(values - centre) <= np.float32(clip) * sigma
            weight = np.where(usable, 1.0 / np.square(sigma, dtype=np.float64), 0.0)
            total = weight.sum(axis=0)
            mean = np.where(usable, values, 0.0).astype(np.float64)
            mean = (mean * weight).sum(axis=0) / total
        seen = total > 0
        data[rows] = np.where(seen, mean, np.nan)
        uncert[rows] = np.where(seen, 1.0 / np.sqrt(np.where(seen, total, 1.0)), np.nan)
        count[rows] = usable.sum(axis=0)
    return data, uncert, count


def _noise_factor(data: np.ndarray, uncert: np.ndarray, seen: np.ndarray) -> float:
    """The frame's pixel-to-pixel scatter (pixel minus its 5 x 5 median, x sqrt(25/24),
    robust) over what its UNCERT says, on the seen pixels of the central 512 x 512."""
    from scipy.ndimage import median_filter

    ny, nx = data.shape
    y0, x0 = max(0, ny // 2 - 256), max(0, nx // 2 - 256)
    rows, cols = slice(y0, y0 + 512), slice(x0, x0 + 512)
    sample, use = data[rows, cols], seen[rows, cols]
    level = float(np.nanmedian(sample[use])) if use.any() else 0.0
    smooth = median_filter(np.where(use, sample, level).astype(np.float32), size=5, mode="nearest")
    inner = use & _shrunk(use, 2)
    if inner.sum() < 100:
        return 1.0
    scatter = _robust_rms((sample - smooth)[inner]) * math.sqrt(25 / 24)
    expected = float(np.median(uncert[rows, cols][inner]))
    return scatter / expected if expected > 0 else 1.0


def _grown(region: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(region, iterations=pixels) if pixels and region.any() else region


def _shrunk(region: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(region, iterations=pixels)


def _smoothed(data: np.ndarray, uncert: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame smoothed by a Gaussian of ``sigma`` px (fringes are tens of pixels wide,
    its noise one), and its UNCERT: sqrt(sum of the kernel's squared weights) of the local
    UNCERT, as for independent pixels."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(data, sigma, mode="nearest")
    radius = int(math.ceil(4 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    reduction = float(np.sum(kernel**2))  # per axis
    variance = gaussian_filter(np.square(uncert), sigma, mode="nearest") * np.float32(reduction**2)
    return smooth.astype(np.float32), np.sqrt(variance).astype(np.float32)


def _fill(data: np.ndarray, uncert: np.ndarray, unseen: np.ndarray, sigma: float) -> None:
    """Fill the ``unseen`` pixels of ``data`` and ``uncert`` in place with the Gaussian-
    weighted mean of the seen ones around them (normalized convolution); a pixel with no
    seen pixel within reach gets 0 and the frame's median UNCERT."""
    from scipy.ndimage import gaussian_filter

    seen = (~unseen).astype(np.float32)
    values = np.where(unseen, 0.0, data).astype(np.float32)
    weight = gaussian_filter(seen, sigma, mode="nearest")
    smooth = gaussian_filter(values, sigma, mode="nearest")
    noise = gaussian_filter(np.where(unseen, 0.0, uncert).astype(np.float32), sigma, mode="nearest")
    reached = unseen & (weight > 1e-3)
    data[reached] = smooth[reached] / weight[reached]
    uncert[reached] = noise[reached] / weight[reached]
    far = unseen & ~reached
    if far.any():
        data[far] = 0.0
        uncert[far] = np.nanmedian(uncert[~unseen]) if (~unseen).any() else 0.0


@dataclass
class FringeFit:
    """What ``remove_fringes`` did: the amplitude ``amplitude`` (ADU) and its 1 sigma, the
    light's sky level (ADU), and the fringe statistic before and after (fractions of the
    sky, ``fringe_statistic``)."""

    amplitude: float
    amplitude_error: float
    sky: float
    before: float
    after: float

    @property
    def relative(self) -> float:
        """The amplitude over the sky: 1 when the light's fringes are the frames' average."""
        return self.amplitude / self.sky if self.sky else float("nan")


def fit_amplitude(
    image: np.ndarray,
    uncert: np.ndarray,
    sky: Sky,
    fringe: np.ndarray,
    fringe_uncert: np.ndarray,
    fringe_mask: np.ndarray | None = None,
    bin_size: int = 8,
) -> tuple[float, float]:
    """(a, sigma_a), ADU: weighted least squares of ``image = a F + plane`` on blocks of
    ``bin_size`` x ``bin_size`` pixels (the means of their sky pixels where the fringe
    frame has a value of its own, not FRINGEFILL; weights: pixels over mean UNCERT^2).
    On blocks, fringes tens of pixels wide stay and the noise averages away, the noise
    the light shares with the frame too (its own share, and the masters all the frame's
    lights were calibrated with), which would pull a pixel-level fit towards the frames'
    mean sky. What is left of the frame's own noise is taken out of the normal
    equations (it would shrink ``a`` by sum F^2 / (sum F^2 + sum UNCERT_F^2)). Blocks far
    off the fitted model (``FIT_CLIP``: a bright star's halo, a satellite trail) are left
    out and the fit done again."""
    use = sky.background & np.isfinite(fringe) & np.isfinite(uncert) & (np.asarray(uncert) > 0)
    use &= np.isfinite(fringe_uncert)
    if fringe_mask is not None:
        use &= (np.asarray(fringe_mask) & FRINGEFILL) == 0
    ny, nx = image.shape
    b = max(1, min(bin_size, ny // 4, nx // 4))
    by, bx = ny // b, nx // b

    def block_sums(values: np.ndarray) -> np.ndarray:
        cut = np.where(use, values, 0.0)[: by * b, : bx * b].astype(np.float64)
        return cut.reshape(by, b, bx, b).sum(axis=(1, 3))

    n = block_sums(np.ones(image.shape))
    keep = n >= max(1, b * b // 4)
    if keep.sum() < 20:
        raise ValueError(f"too few blocks of sky ({int(keep.sum())}) to fit the fringe amplitude")
    n_k = n[keep]
    d = block_sums(np.asarray(image, dtype=np.float64))[keep] / n_k
    f = block_sums(np.asarray(fringe, dtype=np.float64))[keep] / n_k
    variance = block_sums(np.square(np.asarray(uncert, dtype=np.float64)))[keep] / n_k**2
    f_var = block_sums(np.square(np.asarray(fringe_uncert, dtype=np.float64)))[keep] / n_k**2
    yy, xx = np.nonzero(keep)
    design = np.stack([f, np.ones_like(f), (xx + 0.5) * b, (yy + 0.5) * b], axis=1)
    fitted = np.ones(f.size, dtype=bool)
    for _ in range(FIT_ITERATIONS):  # blocks far off the model (a bright star's halo, a trail) left out
        w = np.where(fitted, 1.0 / variance, 0.0)
        normal = (design * w[:, None]).T @ design
        rhs = (design * w[:, None]).T @ d
        normal[0, 0] -= float(np.sum(w * f_var))
        solution = np.linalg.solve(normal, rhs)
        residual = (d - design @ solution) / np.sqrt(variance + solution[0] ** 2 * f_var)
        spread = _robust_rms(residual[fitted])
        keep_now = np.abs(residual - np.median(residual[fitted])) <= FIT_CLIP * max(spread, 1.0)
        if np.array_equal(keep_now, fitted) or keep_now.sum() < 20:
            break
        fitted = keep_now
    covariance = np.linalg.pinv(normal)
    return float(solution[0]), float(math.sqrt(max(covariance[0, 0], 0.0)))


def remove_fringes(
    image: np.ndarray,
    uncert: np.ndarray,
    mask: np.ndarray,
    fringe: np.ndarray,
    fringe_uncert: np.ndarray,
    fringe_mask: np.ndarray | None = None,
    settings: FringeSettings | Mapping[str, Any] | None = None,
) -> FringeFit:
    """Subtract ``a`` x the fringe frame from a calibrated light, in place (``image`` and
    ``uncert``: float32; ``mask`` only read), ``a`` fitted on the light (module
    docstring, ``fit_amplitude``); UNCERT gains the fringe frame's noise, a^2 x its
    UNCERT^2 (smoothed, the frame's noise shared with a light that made it is a few
    per cent of that, left out). Returns the fit and the fringe statistic before and
    after."""
    if not isinstance(settings, FringeSettings):
        settings = FringeSettings.from_dict(settings)
    if np.shape(fringe) != np.shape(image):
        raise ValueError(f"fringe frame {np.shape(fringe)} and light {np.shape(image)} differ in shape")
    sky = measure_sky(image, mask, settings)
    before = fringe_statistic(image, mask, settings, sky)
    amplitude, error = fit_amplitude(image, uncert, sky, fringe, fringe_uncert, fringe_mask, settings.fit_bin)
    a = np.float32(amplitude)
    image -= a * np.asarray(fringe, dtype=np.float32)
    variance = np.square(uncert, dtype=np.float32)
    variance += a * a * np.square(np.asarray(fringe_uncert, dtype=np.float32))
    np.sqrt(variance, out=uncert)
    after = fringe_statistic(image, mask, settings, sky)
    return FringeFit(amplitude, error, sky.level, before, after)


def fringe_statistic(
    image: np.ndarray, mask: np.ndarray | None, settings: FringeSettings | None = None, sky: Sky | None = None
) -> float:
    """The fringes' share of the sky (module docstring): robust scatter of the
    source-masked residual from the sky plane, smoothed by a ``smoothing``-pixel box
    (pixels with under half their box good, and the border, left out), over the sky level."""
    from scipy.ndimage import uniform_filter

    settings = settings or FringeSettings()
    image = np.asarray(image, dtype=np.float32)
    sky = sky or measure_sky(image, mask, settings)
    good = sky.background.astype(np.float32)
    residual = np.where(sky.background, image - sky.plane(image.shape), 0.0).astype(np.float32)
    size = settings.smoothing
    weight = uniform_filter(good, size, mode="constant")
    smooth = uniform_filter(residual, size, mode="constant")
    half = size // 2
    inner = np.zeros(image.shape, dtype=bool)
    inner[half : image.shape[0] - half, half : image.shape[1] - half] = True
    use = inner & (weight > 0.5)
    if not use.any():
        return float("nan")
    return _robust_rms(smooth[use] / weight[use]) / sky.level
