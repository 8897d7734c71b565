"""Calibrating a frame: bias and dark subtraction, flat division, uncertainty and mask.

All arithmetic is float32 in ADU. For a frame of exposure t with masters bias B, dark D
(exposure t_D, bias included) and flat F (normalized, dimensionless):

    unscaled dark (|t - t_D| within tolerance):  out = (raw - D) / F
    scaled dark (k = t / t_D):                   out = (raw - B - k (D - B)) / F
    no dark:                                     out = (raw - B) / F

``raw`` is already overscan-corrected and trimmed. Variance (ADU^2), with gain g (e-/ADU)
and read noise r (ADU):

    var_raw = r^2 + max(raw - B, 0) / g      (raw - D when there is no bias: the dark
                                               current's own shot noise is then left out)
    var_pre = var_raw + (1 - k)^2 var_B + k^2 var_D   (var_D alone when unscaled)
    var_out = var_pre / F^2 + out^2 var_F / F^2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .products import BADPIX, NONFINITE, SATURATED, WEAKFLAT, Product


@dataclass
class Subtrahend:
    """What is subtracted from a frame before the flat: an image and its variance (ADU, ADU^2)."""

    image: np.ndarray | None
    variance: np.ndarray | None
    bias: Product | None  # for the Poisson term
    mask: np.ndarray | None  # uint8 bits inherited from the masters

    def subtract(self, block: np.ndarray, rows: slice) -> None:
        if self.image is not None:
            block -= self.image[rows]


def subtrahend(bias: Product | None, dark: Product | None, mode: str | None, scale: float | None
               ) -> Subtrahend:
    """The bias/dark model for one exposure (see module docstring for the three cases)."""
    mask = None
    for master in (bias if mode != "unscaled" else None, dark):
        if master is not None:
            mask = master.mask.copy() if mask is None else mask | master.mask
    if dark is not None and mode == "unscaled":
        return Subtrahend(dark.data, dark.variance, bias, mask)
    if dark is not None and mode == "scaled":
        if bias is None:
            raise ValueError("a scaled dark needs a bias")
        k = np.float32(scale)
        image = bias.data * (np.float32(1) - k) + dark.data * k
        variance = bias.variance * (np.float32(1) - k) ** 2 + dark.variance * k * k
        return Subtrahend(image, variance, bias, mask)
    if bias is not None:
        return Subtrahend(bias.data, bias.variance, bias, mask)
    return Subtrahend(None, None, None, mask)


def calibrate_array(raw: np.ndarray, saturated: np.ndarray | None, sub: Subtrahend,
                    flat: Product | None, gain: float, read_noise_adu: float,
                    weak_threshold: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrate an overscan-corrected, trimmed frame (float32 ADU, modified in place).

    Returns (image, 1-sigma uncertainty, mask), all in ADU / MASK bits.
    """
    rows = slice(0, raw.shape[0])
    if sub.bias is not None and sub.image is not sub.bias.data:
        signal = raw - sub.bias.data
    else:
        signal = None
    sub.subtract(raw, rows)
    data = raw
    if signal is None:
        signal = data  # raw - bias, or raw - unscaled dark
    variance = np.maximum(signal, 0, dtype=np.float32)
    variance *= np.float32(1.0 / gain)
    variance += np.float32(read_noise_adu) ** 2
    if sub.variance is not None:
        variance += sub.variance
    mask = np.zeros(data.shape, dtype=np.uint8)
    if sub.mask is not None:
        mask |= sub.mask & BADPIX
    if saturated is not None:
        mask[saturated] |= SATURATED
    if flat is not None:
        f = flat.data
        with np.errstate(divide="ignore", invalid="ignore"):
            data /= f
            variance /= f * f
            variance += data * data * (flat.variance / (f * f))
        mask |= flat.mask & (BADPIX | WEAKFLAT)
        mask[~(f >= weak_threshold)] |= WEAKFLAT
        bad = ~(f > 0)
        data[bad] = np.nan
    uncert = np.sqrt(variance, out=variance)
    nonfinite = ~np.isfinite(data) | ~np.isfinite(uncert)
    mask[nonfinite] |= NONFINITE
    return data, uncert, mask
