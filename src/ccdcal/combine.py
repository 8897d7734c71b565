"""Pixel-by-pixel combination of a stack of calibration frames (bias, dark, flat).

The caller streams the frames in row blocks: it builds a stack of shape
``(n_frames, rows, nx)`` for rows ``y0:y1`` (float32, NaN = pixel to ignore), calls
:func:`combine_block` and writes the result rows. :func:`combine_frames_in_memory`
does the same for a stack that fits in memory, optionally with threads.

Algorithm summary (per output pixel, over the frames axis)
-----------------------------------------------------------
1. Non-finite values (NaN, +-inf) are missing.
2. One optional rejection (``CombineSpec.rejection``) marks values as rejected:

   ``sigma_clip``
       Iterative clipping identical to ``astropy.stats.sigma_clip(data, sigma_lower,
       sigma_upper, maxiters, cenfunc=center, stdfunc='std', axis=0)``: centre = median
       or mean of the surviving values, spread = their standard deviation (ddof=0);
       the bounds are ``c - sigma_low*s`` and ``c + sigma_high*s``; values outside are
       dropped and the bounds recomputed until nothing changes or ``maxiters`` bound
       computations were done. As in astropy, the final mask is "outside the *last*
       bounds" applied to all the pixel's values.
   ``mad_clip``
       Same, spread = 1.482602218505602 * median(|x - median(x)|) (astropy
       ``stdfunc='mad_std'``); the centre is still ``CombineSpec.center``.
   ``minmax``
       Rejects the ``n_low`` lowest and ``n_high`` highest valid values (ccdproc
       ``clip_extrema``). A pixel with ``<= n_low + n_high`` valid values loses all of
       them (as ccdproc does). Ties are broken by frame order (deterministic).
   ``winsorized_sigma``
       Winsorized sigma clipping as in Siril / PixInsight (see :func:`_clip_winsorized`).
   ``percentile``
       Siril's percentile clipping, single pass: with ``m`` the median,
       reject ``x < m - percentile_low*|m|`` and ``x > m + percentile_high*|m|``.

3. The surviving values are combined with ``median``, ``mean`` (weighted if
   ``weights``) or ``sum`` (pure sum of the surviving values, like
   ``ccdproc.Combiner.sum_combine``; it is *not* rescaled by ``n/n_used``).
   A pixel left with no value gets NaN and ``n_used = 0``.

Numerics
--------
The kernel copies small chunks of the block (about 4 MiB) into a float64, pixel-major
work array (``-0.0`` canonicalised to ``+0.0``) and computes every statistic there:
sums, means and standard deviations with bottleneck (sequential float64 loops),
medians from numpy's sort (exact middle value, or ``0.5*(a+b)``). Hence: the
clipping bounds are the ones astropy computes (float64), the results equal ccdproc's
float64 ones rounded to float32, memory use is bounded by the chunk size whatever the
block size (the caller's stack is not copied as a whole), and every output pixel goes
through exactly the same operations whatever the block/chunk/thread layout
(bit-identical results). numpy and bottleneck release the GIL in these loops, so
blocks can be combined in threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Any

import bottleneck as bn
import numpy as np

from .parallel import map_in_threads, release_thread_buffers, thread_buffer
from .specs import checked_float, checked_int, checked_name, spec_from_mapping

__all__ = [
    "METHODS",
    "REJECTIONS",
    "CENTERS",
    "CombineSpec",
    "CombineResult",
    "combine_block",
    "combine_frames_in_memory",
    "variance_factor",
    "variance_factor_table",
]

METHODS = ("median", "mean", "sum")
REJECTIONS = ("none", "sigma_clip", "mad_clip", "minmax", "winsorized_sigma", "percentile")
CENTERS = ("median", "mean")

#: MAD -> standard deviation of a Gaussian; the exact constant astropy's mad_std uses.
MAD_TO_STD = 1.482602218505602
#: Siril / PixInsight winsorized sigma clipping constants.
WINSOR_CLIP = 1.5  # winsorize at median +- 1.5 sigma
WINSOR_CORRECTION = 1.134  # std of a Gaussian winsorized at 1.5 sigma is sigma / 1.134
WINSOR_TOL = 5e-4  # relative convergence of the winsorized sigma
_WINSOR_MAX_INNER = 100  # safety cap on the inner (sigma) iterations
_WINSOR_MIN_VALUES = 3  # a winsorized pass is only run on pixels with >= 3 values

_CHUNK_VALUES = 1 << 19  # float64 values per work chunk of the general path (4 MiB)
#: The sorted fast path's chunks are sized by what their temporaries take, so that a chunk
#: takes about _FAST_CHUNK_BYTES whatever the number of frames: bytes per value (pixels x
#: frames) and per pixel, without rejection (the sorted copy), with min/max clipping (the
#: sorted copy and the frame-order one, the indices of the sort) and with sigma clipping
#: (results, first bounds, flags per pixel; its blocks and exact parts add a fixed ~25
#: MiB), measured from peak RSS (from tracemalloc for sigma clipping, whose chunks are
#: also kept from widening with few frames: a master of 8 frames peaked 20 % above one of
#: 64, tests/test_resources.py).
_FAST_CHUNK_BYTES = 48 << 20
_FAST_BYTES = {"none": (8, 40), "minmax": (30, 240), "sigma_clip": (8, 64)}
#: float32 values per block of the sigma-clip certificate (4 MiB: its rows stay in the cache)
_CERTIFY_VALUES = 1 << 20
#: relative margin of the certificate (see "fast path on sorted chunks")
_CERTIFY_MARGIN = 1e-12
#: pixels per chunk of the general path at most (its per-pixel temporaries stay small when
#: few frames make the chunk wide)
_CHUNK_PIXELS = 1 << 16
_MAX_FRAMES = int(np.iinfo(np.uint16).max)

_ALIASES = {
    "average": "mean",
    "avg": "mean",
    "sigclip": "sigma_clip",
    "sigma": "sigma_clip",
    "mad": "mad_clip",
    "clip_extrema": "minmax",
    "winsorized": "winsorized_sigma",
    "winsorised_sigma": "winsorized_sigma",
    "winsorised": "winsorized_sigma",
}


@dataclass(frozen=True)
class CombineSpec:
    """How to combine a stack. Units are those of the data (ADU, or dimensionless for flats).

    ``method``: ``"median"`` | ``"mean"`` | ``"sum"`` of the values surviving rejection.
    ``rejection``: ``"none"`` | ``"sigma_clip"`` | ``"mad_clip"`` | ``"minmax"`` |
    ``"winsorized_sigma"`` | ``"percentile"`` (see the module docstring).

    ``sigma_low`` / ``sigma_high``: clipping thresholds in units of the spread for
    sigma_clip, mad_clip and winsorized_sigma. ``maxiters``: maximum number of
    passes (bound computations) of those three; they stop earlier when a pass rejects
    nothing. ``center``: centre used by sigma_clip / mad_clip (winsorized_sigma and
    percentile always use the median). ``n_low`` / ``n_high``: minmax counts.
    ``percentile_low`` / ``percentile_high``: fractions of the median for percentile
    clipping, i.e. keep ``m*(1-percentile_low) <= x <= m*(1+percentile_high)`` for
    ``m > 0`` (``|m|`` is used for ``m < 0``; no clipping where ``m == 0``).
    """

    method: str = "median"
    rejection: str = "none"
    sigma_low: float = 3.0
    sigma_high: float = 3.0
    maxiters: int = 5
    center: str = "median"
    n_low: int = 1
    n_high: int = 1
    percentile_low: float = 0.2
    percentile_high: float = 0.1

    def __post_init__(self) -> None:
        s = object.__setattr__
        what = "combine option"
        rejection = "none" if self.rejection is None else self.rejection
        s(self, "method", checked_name(what, "method", self.method, METHODS, _ALIASES))
        s(self, "rejection", checked_name(what, "rejection", rejection, REJECTIONS, _ALIASES))
        s(self, "center", checked_name(what, "center", self.center, CENTERS, _ALIASES))
        s(self, "sigma_low", checked_float(what, "sigma_low", self.sigma_low, 0.0, strict=True))
        s(self, "sigma_high", checked_float(what, "sigma_high", self.sigma_high, 0.0, strict=True))
        s(self, "maxiters", checked_int(what, "maxiters", self.maxiters, 1))
        s(self, "n_low", checked_int(what, "n_low", self.n_low, 0))
        s(self, "n_high", checked_int(what, "n_high", self.n_high, 0))
        s(self, "percentile_low", checked_float(what, "percentile_low", self.percentile_low))
        s(self, "percentile_high", checked_float(what, "percentile_high", self.percentile_high))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CombineSpec:
        """Build from a config mapping. ``None`` values mean "default"; unknown keys
        and invalid values raise ``ValueError`` naming the key."""
        return spec_from_mapping(cls, d, "combine")


@dataclass
class CombineResult:
    """Result of combining a block.

    ``data``: float32 (rows, nx), NaN where no value survived.
    ``n_used``: uint16 (rows, nx), number of frames that contributed after rejection.
    ``variance``: float32 (rows, nx) model variance of ``data`` (only when per-frame
    variances were given), NaN where ``n_used == 0``; else ``None``.
    """

    data: np.ndarray
    n_used: np.ndarray
    variance: np.ndarray | None = None


# --------------------------------------------------------------------------- statistics
# All helpers take a float64 work array x of shape (npix, n) (values of one pixel are
# contiguous), NaN = missing/rejected, and reduce along axis 1 with bottleneck
# (sequential loops) or a row sort: per-pixel results independent of the layout.


def _col(v: np.ndarray) -> np.ndarray:
    return v[:, None]


def _count(x: np.ndarray) -> np.ndarray:
    """Number of non-NaN values per pixel."""
    return x.shape[1] - np.count_nonzero(np.isnan(x), axis=1)


def _take(s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(s, _col(idx), axis=1)[:, 0]


def _nanmedian(x: np.ndarray) -> np.ndarray:
    """Median of the non-NaN values of each row (NaN for an all-NaN row).

    Same value as ``bn.nanmedian`` and astropy's C median: the middle value, or
    ``0.5*(a+b)`` of the two middle values. Computed from a full sort (numpy's
    SIMD sort puts NaN last), which for short rows is several times faster than
    bottleneck's per-row selection. Rows must not contain -0.0 (the work arrays are
    canonicalised) so that the result is independent of the sort algorithm.
    """
    s = np.sort(x, axis=1)
    k = _count(s)
    lo = _take(s, np.maximum(k - 1, 0) // 2)
    hi = _take(s, k // 2)
    return 0.5 * (lo + hi)  # all-NaN row: NaN


def _bounds_fn(
    center: str, spread: str, sigma_low: float, sigma_high: float
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Bounds as in astropy's C sigma-clip kernel: ``cen - sigma_lower*std``,
    ``cen + sigma_upper*std`` with the mean/std/median computed in float64."""

    def bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        med = _nanmedian(x) if (center == "median" or spread == "mad") else None
        cen = med if center == "median" else bn.nanmean(x, axis=1)
        if spread == "mad":
            dev = np.abs(x - _col(med))
            std = _nanmedian(dev) * MAD_TO_STD
        else:
            std = bn.nanstd(x, axis=1)  # ddof=0, two-pass
        return cen - sigma_low * std, cen + sigma_high * std

    return bounds


