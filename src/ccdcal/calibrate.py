"""Calibrating a frame: bias and dark subtraction, flat division, uncertainty and mask.

All arithmetic is float32 in ADU. For a frame of exposure t with masters bias B, dark D
(exposure t_D, bias included) and flat F (normalized, dimensionless):

    unscaled dark (|t - t_D| within tolerance):  out = (raw - D) / F
    scaled dark (k = t / t_D):                   out = (raw - B - k (D - B)) / F
    no dark:                                     out = (raw - B) / F

``raw`` is already overscan-corrected and trimmed. Variance (ADU^2), with gain g (e-/ADU)
and read noise r (ADU):

    var_raw = r^2 + max(raw - B, 0) / g      (raw - D when there is no bias, plus
                                               ``extra_variance``: the dark current's shot
                                               noise, measured, else left out)
    var_pre = var_raw + (1 - k)^2 var_B + k^2 var_D   (var_D alone when unscaled)
    var_out = var_pre / F^2 + out^2 var_F / F^2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parallel import map_in_threads, row_blocks
from .products import BADPIX, NONFINITE, SATURATED, WEAKFLAT, Product


def _squared(values: np.ndarray) -> np.ndarray:
    return np.multiply(values, values)


@dataclass
class Subtrahend:
    """What is subtracted from a frame before the flat (ADU), and its variance (ADU^2),
    evaluated for a block of rows at a time: no full-frame array is made, so a master flat
    job with flats of many exposures holds only the masters themselves.

    ``mode``: 'unscaled' (D), 'scaled' (B + k (D - B)), or None (B, or nothing).
    """

    bias: Product | None
    dark: Product | None
    mode: str | None
    scale: float = 1.0

    def image(self, rows: slice) -> np.ndarray | None:
        if self.dark is not None and self.mode == "unscaled":
            return self.dark.data[rows]
        if self.dark is not None and self.mode == "scaled":
            k = np.float32(self.scale)
            out = self.bias.data[rows] * (np.float32(1) - k)
            out += self.dark.data[rows] * k
            return out
        return self.bias.data[rows] if self.bias is not None else None

    def variance(self, rows: slice) -> np.ndarray | None:
        """A new array: squared from the masters' UNCERT rows, so no full-frame variance
        plane is kept (a light job's memory and, on a fresh job, its page faults)."""
        if self.dark is not None and self.mode == "unscaled":
            return _squared(self.dark.uncert[rows])
        if self.dark is not None and self.mode == "scaled":
            k = np.float32(self.scale)
            out = _squared(self.bias.uncert[rows])
            out *= (np.float32(1) - k) ** 2
            dark = _squared(self.dark.uncert[rows])
            dark *= k * k
            out += dark
            return out
        return _squared(self.bias.uncert[rows]) if self.bias is not None else None

    def signal_offset(self, rows: slice) -> np.ndarray | None:
        """What to add back to (raw - image) to get raw - bias, the signal whose shot noise
        counts (dark current included); None when that is (raw - image) itself."""
        if self.dark is None or self.bias is None:
            return None
        if self.mode == "unscaled":
            return self.dark.data[rows] - self.bias.data[rows]
        return (self.dark.data[rows] - self.bias.data[rows]) * np.float32(self.scale)

    def mask(self) -> np.ndarray | None:
        """OR of the masks of the masters subtracted."""
        masters = [m for m in (self.bias if self.mode != "unscaled" else None, self.dark) if m is not None]
        if not masters:
            return None
        mask = masters[0].mask.copy()
        for master in masters[1:]:
            mask |= master.mask
        return mask

    def subtract(self, block: np.ndarray, rows: slice) -> None:
        image = self.image(rows)
        if image is not None:
            block -= image


def subtrahend(bias: Product | None, dark: Product | None, mode: str | None, scale: float | None) -> Subtrahend:
    """The bias/dark model for one exposure (see module docstring for the three cases)."""
    if dark is not None and mode == "scaled" and bias is None:
        raise ValueError("a scaled dark needs a bias")
    if dark is None:
        mode = None
    return Subtrahend(bias, dark, mode, 1.0 if scale is None else float(scale))


class Calibration:
    """What calibrating a frame with given masters needs, computed once and shared by every
    light of a group (read-only, so threads may share it): the subtrahend, 1/F,
    r^2 + var_subtrahend, and the mask bits the masters give. The flat's UNCERT is used as
    it is; its square and 1/F^2 are formed block by block in ``apply``, which costs less
    than holding (and, on first use, faulting in) two more full-frame planes.

    ``apply`` then works through a light in blocks of rows small enough to stay in the
    CPU cache, with a handful of in-place float32 passes and no full-frame temporaries.
    ``threads``: the planes are prepared that many blocks at a time.
    """

    def __init__(
        self,
        sub: Subtrahend,
        flat: Product | None,
        gain: float,
        read_noise_adu: float,
        weak_threshold: float = 0.2,
        block_rows: int = 64,
        threads: int = 1,
        extra_variance: float = 0.0,
    ):
        """``extra_variance`` (ADU^2): added to every pixel's before the flat, like the
        read noise: the dark current's shot noise of a frame whose dark is subtracted as
        is (no bias to tell the dark signal from)."""
        self.inv_gain = np.float32(1.0 / gain)
        self.read_noise2 = np.float32(read_noise_adu) ** 2 + np.float32(extra_variance)
        masters = [m for m in (sub.bias, sub.dark, flat) if m is not None]
        self.shape = masters[0].data.shape if masters else None
        self.mask = sub.mask()
        if self.shape is not None and self.mask is None:
            self.mask = np.zeros(self.shape, dtype=np.uint8)
        elif self.mask is not None:
            self.mask &= BADPIX
        empty = lambda: np.empty(self.shape, dtype=np.float32)  # noqa: E731
        scaled = sub.mode == "scaled"
        self.image = empty() if scaled else sub.image(slice(None))
        self.signal_offset = empty() if sub.signal_offset(slice(0, 0)) is not None else None
        self.var_const = empty() if sub.bias is not None or sub.dark is not None else None
        self.inv_f = empty() if flat is not None else None
        self.flat_uncert = flat.uncert if flat is not None else None

        def prepare(rows: slice) -> None:
            """Every derived plane for these rows, while their inputs are in cache."""
            if scaled:
                self.image[rows] = sub.image(rows)
            if self.signal_offset is not None:
                self.signal_offset[rows] = sub.signal_offset(rows)
            if self.var_const is not None:
                np.add(sub.variance(rows), self.read_noise2, out=self.var_const[rows])
            if flat is not None:
                f = flat.data[rows]
                inv = self.inv_f[rows]
                inv[...] = np.nan
                np.divide(np.float32(1), f, out=inv, where=f > 0)
                m = self.mask[rows]
                m |= flat.mask[rows] & (BADPIX | WEAKFLAT)
                m[~(f >= weak_threshold)] |= WEAKFLAT

        ny = self.shape[0] if self.shape is not None else 0
        map_in_threads(prepare, row_blocks(ny, block_rows), threads)
        if self.var_const is None:
            self.var_const = self.read_noise2

    def apply(
        self,
        raw: np.ndarray,
        saturated: np.ndarray | None = None,
        block_rows: int = 64,
        uncert: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrate ``raw`` (overscan-corrected, trimmed, float32 ADU; overwritten: it becomes
        the image). Returns (image, 1-sigma uncertainty, mask), see the module docstring;
        the uncertainty and mask are written into ``uncert`` (float32) and ``mask`` (uint8)
        when given (arrays of ``raw``'s shape, e.g. reused from the previous frame)."""
        data = raw
        ny = data.shape[0]
        uncert = np.empty_like(data) if uncert is None else uncert
        if mask is None:
            mask = self.mask.copy() if self.mask is not None else np.zeros(data.shape, dtype=np.uint8)
        elif self.mask is not None:
            np.copyto(mask, self.mask)
        else:
            mask.fill(0)
        scratch = np.empty((min(block_rows, ny), data.shape[1]), dtype=np.float32)
        image, offset, var_const = self.image, self.signal_offset, self.var_const
        inv_f, flat_uncert = self.inv_f, self.flat_uncert
        for rows in row_blocks(ny, block_rows):
            d, v, tmp = data[rows], uncert[rows], scratch[: rows.stop - rows.start]
            if image is not None:
                d -= image[rows]
            if offset is not None:
                np.add(d, offset[rows], out=v)
                np.maximum(v, 0, out=v)
            else:
                np.maximum(d, 0, out=v)
            v *= self.inv_gain
            v += var_const[rows] if np.ndim(var_const) else var_const
            if inv_f is not None:  # var_out = (var_pre + out^2 var_F) / F^2
                f_inv = inv_f[rows]
                d *= f_inv
                np.multiply(d, flat_uncert[rows], out=tmp)
                tmp *= tmp
                v += tmp
                np.multiply(f_inv, f_inv, out=tmp)
                v *= tmp
            np.sqrt(v, out=v)
            bad = ~np.isfinite(d)
            bad |= ~np.isfinite(v)
            mask[rows][bad] |= NONFINITE
        if saturated is not None:
            mask[saturated] |= SATURATED
        return data, uncert, mask


def calibrate_array(
    raw: np.ndarray,
    saturated: np.ndarray | None,
    sub: Subtrahend,
    flat: Product | None,
    gain: float,
    read_noise_adu: float,
    weak_threshold: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrate an overscan-corrected, trimmed frame (float32 ADU, modified in place).

    Returns (image, 1-sigma uncertainty, mask), all in ADU / MASK bits.
    """
    return Calibration(sub, flat, gain, read_noise_adu, weak_threshold).apply(raw, saturated)