def _outside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = x < _col(lo)
    out |= x > _col(hi)
    return out


def _clip_iterative(x: np.ndarray, bounds: Callable, maxiters: int) -> None:
    """astropy-compatible iterative clipping, in place (rejected -> NaN).

    Per pixel: compute the bounds from the surviving values, drop the values outside;
    stop when nothing is dropped, when everything is dropped, or after ``maxiters``
    bound computations. The final rejection is "outside the last bounds", applied to
    all the pixel's original values (this is what astropy's fast ``axis`` path does).
    Only pixels that changed are carried into the next pass (cheap later passes).
    """
    lo, hi = bounds(x)
    out = _outside(x, lo, hi)
    changed = out.any(axis=1)
    if maxiters <= 1 or not changed.any():
        x[out] = np.nan
        return
    act = np.flatnonzero(changed)
    orig = x[act]  # copy: original values of the pixels being iterated
    lo_a, hi_a = lo[act], hi[act]
    sub = orig.copy()
    sub[out[act]] = np.nan
    del out
    alive = np.flatnonzero(~bn.allnan(sub, axis=1))
    passes = 1
    while passes < maxiters and alive.size:
        s = sub[alive]
        lo_s, hi_s = bounds(s)
        lo_a[alive] = lo_s
        hi_a[alive] = hi_s
        r = _outside(s, lo_s, hi_s)
        ch = r.any(axis=1)
        s[r] = np.nan
        sub[alive] = s
        alive = alive[ch & ~bn.allnan(s, axis=1)]
        passes += 1
    orig[_outside(orig, lo_a, hi_a)] = np.nan
    x[act] = orig


def _clip_winsorized(x: np.ndarray, sigma_low: float, sigma_high: float, maxiters: int) -> None:
    """Winsorized sigma clipping (Siril / PixInsight), in place (rejected -> NaN).

    Reference: Siril documentation, "Stacking" -> "Pixel rejection" ->
    "Winsorized Sigma Clipping" (https://siril.readthedocs.io/en/stable/preprocessing/
    stacking.html), and Siril's ``src/stacking/rejection_float.c``; the method follows
    Huber's winsorization as used by PixInsight's ImageIntegration.

    For each pixel, one pass is:

    1. ``m`` = median and ``sigma`` = standard deviation (ddof=1) of the surviving values;
    2. winsorize: copy the values and repeatedly replace those below ``m - 1.5*sigma`` /
       above ``m + 1.5*sigma`` by these boundaries, then set
       ``sigma = 1.134 * std(winsorized values, ddof=1)``; repeat (each time clipping the
       already winsorized copy) until ``|sigma - sigma_prev| <= 5e-4 * sigma_prev``;
    3. reject the values with ``x < m - sigma_low*sigma`` or ``x > m + sigma_high*sigma``.

    Passes are repeated until a pass rejects nothing or after ``maxiters`` passes
    (Siril iterates until convergence). A pass is only run on pixels that still have at
    least 3 values (Siril: rejection needs more than 2 values). Computed in float64
    (Siril works in float32), so results are not bit-identical with Siril.
    """
    counts = _count(x)
    alive = np.flatnonzero(counts >= _WINSOR_MIN_VALUES)
    passes = 0
    while passes < maxiters and alive.size:
        s = x[alive]
        med = _nanmedian(s)
        sigma = bn.nanstd(s, axis=1, ddof=1)
        # Winsorization loop, carried on for the not yet converged pixels only.
        idx = np.arange(alive.size)
        w, m, sg = s.copy(), med, sigma.copy()
        for _ in range(_WINSOR_MAX_INNER):
            np.clip(w, _col(m - WINSOR_CLIP * sg), _col(m + WINSOR_CLIP * sg), out=w)
            new = WINSOR_CORRECTION * bn.nanstd(w, axis=1, ddof=1)
            sigma[idx] = new
            more = np.abs(new - sg) > sg * WINSOR_TOL
            if not more.any():
                break
            if not more.all():
                idx, w, m, new = idx[more], w[more], m[more], new[more]
            sg = new
        del w
        r = _outside(s, med - sigma_low * sigma, med + sigma_high * sigma)
        nrej = np.count_nonzero(r, axis=1)
        s[r] = np.nan
        x[alive] = s
        counts[alive] -= nrej
        alive = alive[(nrej > 0) & (counts[alive] >= _WINSOR_MIN_VALUES)]
        passes += 1


def _clip_percentile(x: np.ndarray, p_low: float, p_high: float) -> None:
    """Siril percentile clipping (single pass), in place. With ``m`` the median:
    reject ``x < m - p_low*|m|`` or ``x > m + p_high*|m|``; pixels with ``m == 0`` (the
    relative criterion is undefined) or no value are left alone."""
    med = _nanmedian(x)
    a = np.abs(med)
    r = _outside(x, med - p_low * a, med + p_high * a)
    r &= _col(a > 0)
    x[r] = np.nan


def _reject_ties(r: np.ndarray, eq: np.ndarray, need: np.ndarray, few: np.ndarray, first: bool) -> None:
    """Mark in r the first (or last) ``need`` entries of ``eq`` of each row."""
    all_eq = np.count_nonzero(eq, axis=1) <= need  # usual case: no tie across the cut
    r |= eq & _col(all_eq)
    tie = np.flatnonzero(~all_eq & ~few)
    if tie.size:
        e = eq[tie] if first else eq[tie, ::-1]
        sel = e & (np.cumsum(e, axis=1) <= _col(need[tie]))
        r[tie] |= sel if first else sel[:, ::-1]


def _clip_minmax(x: np.ndarray, n_low: int, n_high: int) -> None:
    """Reject the n_low lowest and n_high highest valid values (ccdproc clip_extrema),
    in place. Pixels with <= n_low + n_high valid values lose all of them.

    Ties are broken by frame order as a stable argsort would rank them (among equal
    values the lower frame index counts as lower), so the rejected frames, and hence
    the variance, are deterministic. Implemented with a sort of the values and
    thresholds (much faster than an argsort)."""
    if n_low == 0 and n_high == 0:
        return
    k = _count(x)
    few = k <= n_low + n_high
    s = np.sort(x, axis=1)
    r = np.zeros(x.shape, dtype=bool)
    if n_low:
        t = _take(s, np.full(k.shape, n_low - 1))  # n_low-th smallest (NaN if fewer values)
        below = x < _col(t)
        eq = x == _col(t)
        need = n_low - np.count_nonzero(below, axis=1)  # ties at t to reject, first ones
        r |= below
        _reject_ties(r, eq, need, few, first=True)
    if n_high:
        t = _take(s, np.maximum(k - n_high, 0))  # n_high-th largest
        above = x > _col(t)
        eq = x == _col(t)
        need = n_high - np.count_nonzero(above, axis=1)  # ties at t to reject, last ones
        r |= above
        _reject_ties(r, eq, need, few, first=False)
    r[few] = True
    x[r] = np.nan


def _reject(x: np.ndarray, spec: CombineSpec) -> None:
    rej = spec.rejection
    if rej == "none":
        return
    if rej in ("sigma_clip", "mad_clip"):
        spread = "std" if rej == "sigma_clip" else "mad"
        b = _bounds_fn(spec.center, spread, spec.sigma_low, spec.sigma_high)
        _clip_iterative(x, b, spec.maxiters)
    elif rej == "minmax":
        _clip_minmax(x, spec.n_low, spec.n_high)
    elif rej == "winsorized_sigma":
        _clip_winsorized(x, spec.sigma_low, spec.sigma_high, spec.maxiters)
    elif rej == "percentile":
        _clip_percentile(x, spec.percentile_low, spec.percentile_high)
    else:  # pragma: no cover - guarded by CombineSpec
        raise ValueError(f"unknown rejection {rej!r}")


# --------------------------------------------------------------------------- variance factors
# var(combined) = c * sigma^2 / n for n iid Gaussian values of variance sigma^2. For a mean
# c = 1; for a median c comes from the order statistics of the normal distribution; for a
# combine with rejection c is measured by Monte Carlo through combine_block itself. Both
# are computed on first use for each n and memoised in-process: an integral takes ~1-5 ms
# (all of n <= 1000 would take ~3 s), a Monte Carlo 10-250 ms, and no generated table has
# to be kept in step with the code.

#: Up to this n the median's factor is integrated from the order statistics' densities;
#: beyond, the expansion pi/2 + a/n (its error, ~4.6/n^2, is below 5e-6 there).
MEDIAN_EXACT_MAX_N = 1000
#: Monte Carlo of a factor: relative standard error aimed at (1 % is 4 standard errors),
#: fewest and most samples (stack pixels), values per batch, and the seed of its stacks.
_MC_REL_ERROR = 0.0025
_MC_MIN_SAMPLES = 1 << 16
_MC_MAX_SAMPLES = 1 << 20
_MC_BATCH_VALUES = 1 << 22
_MC_SEED = 0x5EEDCA1


@cache
def _median_factor(n: int) -> float:
    """n * var(median of n standard normals), integrated numerically.

    Densities from David & Nagaraja, *Order Statistics* (3rd ed., 2003), sections 2.1-2.2
    (the values match Hojo's tables, Biometrika 23, 1931: var = 0.4487 for n = 3):
    odd n = 2k+1, the median is X_(k+1) with density
    n!/(k!)^2 Phi(x)^k (1-Phi(x))^k phi(x); even n = 2k, it is (X_(k) + X_(k+1))/2 with
    the joint density n!/((k-1)!)^2 Phi(x)^(k-1) (1-Phi(y))^(k-1) phi(x) phi(y), x < y.
    E[median^2] (the mean is 0) by the trapezoidal rule over x (resp. the midpoint
    m = (x+y)/2) in units of the asymptotic width sqrt(pi/(2n)), out to 12 of them
    (exponentially accurate for these smooth, fast-decaying integrands), and for even n by
    Gauss-Legendre over the half-gap d = (y-x)/2 in [0, 40 * 1.25/n] (1.25/n: the mean
    half-gap of the middle values). The total probability comes out 1 within 1e-12;
    halving the steps changes c by < 1e-12.
    """
    from scipy.special import gammaln, log_ndtr

    width = math.sqrt(math.pi / (2 * n))
    step = 0.1
    x = width * np.arange(-12.0, 12.0 + step / 2, step)
    log_phi = -0.5 * math.log(2 * math.pi)
    k = n // 2
    if n % 2:
        log_norm = gammaln(n + 1) - 2 * gammaln(k + 1)
        density = np.exp(log_norm + k * (log_ndtr(x) + log_ndtr(-x)) - 0.5 * x * x + log_phi)
        return float(n * np.sum(x * x * density) * step * width)
    nodes, weights = np.polynomial.legendre.leggauss(64)
    half_gap_max = 40 * 1.25 / n
    d = 0.5 * half_gap_max * (nodes + 1)
    lo, hi = x[:, None] - d, x[:, None] + d
    log_norm = gammaln(n + 1) - 2 * gammaln(k)
    density = 2 * np.exp(
        log_norm + (k - 1) * (log_ndtr(lo) + log_ndtr(-hi)) - 0.5 * (lo * lo + hi * hi) + 2 * log_phi
    )  # 2: Jacobian of (m, d)
    moment = np.sum((x * x)[:, None] * density * (0.5 * half_gap_max * weights))
    return float(n * moment * step * width)


def _median_factor_asymptotic(n: int) -> float:
    """pi/2 + a/n with a = pi^2/4 - pi (odd n), pi^2/4 - 3 pi/2 (even n).

    From Phi^-1(1/2 + e) = sqrt(2 pi) e + (2 pi)^(3/2) e^3/6 + O(e^5) and the moments of the
    uniform order statistics (Beta): var(U_(k+1)) = 1/(4(n+2)) for odd n, var of the mean
    of the middle two n/(4(n+1)(n+2)) for even n, E[e^4] = 3/(16 n^2) + O(n^-3); so
    n var(median) = pi/2 n/(n+2) (odd) or pi/2 n^2/((n+1)(n+2)) (even), plus pi^2/(4n),
    plus O(n^-2). Against the integral: n^2 (exact - this) = 4.58 (even) and -0.12 (odd)
    at n = 1000.
    """
    a = math.pi**2 / 4 - (math.pi if n % 2 else 1.5 * math.pi)
    return math.pi / 2 + a / n


@cache
def _monte_carlo_factor(spec: CombineSpec, n: int) -> tuple[float, float]:
    """(c, its standard error) for ``spec`` with rejection, by Monte Carlo; see
    :func:`variance_factor`."""
    n_in = n + (spec.n_low + spec.n_high if spec.rejection == "minmax" else 0)
    plain = replace(spec, rejection="none")
    c_plain = variance_factor(plain, n_in) * n / n_in  # n var(plain combine of n_in values)
    pixels = max(256, min(1 << 14, _MC_BATCH_VALUES // n_in))
    pairs: list[np.ndarray] = []
    batch = 0
    while True:
        rng = np.random.default_rng([_MC_SEED, n_in, batch])
        stack = rng.standard_normal((n_in, 1, pixels), dtype=np.float32)
        clipped = combine_block(stack, spec).data[0].astype(np.float64)
        control = combine_block(stack, plain).data[0].astype(np.float64)
        pairs.append(np.stack([clipped, control]))
        batch += 1
        samples = batch * pixels
        if samples < _MC_MIN_SAMPLES:
            continue
        clipped, control = np.concatenate(pairs, axis=1)
        # var(clipped) = var(control) + E[z]: the known part exact, z is 0 where nothing
        # was rejected (most pixels), so few samples pin the rest down
        z = n * ((clipped - clipped.mean()) ** 2 - (control - control.mean()) ** 2)
        c = c_plain + float(z.mean())
        error = float(z.std()) / math.sqrt(samples)
        if error <= _MC_REL_ERROR * c or samples >= _MC_MAX_SAMPLES:
            return c, error


def variance_factor(spec: CombineSpec, n: int) -> float:
    """c such that var(combined) = c * sigma^2 / n, for a combination of ``spec`` that uses
    ``n`` values (``CombineResult.n_used``), each iid Gaussian of variance sigma^2. c is
    dimensionless (sigma^2 is in the data's units squared: ADU^2, or none for flats) and
    1/c the combine's efficiency relative to the mean of the n values.

    - ``mean`` without rejection: 1.
    - ``median`` without rejection: from the order statistics of the normal distribution
      (:func:`_median_factor`), exact up to ``MEDIAN_EXACT_MAX_N`` and the asymptotic
      expansion beyond: 1 for n = 1 and 2, 1.3460 for 3, 1.1928 for 4, ... -> pi/2, odd n
      above and even n below (pi/2 - 0.67/n and pi/2 - 2.24/n).
    - ``sum``: 1, whatever the rejection: the caller multiplies sigma^2 by n (not divides),
      var(sum) = n * sigma^2 (as ccdproc's sum_combine; a sum is not rescaled).
    - ``percentile``: as without rejection: its bounds are fractions of the signal level,
      not of the noise, so it rejects no Gaussian value where level * percentile >> sigma
      (and no factor of (spec, n) alone could describe it otherwise).
    - any other rejection: Monte Carlo through :func:`combine_block` on seeded
      standard-normal float32 stacks (deterministic), memoised per (spec, n). The stacks
      have ``n`` frames (``n + n_low + n_high`` for minmax, which always drops those), so
      for the clipping rejections ``n`` is the count where nothing was rejected; c is
      their average over all pixels, including those where good values were clipped.
      Estimated as the exact variance of the same combine without rejection plus the mean
      excess of the squared deviations (a control variate: zero where nothing is
      rejected); with at least 65536 pixels and more until its standard error is below
      0.25 % (1 % = 4 standard errors; at most 2^20 pixels). The default 3-sigma clip
      gets 0.05-0.15 % from 65536 pixels, in ~50 ms at n = 10 and ~250 ms at n = 100.

    Weights are not modelled (an unweighted combination of equal variances).
    """
    n = checked_int("variance_factor", "n", n, 1)
    if spec.method == "sum":
        return 1.0
    if spec.rejection in ("none", "percentile"):
        if spec.method == "mean":
            return 1.0
        return _median_factor(n) if n <= MEDIAN_EXACT_MAX_N else _median_factor_asymptotic(n)
    return _monte_carlo_factor(spec, n)[0]


def variance_factor_table(spec: CombineSpec, n_used: np.ndarray) -> np.ndarray:
    """``table[v] = variance_factor(spec, v)`` for every ``v > 0`` present in ``n_used``
    (an integer array), NaN for the absent values and 0: float64, length max + 1, to be
    indexed with ``n_used``. Only the values present are computed (a Monte Carlo each)."""
    flat = np.asarray(n_used).reshape(-1)
    present = np.zeros(int(flat.max(initial=0)) + 1, dtype=bool)
    for start in range(0, flat.size, 1 << 20):  # bounded temporaries on a master's plane
        present[flat[start : start + (1 << 20)]] = True
    table = np.full(present.size, np.nan)
    for value in np.flatnonzero(present[1:]) + 1:
        table[value] = variance_factor(spec, int(value))
    return table


# --------------------------------------------------------------------------- kernel


def _check_weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"weights must have shape ({n},) (one per frame), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be finite and > 0")
    return w


def _check_variances(variances: Any, shape: tuple[int, ...]):
    """Return (per_frame_vector, full_broadcast_view); exactly one is not None."""
    if variances is None:
        return None, None
    v = np.asarray(variances)
    if v.dtype.kind not in "fiu":
        raise ValueError("variances must be a real numeric array")
    n = shape[0]
    if v.ndim == 1:
        if v.shape[0] != n:
            raise ValueError(f"1-D variances must have one value per frame ({n}), got {v.shape}")
        v = v.reshape(n, 1, 1)
    try:
        if np.broadcast_shapes(v.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"variances of shape {v.shape} do not broadcast to the stack shape {tuple(shape)}") from None
    per_frame = v.ndim < 2 or (v.shape[-1] == 1 and v.shape[-2] == 1)
    if per_frame:
        vec = np.broadcast_to(v, (n, 1, 1)).reshape(n).astype(np.float64)
        if not np.all(np.isfinite(vec)) or np.any(vec < 0):
            raise ValueError("variances must be finite and >= 0")
        return vec, None
    return None, np.broadcast_to(v, shape)


def _work_chunk(a: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """(n, rows, nx)[:, r0:r1] -> float64 C-contiguous (npix, n) copy."""
    n = a.shape[0]
    return np.ascontiguousarray(a[:, r0:r1, :].transpose(1, 2, 0), dtype=np.float64).reshape(-1, n)


def _combine_chunk(
    x: np.ndarray, spec: CombineSpec, w: np.ndarray | None, var_vec: np.ndarray | None, var_chunk: np.ndarray | None
):
    """x: float64 (npix, n) work array (modified). Returns float64 data, int n_used,
    float64 variance or None."""
    x += 0.0  # -0.0 -> +0.0, so that sorts (medians, minmax) are layout-independent
    total = bn.nansum(x)
    if not math.isfinite(total):  # +-inf present (or overflow): treat inf as missing
        x[np.isinf(x)] = np.nan
    _reject(x, spec)
    valid = ~np.isnan(x)
    n_used = np.count_nonzero(valid, axis=1)
    empty = n_used == 0

    weighted = w is not None and spec.method != "median"
    if spec.method == "median":
        data = _nanmedian(x)
    elif spec.method == "mean":
        if weighted:
            num = bn.nansum(x * w, axis=1)
            den = bn.nansum(np.where(valid, w, np.nan), axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                data = num / den
        else:
            data = bn.nanmean(x, axis=1)
    else:  # sum
        data = bn.nansum(x * w, axis=1) if weighted else bn.nansum(x, axis=1)
    data[empty] = np.nan

    variance = None
    if var_vec is not None or var_chunk is not None:
        v = var_vec if var_vec is not None else var_chunk
        if var_chunk is not None:
            bad = valid & ~(np.isfinite(var_chunk) & (var_chunk >= 0))
            if bad.any():
                raise ValueError("variances must be finite and >= 0 where frames are used")
        wv = v * (w * w) if weighted else v
        sv = bn.nansum(np.where(valid, wv, 0.0), axis=1)  # sum w_i^2 var_i over used frames
        with np.errstate(invalid="ignore", divide="ignore"):
            if spec.method == "sum":
                variance = sv
            else:
                sw = bn.nansum(np.where(valid, w, 0.0), axis=1) if weighted else n_used
                variance = sv / (np.asarray(sw, dtype=np.float64) ** 2)
                variance *= variance_factor_table(spec, n_used)[n_used]
        variance[empty] = np.nan
    return data, n_used, variance


# ------------------------------------------------------------- fast path on sorted chunks
# When a chunk has no missing value and the combination is a median or an unweighted mean
# with no rejection or min/max clipping, it is done on the float32 chunk sorted along the
# frame axis: min/max clipping keeps, per pixel, a contiguous range [lo, hi) of the sorted
# values, and the median of a range is read off directly. Means are summed in frame order
# as in the general path (bit-identical results).
#
# Sigma clipping (std spread) takes a certificate path instead (any values, NaN included):
# for most pixels the first bounds already contain every value, so nothing is rejected
# and the result is the plain combine. The first bounds are computed from the median
# (partial sorting network), mean and standard deviation as the general path computes
# them (float64, bottleneck's operations in frame order, in blocks of pixels that stay in
# the cache); a pixel is certified when its minimum and maximum lie inside them by
# _CERTIFY_MARGIN (relative to |centre| + sigma*std: far more than any float64 rounding
# difference with bottleneck). The other pixels (~7.5 % of Gaussian ones at n = 30, plus
# outliers) are clipped on their sorted values with the same statistics, and go to the
# general path itself where a value lies within the margin of a bound or is missing: every
# result is the general path's, bit for bit.


def _fast_path_applies(spec: CombineSpec, w, var_vec, var_full) -> bool:
    if w is not None or var_full is not None:
        return False
    if var_vec is not None and not np.all(var_vec == var_vec[0]):
        return False  # per-frame variances need to know which frames were used
    if spec.rejection == "sigma_clip":
        return True
    return spec.rejection in ("none", "minmax") and spec.method in ("median", "mean")


def _range_median(s: np.ndarray, lo: np.ndarray, count: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float64 median of the sorted values s[lo:lo+count] of each pixel (NaN if empty)."""
    n = s.shape[0]
    a = s[np.clip(lo + (count - 1) // 2, 0, n - 1), cols].astype(np.float64)
    b = s[np.clip(lo + count // 2, 0, n - 1), cols].astype(np.float64)
    out = 0.5 * (a + b)
    out[count == 0] = np.nan
    return out


@lru_cache(maxsize=64)
def _sorting_network(n: int, outputs: tuple[int, ...] | None = None) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sorting network for ``n`` inputs (comparators (a, b), a < b:
    a gets the smaller value). Built for the next power of two; comparators that touch the
    padding (conceptually +inf, always last) are no-ops and dropped. With ``outputs``, only
    the comparators that can reach those sorted positions are kept (e.g. the median's)."""
    size = 1
    while size < n:
        size *= 2
    comparators = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    if outputs is not None:
        needed, kept = set(outputs), []
        for a, b in reversed(comparators):
            if a in needed or b in needed:
                kept.append((a, b))
                needed.update((a, b))
        comparators = kept[::-1]
    return tuple(comparators)


def _network_sort(x: np.ndarray, outputs: tuple[int, ...] | None = None) -> list[np.ndarray]:
    """Sort the columns of ``x`` (n, npix) float32 (no NaN) with a sorting network: rows of
    element-wise min/max, several times faster than ``np.sort`` along the short frame axis.
    Returns the sorted rows (only ``outputs`` are valid when given). ``x`` is overwritten."""
    rows = list(x)
    spare = thread_buffer("network spare", rows[0].shape, x.dtype)
    for a, b in _sorting_network(x.shape[0], outputs):
        np.minimum(rows[a], rows[b], out=spare)
        np.maximum(rows[a], rows[b], out=rows[b])
        rows[a], spare = spare, rows[a]
    return rows


def _network_median(s: np.ndarray, out: np.ndarray, outputs: tuple[int, ...] = ()) -> list[np.ndarray]:
    """float64 median of each column of ``s`` (n, npix) float32 into ``out`` (the middle value
    or ``0.5*(a+b)``, as :func:`_nanmedian`) with a partial sorting network that also sorts
    ``outputs`` into place. Returns the network's rows; ``s`` is overwritten."""
    n = s.shape[0]
    k = n // 2
    rows = _network_sort(s, outputs=tuple(sorted({max(k - 1, 0), k, *outputs})))
    out[...] = rows[k]
    if n % 2 == 0:
        out += rows[k - 1]
        out *= 0.5
    return rows


def _frame_stats(x: np.ndarray, count, keep: np.ndarray | None = None, spread: bool = True):
    """Sum, mean and standard deviation (ddof=0; None unless ``spread``) over the frames of
    each column of ``x`` (n, m) float32, of the values where ``keep`` (n, m) is True (all if
    None): float64, summed in frame order (a reduction along axis 0 adds row after row)
    with the operations of bottleneck's nansum, nanmean and (two-pass) nanstd, hence the
    general path's values (adding 0.0 for a value left out changes no sum)."""
    kept = x if keep is None else np.where(keep, x, np.float32(0.0))
    total = np.add.reduce(kept, axis=0, dtype=np.float64)
    mean = total / count
    if not spread:
        return total, mean, None
    dev = np.subtract(x, mean, dtype=np.float64)
    dev *= dev
    if keep is not None:
        dev *= keep
    var = np.add.reduce(dev, axis=0)
    var /= count
    return total, mean, np.sqrt(var, out=var)


def _count_true(mask: np.ndarray) -> np.ndarray:
    """Number of True values in each column of ``mask`` (n, m), n < 65536, as int64."""
    return mask.view(np.uint8).sum(axis=0, dtype=np.uint16).astype(np.int64)


def _clip_bounds(spec: CombineSpec, centre: np.ndarray, std: np.ndarray, out: np.ndarray) -> None:
    """out (3, m) = the clipping bounds as the general path rounds them, and the margin of
    the certificates."""
    np.subtract(centre, spec.sigma_low * std, out=out[0])
    np.add(centre, spec.sigma_high * std, out=out[1])
    out[2] = _CERTIFY_MARGIN * (np.abs(centre) + max(spec.sigma_low, spec.sigma_high) * std)


def _plain_combine(spec: CombineSpec, total: np.ndarray, mean: np.ndarray, median) -> np.ndarray:
    """The combine of ``spec.method`` of the kept values, from their sum, mean and median."""
    return median if spec.method == "median" else (mean if spec.method == "mean" else total)


def _certify_block(block: np.ndarray, spec: CombineSpec, data, certified, bounds) -> None:
    """Certificate of the sigma clip on ``block`` (n, B) float32, any values: ``certified``
    (B,) is True where the general path rejects nothing, and there ``data`` (B,) float64
    gets the plain combine of all the values. ``bounds`` (3, B): the first bounds, margin."""
    n = block.shape[0]
    s = np.add(block, np.float32(0.0), out=thread_buffer("certify values", block.shape, np.float32))
    total, mean, std = _frame_stats(s, n)
    median = np.empty_like(mean)
    rows = _network_median(s, median, outputs=(0, n - 1))
    lowest, highest = rows[0], rows[n - 1]
    _clip_bounds(spec, median if spec.center == "median" else mean, std, bounds)
    lo, hi, margin = bounds
    np.greater_equal(lowest, lo + margin, out=certified)
    certified &= highest <= hi - margin
    certified |= lowest == highest  # constant: std = 0 and both bounds are the value
    certified &= np.isfinite(total)  # no NaN or inf (their sum cannot overflow float64)
    data[...] = _plain_combine(spec, total, mean, median)


def _clear_of(s: np.ndarray, cut: np.ndarray, bound: np.ndarray, margin: np.ndarray, cols: np.ndarray):
    """True where the sorted values either side of ``cut`` (the number of values of each
    column of ``s`` on the low side of ``bound``) are farther than ``margin`` from it."""
    n = s.shape[0]
    below = s[np.maximum(cut - 1, 0), cols]
    above = s[np.minimum(cut, n - 1), cols]
    return ((cut == 0) | (below < bound - margin)) & ((cut == n) | (above > bound + margin))


def _clip_exact(x: np.ndarray, spec: CombineSpec, bounds: np.ndarray):
    """sigma_clip of each column of ``x`` (n, m) float32, finite, without -0.0, whose first
    bounds and margin are ``bounds`` (3, m), as the general path does it: (float64 data,
    n_used, sure), ``sure`` False where a value lies within the margin of a bound (the
    general path must decide there).

    The values kept by every pass are a range [lo, hi) of the sorted values; a pass's centre
    is the range's median and its mean and std the frame-order statistics of the values
    in the range (:func:`_frame_stats`). Passes stop as the general path's do; the final
    mask is "outside the last bounds", over all the values (astropy)."""
    n, m = x.shape
    s = np.stack(_network_sort(x.copy()))
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, n, dtype=np.int64)
    sure = np.ones(m, dtype=bool)
    active = np.ones(m, dtype=bool)
    for passes in range(spec.maxiters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xs, ss = (x, s) if idx.size == m else (x[:, idx], s[:, idx])
        cols = np.arange(idx.size)
        first, end = lo[idx], hi[idx]
        if passes:  # the bounds of the values kept so far
            count = end - first
            keep = (xs >= ss[first, cols]) & (xs <= ss[end - 1, cols])
            _, mean, std = _frame_stats(xs, count, keep)
            centre = _range_median(ss, first, count, cols) if spec.center == "median" else mean
            b = np.empty((3, idx.size))
            _clip_bounds(spec, centre, std, b)
            bounds[:, idx] = b
        blo, bhi, margin = bounds[:, idx]
        new_lo = _count_true(ss < blo)
        new_hi = _count_true(ss <= bhi)
        sure[idx] &= _clear_of(ss, new_lo, blo, margin, cols) & _clear_of(ss, new_hi, bhi, margin, cols)
        new_lo = np.maximum(first, new_lo)
        new_hi = np.maximum(np.minimum(end, new_hi), new_lo)
        active[idx] = ((new_lo != first) | (new_hi != end)) & (new_hi > new_lo)
        lo[idx], hi[idx] = new_lo, new_hi
    blo, bhi = bounds[0], bounds[1]
    lo = _count_true(s < blo)
    count = _count_true(s <= bhi) - lo
    total, mean, _ = _frame_stats(x, count, (x >= blo) & (x <= bhi), spread=False)
    data = _plain_combine(spec, total, mean, _range_median(s, lo, count, np.arange(m)))
    data[count == 0] = np.nan
    return data, count, sure


def _sigma_clip_fast(chunk: np.ndarray, spec: CombineSpec) -> tuple[np.ndarray, np.ndarray]:
    """sigma_clip of a chunk (n, npix) float32: certified pixels from :func:`_certify_block`,
    the others from :func:`_clip_exact`, or the general path (:func:`_combine_chunk`) for
    those it is not sure of and those with missing values."""
    n, npix = chunk.shape
    data = thread_buffer("clip data", (npix,), np.float64)
    certified = thread_buffer("clip certified", (npix,), bool)
    bounds = thread_buffer("clip bounds", (3, npix), np.float64)
    count = np.full(npix, n, dtype=np.int64)
    step = max(1, _CERTIFY_VALUES // n)
    with np.errstate(invalid="ignore", over="ignore"):
        for b0 in range(0, npix, step):
            b1 = min(npix, b0 + step)
            _certify_block(chunk[:, b0:b1], spec, data[b0:b1], certified[b0:b1], bounds[:, b0:b1])
        exact = np.flatnonzero(~certified)
        for p0 in range(0, exact.size, step):
            part = exact[p0 : p0 + step]
            x = np.take(chunk, part, axis=1)
            x += np.float32(0.0)  # -0.0 -> +0.0
            finite = np.isfinite(x).all(axis=0)
            x[:, ~finite] = 0.0
            data[part], count[part], sure = _clip_exact(x, spec, bounds[:, part])
            certified[part] = sure & finite
    general = np.flatnonzero(~certified)
    step = min(_CHUNK_VALUES // n, _CHUNK_PIXELS)
    for p0 in range(0, general.size, step):
        part = general[p0 : p0 + step]
        x = np.ascontiguousarray(chunk[:, part].T, dtype=np.float64)
        data[part], count[part], _ = _combine_chunk(x, spec, None, None, None)
    return data, count


def _combine_sorted(chunk: np.ndarray, spec: CombineSpec):
    """The fast path on one chunk (n, npix) float32: (float64 data, n_used), or None when
    the chunk has missing values (sigma_clip: never None, see :func:`_sigma_clip_fast`)."""
    if spec.rejection == "sigma_clip":
        return _sigma_clip_fast(chunk, spec)
    n, npix = chunk.shape
    if not np.isfinite(chunk, out=thread_buffer("finite", chunk.shape, bool)).all():
        return None
    # a copy, with -0.0 made +0.0 as in the general path
    s = np.add(chunk, np.float32(0.0), out=thread_buffer("sorted", chunk.shape, np.float32))
    if spec.method == "median" and spec.rejection == "none":
        data = thread_buffer("median", (npix,), np.float64)
        _network_median(s, data)
        return data, np.broadcast_to(np.int64(n), (npix,))
    s = np.stack(_network_sort(s))
    cols = np.arange(npix)
    lo = np.zeros(npix, dtype=np.int64)
    hi = np.full(npix, n, dtype=np.int64)
    if spec.rejection == "minmax":
        if spec.n_low + spec.n_high >= n:
            lo[:] = hi[:] = 0
        else:
            lo[:], hi[:] = spec.n_low, n - spec.n_high
    count = hi - lo
    if spec.method == "median":
        data = _range_median(s, lo, count, cols)
    else:  # sum the survivors in frame order, as the general path does (bit-identical)
        x = chunk + np.float32(0.0)
        keep = None
        if spec.rejection == "minmax":
            keep = np.zeros(x.shape, dtype=bool)
            order = np.argsort(x, axis=0, kind="stable")
            np.put_along_axis(keep, order[lo[0] : hi[0]], True, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            total, mean, _ = _frame_stats(x, count, keep, spread=False)
        data = _plain_combine(spec, total, mean, None)
        data[count == 0] = np.nan
    return data, count


def _combine_into(
    stack: np.ndarray,
    spec: CombineSpec,
    w,
    var_vec,
    var_full,
    out_data: np.ndarray,
    out_n: np.ndarray,
    out_var: np.ndarray | None,
) -> None:
    """Combine ``stack`` (n, rows, nx) into the (rows, nx) outputs; never modifies stack."""
    n, rows, nx = stack.shape
    if rows == 0 or nx == 0:
        return
    fast = _fast_path_applies(spec, w, var_vec, var_full) and stack.dtype == np.float32
    # the fast path works on wide float32 chunks (few, long ufunc calls: the GIL is free
    # most of the time); the general path on float64 chunks of ~4 MiB
    if fast:
        per_value, per_pixel = _FAST_BYTES[spec.rejection]
        pixels = _FAST_CHUNK_BYTES // (per_value * n + per_pixel)
    else:
        pixels = min(_CHUNK_VALUES // max(1, n), _CHUNK_PIXELS)
    step = max(1, pixels // max(1, nx))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        if fast:
            done = _combine_sorted(stack[:, r0:r1].reshape(n, -1), spec)
            if done is not None:
                data, n_used = done
                out_data[r0:r1] = data.reshape(r1 - r0, nx)
                out_n[r0:r1] = n_used.reshape(r1 - r0, nx)
                if out_var is not None:
                    # after the copies: a factor's first Monte Carlo reuses the work buffers
                    factor = variance_factor_table(spec, n_used)[n_used]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        var = var_vec[0] * (n_used if spec.method == "sum" else factor / n_used)
                    var[n_used == 0] = np.nan
                    out_var[r0:r1] = var.reshape(r1 - r0, nx)
                continue
        x = _work_chunk(stack, r0, r1)
        vc = _work_chunk(var_full, r0, r1) if var_full is not None else None
        data, n_used, var = _combine_chunk(x, spec, w, var_vec, vc)
        out_data[r0:r1] = data.reshape(r1 - r0, nx)
        out_n[r0:r1] = n_used.reshape(r1 - r0, nx)
        if out_var is not None:
            out_var[r0:r1] = var.reshape(r1 - r0, nx)


def _prepare(stack: Any, spec: Any, weights: Any, variances: Any):
    if not isinstance(spec, CombineSpec):
        spec = CombineSpec.from_dict(spec)
    a = np.asarray(stack)
    if a.ndim != 3:
        raise ValueError(f"stack must have shape (n_frames, rows, nx), got {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"stack must be a real numeric array, got dtype {a.dtype}")
    n = a.shape[0]
    if n == 0:
        raise ValueError("cannot combine an empty stack (0 frames)")
    if n > _MAX_FRAMES:
        raise ValueError(f"at most {_MAX_FRAMES} frames can be combined (n_used is uint16)")
    w = _check_weights(weights, n)
    var_vec, var_full = _check_variances(variances, a.shape)
    return a, spec, w, var_vec, var_full


def combine_block(
    stack: np.ndarray, spec: CombineSpec, *, weights: np.ndarray | None = None, variances: np.ndarray | None = None
) -> CombineResult:
    """Combine a block of frames pixel by pixel.

    Parameters
    ----------
    stack
        Array (n_frames, rows, nx), normally float32; NaN (and +-inf) = missing. The
        caller gives up ownership: the function may modify it in place (the current
        implementation works on small float64 copies and leaves it untouched, but do
        not rely on that).
    spec
        A :class:`CombineSpec` (or a mapping accepted by ``CombineSpec.from_dict``).
    weights
        Optional per-frame weights, shape (n_frames,), finite and > 0. Used by
        ``mean`` (weighted mean ``sum(w x)/sum(w)`` over the used frames) and ``sum``
        (``sum(w x)``, like ccdproc); ignored by ``median``. Rejection never uses them.
    variances
        Optional per-frame variance of the input values, broadcastable to the stack:
        (n,), (n, 1, 1) or (n, rows, nx) etc. If given, ``result.variance`` is the model
        variance of the combined value over the frames used at each pixel:
        mean: ``c * sum(w_i^2 var_i) / sum(w_i)^2``, median: the same unweighted, with
        ``c = variance_factor(spec, n_used)`` (1 for a plain mean, the median's and the
        rejections' loss of efficiency on Gaussian noise); sum: ``sum(w_i^2 var_i)``.
        It does not use the scatter of the data. With a rejection, the first call for a
        given ``n_used`` runs the factor's Monte Carlo (tens to hundreds of ms).

    Returns
    -------
    CombineResult with float32 ``data``, uint16 ``n_used`` and float32 ``variance``
    (or None). Pixels with no surviving value: data NaN, n_used 0, variance NaN.
    """
    a, spec, w, var_vec, var_full = _prepare(stack, spec, weights, variances)
    _, rows, nx = a.shape
    out_data = np.empty((rows, nx), dtype=np.float32)
    out_n = np.empty((rows, nx), dtype=np.uint16)
    has_var = var_vec is not None or var_full is not None
    out_var = np.empty((rows, nx), dtype=np.float32) if has_var else None
    _combine_into(a, spec, w, var_vec, var_full, out_data, out_n, out_var)
    return CombineResult(out_data, out_n, out_var)


def combine_frames_in_memory(
    frames: Sequence[np.ndarray] | np.ndarray,
    spec: CombineSpec | Mapping,
    weights: np.ndarray | None = None,
    variances: np.ndarray | None = None,
    threads: int = 1,
    block_rows: int | None = None,
) -> CombineResult:
    """Combine a full in-memory stack (list of 2-D frames or an (n, ny, nx) array).

    The stack is split into blocks of ``block_rows`` rows (default: about 32 MiB of
    input per block) combined by :func:`combine_block`'s kernel, in a thread pool of
    ``threads`` workers. The input frames are not modified. Results are bit-identical
    whatever ``threads`` and ``block_rows``.
    """
    if isinstance(frames, np.ndarray):
        a = frames
    else:
        frames = [np.asarray(f) for f in frames]
        if not frames:
            raise ValueError("cannot combine an empty list of frames")
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"frames have different shapes: {sorted(shapes)}")
        a = np.stack(frames)
    a, spec, w, var_vec, var_full = _prepare(a, spec, weights, variances)
    n, ny, nx = a.shape
    threads = checked_int("combine_frames_in_memory", "threads", threads, 1)
    if block_rows is None:
        block_rows = max(1, (32 << 20) // max(1, n * nx * a.dtype.itemsize))
    block_rows = checked_int("combine_frames_in_memory", "block_rows", block_rows, 1)

    out_data = np.empty((ny, nx), dtype=np.float32)
    out_n = np.empty((ny, nx), dtype=np.uint16)
    has_var = var_vec is not None or var_full is not None
    out_var = np.empty((ny, nx), dtype=np.float32) if has_var else None

    def run(y0: int) -> None:
        y1 = min(ny, y0 + block_rows)
        _combine_into(
            a[:, y0:y1],
            spec,
            w,
            var_vec,
            var_full[:, y0:y1] if var_full is not None else None,
            out_data[y0:y1],
            out_n[y0:y1],
            out_var[y0:y1] if out_var is not None else None,
        )

    map_in_threads(run, range(0, ny, block_rows), threads)
    release_thread_buffers()
    return CombineResult(out_data, out_n, out_var)
