"""Local background of an image, and the three uses the workflow makes of it: star
rejection in sky flats, hot pixels in darks, dead pixels in flats.

The options are those of XParallax viu's "Background" tab (mesh size, sigma upper /
lower, sigma precision, estimator, smooth, interpolation). The cell statistics are
those of photutils' :class:`~photutils.background.Background2D` (3.0), computed here
(:func:`_cell_statistics`; the tests check them against Background2D): photutils' import
alone took 0.3 s of every dark and flat job, and its cell statistics are numpy's
``nanmedian`` on float32 copies of the whole frame, where these are bottleneck's on a row
of cells at a time, on the job's threads.

1. The image is cut into cells of about ``mesh`` x ``mesh`` pixels (see *Cells*).
   NaN / inf pixels and the caller's ``mask`` are left out.
2. In every cell the values are sigma-clipped by :class:`PrecisionSigmaClip`: centre = median,
   spread = standard deviation of the surviving values, values below ``centre - sigma_lower * spread`` or above
   ``centre + sigma_upper * spread`` are dropped, until the spread changes by less than
   ``precision`` (a fraction of itself), nothing more is clipped, or ``maxiters``
   passes were made (astropy's ``SigmaClip`` has no precision rule: it stops only when
   nothing more is clipped).
3. The cell's level is the ``estimator`` of the surviving values: mean, median or mode
   (2.5 median - 1.5 mean, as SExtractor; photutils' ``MeanBackground``,
   ``MedianBackground``, ``ModeEstimatorBackground(median_factor=2.5, mean_factor=1.5)``).
   A cell with too few good pixels (masked, non-finite or clipped: see
   ``MIN_GOOD_FRACTION``) is left out, and filled from its neighbours (inverse-distance
   weighting of the 10 nearest cells with a value, in cell coordinates, as photutils).
4. The grid of cells is median-filtered over ``smooth`` cells (1 = none), which removes
   the overestimate of a cell dominated by a bright star. This replaces photutils' own
   filter (2-D, NaN beyond the edges, see :func:`_median_filter_grid`), which pulls the
   edge cells of any gradient inwards and flattens amplifier-glow corners.
5. The grid is interpolated to every pixel. ``zoom`` (default): bicubic interpolation of
   the cell values at the cell centres (Keys' cubic convolution along rows and columns,
   see :func:`_interp_weights`), continued beyond the outer centres by quadratic
   extrapolation, so the map follows a gradient or a glow up to the edges of the frame.
   This replaces photutils' zoom interpolator (scipy ``zoom``, mode "reflect", clipped
   to the range of the grid), which is flat over the outer half cell: a glow rising to
   a corner was underestimated there by 230 ADU (500 ADU glow of 80 px scale, mesh 64;
   30 ADU here), and hundreds of its pixels were then flagged as hot. ``idw``: at each
   pixel, inverse-distance weighting (power 1) of the 10 nearest centres of cells that
   had a value (photutils' ``BkgIDWInterpolator``, deprecated in photutils 3.0); it blurs
   gradients between cell centres, is flat towards the edges, and is slow (a neighbour
   search per pixel).
6. The rms is measured by a second pass over the cells, the same way, on
   ``image - level``: the standard deviation of a cell's raw pixels includes the change
   of the background across the cell (vignetting, glow), which can be several times
   the noise and hides stars and hot pixels. It is the standard deviation of the clipped
   values (ddof 0, photutils ``StdBackgroundRMS``): 0.987 sigma for Gaussian noise clipped at
   3 sigma; the rms map (``zoom``) is clipped to the range of its grid.

Cells
-----
As in photutils 3.0, a frame that is not a whole number of cells gets a last row /
column of *partial* cells (statistics over the pixels that
exist). A sliver of a few pixels would give a noisy value, so the cell size used along
each axis (``Background.cell_shape``) is the value within ``mesh * [0.75, 1.25]``
closest to ``mesh`` that covers the axis exactly or leaves a last cell at least half
as large (``mesh`` when there is none; the whole axis when it is shorter than ``mesh``).
``zoom`` places a partial cell's value at its true centre (``idw``, as photutils, at the
centre of a full cell).

Units: the maps are in the units of the image (ADU for darks and raw flats,
dimensionless for normalised flats), float32.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bottleneck as bn
import numpy as np

from .parallel import map_in_threads, row_blocks
from .specs import bad_option, checked_float, checked_int, checked_name, spec_from_mapping

__all__ = [
    "ESTIMATORS",
    "INTERPOLATIONS",
    "BackgroundSpec",
    "Background",
    "PrecisionSigmaClip",
    "cell_shape",
    "estimate_background",
    "reject_sky_flat_stars",
    "hot_pixels",
    "dead_pixels",
]

ESTIMATORS = ("mean", "median", "mode")
INTERPOLATIONS = ("zoom", "idw")
_ALIASES = {
    "average": "mean",
    "avg": "mean",
    "spline": "zoom",
    "bicubic": "zoom",
    "inverse_distance": "idw",
    "shepard": "idw",
}

#: A cell is used when more than this fraction of the pixels of the smallest (corner)
#: cell survive masking and clipping. photutils applies one threshold, counted in pixels,
#: to every cell (``exclude_percentile``, see ``_exclude_percentile``); with the cells of
#: ``cell_shape`` a partial cell holds at least a quarter of a full one.
MIN_GOOD_FRACTION = 0.5
#: Range of cell sizes, as fractions of ``mesh``, tried to avoid slivers at the edges.
_CELL_RANGE = (0.75, 1.25)


# ----------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class BackgroundSpec:
    """Local background on a grid of cells (XParallax viu 'Background' options).

    ``mesh``: cell size in pixels (photutils ``box_size``; see the module docstring for
    frames that are not a whole number of cells). XParallax advises 4-5 times the
    diameter of the largest star; 64 or 128 usually.
    ``sigma_upper`` / ``sigma_lower``: clipping thresholds, in units of the cell's
    standard deviation, above / below its median.
    ``precision``: clipping of a cell stops when its standard deviation changes by less
    than this fraction of itself between two passes (0: only when nothing more is
    clipped, as astropy's ``SigmaClip``). ``maxiters``: at most this many passes.
    ``estimator``: ``mean`` | ``median`` | ``mode`` (2.5 median - 1.5 mean).
    ``smooth``: size of the median filter over the grid of cells (odd; 1 = none).
    ``interpolation``: ``zoom`` (bicubic spline of the grid) | ``idw``.
    """

    mesh: int = 64
    sigma_upper: float = 3.0
    sigma_lower: float = 3.0
    precision: float = 0.01
    maxiters: int = 10
    estimator: str = "median"
    smooth: int = 3
    interpolation: str = "zoom"

    def __post_init__(self) -> None:
        s = object.__setattr__
        what = "background option"
        s(self, "mesh", checked_int(what, "mesh", self.mesh, 4))
        s(self, "sigma_upper", checked_float(what, "sigma_upper", self.sigma_upper, 0.0, strict=True))
        s(self, "sigma_lower", checked_float(what, "sigma_lower", self.sigma_lower, 0.0, strict=True))
        s(self, "precision", checked_float(what, "precision", self.precision, 0.0, strict=False))
        if self.precision >= 1:
            raise bad_option(what, "precision", "must be a fraction < 1", self.precision)
        s(self, "maxiters", checked_int(what, "maxiters", self.maxiters, 1))
        s(self, "estimator", checked_name(what, "estimator", self.estimator, ESTIMATORS, _ALIASES))
        s(self, "smooth", checked_int(what, "smooth", self.smooth, 1))
        if self.smooth % 2 == 0:
            raise bad_option(what, "smooth", "must be odd (1 = no filter, 3, 5, ...)", self.smooth)
        s(self, "interpolation", checked_name(what, "interpolation", self.interpolation, INTERPOLATIONS, _ALIASES))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> BackgroundSpec:
        """Build from a config mapping. ``None`` values mean "default"; unknown keys
        and invalid values raise ``ValueError`` naming the key."""
        return spec_from_mapping(cls, d, "background")


@dataclass
class Background:
    """Result of :func:`estimate_background`.

    ``level`` / ``rms``: float32 per-pixel background and background rms maps (units of
    the image), same shape as the image; the rms is that of the pixels about ``level``
    (noise, not the background's own variation). ``level_mesh`` / ``rms_mesh``: the
    grids of cells they were interpolated from (after the ``smooth`` filter). ``cell_shape``:
    cell size used (ny, nx). ``clip_passes``: number of sigma-clipping passes made in
    each cell (one entry per cell, in no particular order).
    """

    level: np.ndarray
    rms: np.ndarray | None  # None when not asked for (``estimate_background(rms=False)``)
    level_mesh: np.ndarray | None = None
    rms_mesh: np.ndarray | None = None
    cell_shape: tuple[int, int] | None = None
    clip_passes: np.ndarray | None = None


# ----------------------------------------------------------------------------- clipping


def _run_medians(rows: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Median of each row's run ``rows[i, start[i]:end[i]]`` of values sorted ascending:
    the middle value, or the mean of the two middle values, as ``bn.nanmedian`` selects
    it (float64; NaN for an empty run)."""
    count = end - start
    last = rows.shape[1] - 1
    low = np.clip(start + (count - 1) // 2, 0, last)[:, None]
    high = np.clip(start + count // 2, 0, last)[:, None]
    with np.errstate(invalid="ignore"):
        medians = (np.take_along_axis(rows, low, axis=1)[:, 0] + np.take_along_axis(rows, high, axis=1)[:, 0]) / 2
    medians[count <= 0] = np.nan
    return medians


class PrecisionSigmaClip:
    """Sigma clipping with XParallax's "sigma precision" stopping rule. The background
    clips its cells with :meth:`bounds`' iteration; called like astropy's ``SigmaClip``
    (``clip(data, axis=..., masked=..., return_bounds=...)``) it is also the callable
    photutils' ``Background2D(sigma_clip=...)`` accepts (the tests compare the background's
    cells with Background2D given this clip, and the clip with astropy's).

    Per cell (the values along ``axis``), each pass computes the median ``c`` and the
    standard deviation ``s`` (ddof 0) of the surviving values, drops the values outside
    ``[c - sigma_lower*s, c + sigma_upper*s]`` and recomputes ``s``. The cell stops when
    ``|s_new - s| < precision * s``, when the pass clipped nothing, or after
    ``maxiters`` passes. As in astropy's ``SigmaClip`` (its fast path, the one
    photutils uses), the returned clipping is "outside the last bounds computed",
    applied to all of the cell's values; with ``precision=0`` the result is that of
    ``SigmaClip(sigma_lower, sigma_upper, maxiters, cenfunc='median', stdfunc='std')``.

    ``passes`` collects the number of passes of every cell clipped since creation
    (:meth:`reset` clears it).
    """

    def __init__(
        self,
        sigma_lower: float = 3.0,
        sigma_upper: float = 3.0,
        precision: float = 0.01,
        maxiters: int = 10,
        threads: int = 1,
    ) -> None:
        self.sigma_lower = float(sigma_lower)
        self.sigma_upper = float(sigma_upper)
        self.precision = float(precision)
        self.maxiters = int(maxiters)
        self.threads = max(1, int(threads))
        self._passes: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (
            f"PrecisionSigmaClip(sigma_lower={self.sigma_lower}, sigma_upper={self.sigma_upper}, "
            f"precision={self.precision}, maxiters={self.maxiters})"
        )

    @property
    def passes(self) -> np.ndarray:
        return np.concatenate(self._passes) if self._passes else np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        self._passes = []

    #: float64 values per work chunk (16 MiB): the cells are clipped a chunk at a time.
    CHUNK_VALUES = 1 << 21

    def bounds(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clip every row of ``cells`` (2-D; NaN / inf = masked; not modified): (lower
        bound, upper bound, passes) per row, float64 bounds. Statistics are computed
        in float64 (bottleneck's float32 reductions accumulate in float32). Chunks of
        rows are clipped on ``threads`` threads (bottleneck releases the GIL); each row's
        result does not depend on the chunking."""
        ncell, n = cells.shape
        lo = np.full(ncell, -np.inf)
        hi = np.full(ncell, np.inf)
        passes = np.zeros(ncell, dtype=np.int16)
        if ncell == 0 or n == 0:
            return lo, hi, passes
        step = max(1, self.CHUNK_VALUES // n)

        def clip(r0: int) -> None:
            rows = slice(r0, min(ncell, r0 + step))
            work = cells[rows].astype(np.float64)
            work[~np.isfinite(work)] = np.nan
            work.sort(axis=1)
            lo[rows], hi[rows], passes[rows] = self._clip_sorted_rows(work)

        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            map_in_threads(clip, range(0, ncell, step), self.threads)
        return lo, hi, passes

    def _clip_sorted_rows(self, work: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Iterate on the rows of ``work`` (float64, each sorted ascending with its NaN =
        masked values last, as ``np.sort`` leaves them; modified): (lower bound, upper
        bound, passes) per row. Sorted, the values a pass keeps are a run of each row,
        shrunk from both ends by each pass, so each median is read off at the middle of
        the run instead of selected anew; the standard deviations are bottleneck's."""
        ncell = work.shape[0]
        lo = np.full(ncell, -np.inf)
        hi = np.full(ncell, np.inf)
        passes = np.zeros(ncell, dtype=np.int16)
        start = np.zeros(ncell, dtype=np.intp)  # each row's run of kept values
        end = work.shape[1] - np.count_nonzero(np.isnan(work), axis=1)
        active = np.arange(ncell)
        std = bn.nanstd(work, axis=1)
        for _ in range(self.maxiters):
            sub = work[active] if active.size < ncell else work
            s = std[active]
            c = _run_medians(sub, start[active], end[active])
            lo[active] = c - self.sigma_lower * s
            hi[active] = c + self.sigma_upper * s
            below = sub < lo[active, None]
            above = sub > hi[active, None]
            n_below = np.count_nonzero(below, axis=1)
            n_above = np.count_nonzero(above, axis=1)
            below |= above
            sub[below] = np.nan
            start[active] += n_below
            end[active] -= n_above
            s_new = bn.nanstd(sub, axis=1)
            if active.size < ncell:
                work[active] = sub
            passes[active] += 1
            std[active] = s_new
            nclip = n_below + n_above
            done = (nclip == 0) | (np.abs(s_new - s) < self.precision * s) | ~np.isfinite(s_new)
            active = active[~done]
            if active.size == 0:
                break
        return lo, hi, passes

    def __call__(self, data, axis=None, masked: bool = True, return_bounds: bool = False, copy: bool = True):
        data = np.asanyarray(data)
        if isinstance(data, np.ma.MaskedArray):
            data = data.filled(np.nan)
            copy = False  # already a new array
        if data.dtype.kind != "f":
            data = data.astype(np.float32)
            copy = False
        if axis is None:
            axes = tuple(range(data.ndim))
        else:
            axes = tuple(a % data.ndim for a in np.atleast_1d(axis))
        keep = tuple(a for a in range(data.ndim) if a not in axes)
        moved = np.transpose(data, keep + axes)
        kept_shape = moved.shape[: len(keep)]
        cells = moved.reshape(int(np.prod(kept_shape, dtype=np.int64)), -1)
        lo, hi, passes = self.bounds(cells)
        self._passes.append(passes)
        with np.errstate(invalid="ignore"):
            clipped = ~((cells >= lo[:, None]) & (cells <= hi[:, None]))  # NaN, inf -> clipped
        mask = np.transpose(clipped.reshape(moved.shape), np.argsort(keep + axes))
        if masked:
            result = np.ma.array(data, mask=mask, copy=copy)
        else:
            result = data.copy() if copy else data
            result[mask] = np.nan
        if return_bounds:
            return result, lo.reshape(kept_shape), hi.reshape(kept_shape)
        return result


# ----------------------------------------------------------------------------- background


def _axis_cell(length: int, mesh: int) -> int:
    """Cell size along an axis of ``length`` pixels (see 'Cells' in the module docstring)."""
    if length <= mesh:
        return length
    lo = max(1, math.ceil(_CELL_RANGE[0] * mesh))
    hi = min(length, math.floor(_CELL_RANGE[1] * mesh))
    for b in sorted(range(lo, hi + 1), key=lambda b: (abs(b - mesh), b)):
        r = length % b
        if r == 0 or 2 * r >= b:
            return b
    return mesh


def cell_shape(shape: tuple[int, int], mesh: int) -> tuple[int, int]:
    """Cell size (ny, nx) :func:`estimate_background` uses for an image of ``shape``."""
    return _axis_cell(int(shape[0]), mesh), _axis_cell(int(shape[1]), mesh)


def _good_pixels_needed(shape: tuple[int, int], box: tuple[int, int]) -> float:
    """A cell is left out when it has no more good pixels than this: MIN_GOOD_FRACTION of
    the smallest (corner) cell of the grid (photutils' ``exclude_percentile`` rule, one
    threshold counted in pixels for every cell)."""
    fy = shape[0] % box[0] or box[0]
    fx = shape[1] % box[1] or box[1]
    return MIN_GOOD_FRACTION * fy * fx


#: Values of the rows of cells one task of ``_cell_statistics`` takes at most.
CELL_TASK_VALUES = 1 << 18


def _cell_statistics(
    image: np.ndarray,
    mask: np.ndarray | None,
    box: tuple[int, int],
    clip: PrecisionSigmaClip,
    estimator: str | None,
    rms: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Grids (one value per cell, float64) of the ``estimator`` ("mean", "median", "mode")
    and of the standard deviation (``rms``) of each cell's clipped values; NaN for a cell
    left out (see :func:`_good_pixels_needed`). Non-finite and masked pixels are left out
    of the statistics; the pixels beyond a partial last cell do not exist (NaN).

    The cells are worked through a row of cells at a time, the rows on ``clip.threads``
    threads; ``clip.passes`` collects every cell's number of passes. Each cell's values
    are sorted once (in the image's precision), then clipped and measured in float64.
    The clipping is "outside the last bounds computed", applied to all of the cell's
    values (as photutils' ``Background2D`` with ``sigma_clip=clip``)."""
    ny, nx = image.shape
    by, bx = box
    ncy, ncx = -(-ny // by), -(-nx // bx)
    needed = _good_pixels_needed(image.shape, box)
    level = np.full((ncy, ncx), np.nan) if estimator else None
    spread = np.full((ncy, ncx), np.nan) if rms else None
    work_dtype = np.result_type(image.dtype, np.float32)  # cells sorted in the image's precision

    # a few rows of cells per task: fewer, larger numpy calls (less time holding the GIL)
    rows_per_task = max(1, min(ncy // (4 * clip.threads), CELL_TASK_VALUES // (by * ncx * bx)))
    tasks = row_blocks(ncy, rows_per_task)
    passes: list[np.ndarray | None] = [None] * len(tasks)

    def cell_rows(task: int) -> None:
        rows = tasks[task]
        k = rows.stop - rows.start
        y0, y1 = rows.start * by, min(ny, rows.stop * by)
        padded = np.full((k * by, ncx * bx), np.nan, dtype=work_dtype)
        padded[: y1 - y0, :nx] = image[y0:y1]
        if mask is not None:
            padded[: y1 - y0, :nx][mask[y0:y1]] = np.nan
        padded[np.isinf(padded)] = np.nan
        cells = np.ascontiguousarray(padded.reshape(k, by, ncx, bx).transpose(0, 2, 1, 3)).reshape(k * ncx, -1)
        cells.sort(axis=1)  # float32 sorts twice as fast: the order is that of the float64 values
        values = cells.astype(np.float64)
        lo, hi, passes[task] = clip._clip_sorted_rows(values.copy())
        with np.errstate(invalid="ignore"):
            start = np.count_nonzero(values < lo[:, None], axis=1)
            end = np.count_nonzero(values <= hi[:, None], axis=1)
            values[~((values >= lo[:, None]) & (values <= hi[:, None]))] = np.nan
        left_out = end - start <= needed
        if estimator:
            if estimator == "median":
                value = _run_medians(values, start, end)
            elif estimator == "mean":
                value = bn.nanmean(values, axis=1)
            else:  # mode, as SExtractor
                value = 2.5 * _run_medians(values, start, end) - 1.5 * bn.nanmean(values, axis=1)
            value[left_out] = np.nan
            level[rows] = value.reshape(k, ncx)
        if rms:
            value = bn.nanstd(values, axis=1)
            value[left_out] = np.nan
            spread[rows] = value.reshape(k, ncx)

    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        map_in_threads(cell_rows, range(len(tasks)), clip.threads)
    clip._passes.extend(passes)
    grid = level if level is not None else spread
    if np.isnan(grid).all():
        raise ValueError(
            f"estimate_background: every cell of {box[0]}x{box[1]} pixels has at most "
            f"{needed:g} good (finite, unmasked, unclipped) pixels"
        )
    return level, spread


def _inverse_distance(known: np.ndarray, values: np.ndarray, wanted: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """Inverse-distance weighting (power 1) of ``values`` at the points ``known`` (n, 2)
    over the ``neighbours`` nearest of them, at the points ``wanted`` (m, 2); a wanted
    point on a known one takes its value (photutils' ``ShepardIDWInterpolator``)."""
    from scipy.spatial import cKDTree

    k = min(neighbours, len(values))
    distance, index = cKDTree(known).query(wanted, k=k, workers=-1)
    distance, index = distance.reshape(len(wanted), k), index.reshape(len(wanted), k)
    with np.errstate(divide="ignore"):
        weight = 1.0 / distance
    on_point = distance[:, 0] <= 1e-12
    weight[on_point] = 0.0
    weight[on_point, 0] = 1.0
    return (weight * values[index]).sum(axis=1) / weight.sum(axis=1)


def _fill_left_out(grid: np.ndarray) -> np.ndarray:
    """The grid with its left-out (NaN) cells filled by inverse-distance weighting of the
    10 nearest cells that have a value, in cell coordinates (as photutils does)."""
    missing = np.isnan(grid)
    if not missing.any():
        return grid
    filled = grid.copy()
    filled[missing] = _inverse_distance(np.argwhere(~missing), grid[~missing], np.argwhere(missing))
    return filled


def _idw_map(grid: np.ndarray, good: np.ndarray, shape: tuple[int, int], box: tuple[int, int]) -> np.ndarray:
    """``interpolation="idw"``: every pixel the inverse-distance weighting of the 10
    nearest cells that had a value, placed at the centres of full cells (photutils'
    ``BkgIDWInterpolator``); slow (a neighbour search per pixel)."""
    if np.ptp(grid) == 0:
        return np.full(shape, grid.flat[0], dtype=np.float32)
    centres = np.argwhere(good) * np.array(box) + (np.array(box) - 1) / 2.0
    pixels = np.indices(shape).reshape(2, -1).T
    return _inverse_distance(centres, grid[good], pixels).reshape(shape).astype(np.float32)


def _median_filter_grid(grid: np.ndarray, size) -> np.ndarray:
    """Median filter of the grid of cells over ``size`` cells: a running median along
    the rows, then one along the columns (a separable median), the grid being extended
    beyond its edges by point reflection about the edge cells (2 * edge - mirror).

    photutils' own filter is a 2-D median padded with NaN (nanmedian over the cells that
    exist): at an edge the window then only holds inner cells, which pulls the edge cells
    of any gradient towards the inside by about half a cell's change, and flattens an
    amplifier-glow corner (the corner cell becomes the median of 4 lower cells) enough
    to flag hundreds of "hot" pixels there. A 1-D running median with point reflection
    leaves any sequence that is monotonic over the window as it is, so gradients and
    glow (monotonic along rows and columns) keep their level up to the edges, while a
    cell that stands out from its neighbours (a bright star), or a pair of them, is
    replaced; a block of 2 x 2 bright cells or more is kept (a 2-D 3x3 median
    would remove it), as is a bright cell in a corner of the grid."""
    out = np.asarray(grid)
    for axis, s in enumerate(np.broadcast_to(size, 2)):
        h = min(int(s) // 2, out.shape[axis] - 1)
        if h < 1:
            continue
        pad = [(0, 0), (0, 0)]
        pad[axis] = (h, h)
        ext = np.pad(out, pad, mode="reflect", reflect_type="odd")
        windows = np.lib.stride_tricks.sliding_window_view(ext, 2 * h + 1, axis=axis)
        out = np.median(windows, axis=-1)  # an odd window: the middle value, exactly
    return out.astype(np.asarray(grid).dtype, copy=False)


def _cell_centres(n: int, b: int) -> np.ndarray:
    """Pixel coordinates of the centres of the cells of size ``b`` along an axis of ``n``
    pixels (the last one possibly partial)."""
    starts = np.arange(0, n, b)
    ends = np.minimum(starts + b, n)
    return (starts + ends - 1) / 2.0


def _keys(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom): interpolates, sums to
    1, reproduces polynomials up to degree 2, support 4 samples."""
    t = np.abs(t)
    near = 1.5 * t**3 - 2.5 * t**2 + 1
    far = -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _interp_weights(n: int, b: int) -> np.ndarray:
    """(n, n_cells) float32 matrix: row p holds the weights of the cell values in the
    value at pixel p of a 1-D cubic convolution (Keys, a = -0.5) through the cell
    centres. Positions are measured in cells along the (possibly shorter) spacings of
    the centres; beyond the first and last centres, two ghost cells on each side continue
    the grid by quadratic extrapolation of the three outermost cells (linear for two),
    so the map carries on the trend and curvature of a gradient or a glow up to the
    edge. A cell's value only affects the pixels within two cells of its centre."""
    centres = _cell_centres(n, b)
    m = centres.size
    if m == 1:
        return np.ones((n, 1), dtype=np.float32)
    p = np.arange(n, dtype=np.float64)
    u = np.interp(p, centres, np.arange(m, dtype=np.float64))
    lo, hi = p < centres[0], p > centres[-1]
    u[lo] = (p[lo] - centres[0]) / (centres[1] - centres[0])
    u[hi] = m - 1 + (p[hi] - centres[-1]) / (centres[-1] - centres[-2])
    # the grid extended by 2 ghost cells on each side, as combinations of real cells
    ext = np.zeros((m + 4, m))
    ext[2 : m + 2] = np.eye(m)
    for k in (1, 2):  # ghost at index -k
        if m >= 3:  # quadratic through cells 0, 1, 2 at x = -k
            x = -k
            coef = [(x - 1) * (x - 2) / 2, -x * (x - 2), x * (x - 1) / 2]
        else:  # linear through cells 0, 1
            coef = [1 + k, -k]
        ext[2 - k, : len(coef)] = coef
        ext[m + 1 + k, m - len(coef) :] = coef[::-1]
    w = np.zeros((n, m + 4))
    base = np.floor(u).astype(np.int64)
    rows = np.arange(n)
    for d in (-1, 0, 1, 2):
        j = base + d
        w[rows, j + 2] += _keys(u - j)
    return (w @ ext).astype(np.float32)


def _expand_grid(grid: np.ndarray, shape: tuple[int, int], box: tuple[int, int]) -> np.ndarray:
    """The grid of cell values (``shape`` cut in cells of ``box``) interpolated to every
    pixel, separably, with the cubic convolution of :func:`_interp_weights` (float32)."""
    wy = _interp_weights(shape[0], box[0])
    wx = _interp_weights(shape[1], box[1])
    grid = np.asarray(grid, dtype=np.float32)
    return np.ascontiguousarray((wy @ grid) @ wx.T, dtype=np.float32)


def estimate_background(
    image: np.ndarray,
    spec: BackgroundSpec | None = None,
    mask: np.ndarray | None = None,
    threads: int = 1,
    rms: bool = True,
) -> Background:
    """Background and background rms maps of a 2-D ``image`` (see the module docstring).

    NaN / inf pixels and ``mask`` (True = ignore) are left out of the statistics; they
    still get a background value. Raises ``ValueError`` when no cell has enough good
    pixels. Returns float32 maps in the image's units. ``threads``: the cells are
    sigma-clipped on that many threads (the result is the same). ``rms=False``: the level
    alone (``rms`` and ``rms_mesh`` None), half the work: the rms is a second pass over
    the residual image.
    """
    spec = spec if spec is not None else BackgroundSpec()
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"estimate_background needs a 2-D image, got shape {image.shape}")
    if image.dtype.kind != "f":
        image = image.astype(np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {image.shape}")
    if not np.isfinite(image).any() or (mask is not None and not (np.isfinite(image) & ~mask).any()):
        raise ValueError("estimate_background: the image has no finite, unmasked pixel")
    box = cell_shape(image.shape, spec.mesh)

    def grid_and_map(values: np.ndarray, image_like: np.ndarray, clip_to_range: bool):
        """Fill, smooth and interpolate a grid of cell values (float32 grid and map)."""
        good = ~np.isnan(values)
        grid = _median_filter_grid(_fill_left_out(values), spec.smooth).astype(np.float32)
        if spec.interpolation == "idw":
            return grid, _idw_map(grid, good, image_like.shape, box)
        full = _expand_grid(grid, image_like.shape, box)
        if clip_to_range:
            np.clip(full, grid.min(), grid.max(), out=full)
        return grid, full

    clip = PrecisionSigmaClip(spec.sigma_lower, spec.sigma_upper, spec.precision, spec.maxiters, threads)
    values, _ = _cell_statistics(image, mask, box, clip, spec.estimator, rms=False)
    level_mesh, level = grid_and_map(values, image, clip_to_range=False)
    if not rms:
        return Background(level=level, rms=None, level_mesh=level_mesh, cell_shape=box, clip_passes=clip.passes)
    # rms: the same statistics on the residual image, so that the variation of the
    # background itself within a cell (gradient, vignetting, glow) is not noise
    residual = np.subtract(image, level, dtype=np.float32)
    second = PrecisionSigmaClip(spec.sigma_lower, spec.sigma_upper, spec.precision, spec.maxiters, threads)
    _, spread = _cell_statistics(residual, mask, box, second, None, rms=True)
    del residual
    rms_mesh, rms_map = grid_and_map(spread, image, clip_to_range=True)
    return Background(
        level=level, rms=rms_map, level_mesh=level_mesh, rms_mesh=rms_mesh, cell_shape=box, clip_passes=clip.passes
    )


# ----------------------------------------------------------------------------- uses


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius + radius  # a round disk, not a diamond


def reject_sky_flat_stars(
    flat: np.ndarray,
    spec: BackgroundSpec | None = None,
    method: str = "sigma",
    k: float = 3.0,
    low: float | None = None,
    high: float | None = None,
    grow: int = 2,
    threads: int = 1,
) -> np.ndarray:
    """Pixels of one sky (twilight) flat to reject before combining: boolean mask, True =
    reject (the caller sets them to NaN, so the combine fills them from the other flats).

    ``method="sigma"`` (XParallax "sigma level"): pixels above ``level + k * rms`` of the
    flat's local background (stars, cosmic rays). Pixels above the threshold with at
    least one of their 8 neighbours also above it (stars, not a lone noise peak) are
    grown by a disk of radius ``grow`` pixels, which catches the wings of the stars.
    Non-finite pixels are rejected. ``flat`` may be raw (ADU) or normalised.

    ``method="minmax"`` (XParallax "MinMax"): pixels outside ``[low, high]``, absolute
    limits in the flat's units (either may be None = no limit); non-finite pixels are
    rejected; no growing.
    """
    flat = np.asarray(flat)
    name = str(method).strip().lower().replace("-", "").replace("_", "")
    if name in ("minmax", "clipextrema"):
        if low is None and high is None:
            raise ValueError("reject_sky_flat_stars(method='minmax') needs low and/or high")
        keep = np.isfinite(flat)
        if low is not None:
            keep &= flat >= low
        if high is not None:
            keep &= flat <= high
        return ~keep
    if name not in ("sigma", "sigmalevel"):
        raise ValueError(f"unknown sky-flat rejection method {method!r}; expected 'sigma' or 'minmax'")
    k = checked_float("reject_sky_flat_stars", "k", k, 0.0, strict=True)
    grow = checked_int("reject_sky_flat_stars", "grow", grow, 0)
    from scipy.ndimage import binary_dilation, convolve

    bkg = estimate_background(flat, spec, threads=threads)
    with np.errstate(invalid="ignore"):
        above = flat > bkg.level + np.float32(k) * bkg.rms
    if grow > 0 and above.any():
        neighbours = convolve(above.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
        seeds = above & (neighbours >= 2)  # itself + at least one neighbour
        if seeds.any():
            above |= binary_dilation(seeds, structure=_disk(grow))
    return above | ~np.isfinite(flat)


def hot_pixels(
    dark_current: np.ndarray, spec: BackgroundSpec | None = None, k: float = 5.0, threads: int = 1
) -> np.ndarray:
    """Hot pixels of a dark (master dark minus bias, ADU; or a rate, any unit): boolean,
    True where ``dark > level + k * rms`` of its local background. The local level
    follows gradients and amplifier glow, so these are not flagged."""
    k = checked_float("hot_pixels", "k", k, 0.0, strict=True)
    dark = np.asarray(dark_current)
    bkg = estimate_background(dark, spec, threads=threads)
    with np.errstate(invalid="ignore"):
        return dark > bkg.level + np.float32(k) * bkg.rms


def dead_pixels(
    flat: np.ndarray, spec: BackgroundSpec | None = None, fraction: float = 0.5, threads: int = 1
) -> np.ndarray:
    """Dead or weak pixels of a flat (raw ADU or normalised): boolean, True where the
    response is below ``fraction`` of the local background level (which follows
    vignetting, so dark corners are not flagged), and where it is non-finite or <= 0."""
    fraction = checked_float("dead_pixels", "fraction", fraction, 0.0, strict=True)
    flat = np.asarray(flat)
    bkg = estimate_background(flat, spec, threads=threads, rms=False)
    with np.errstate(invalid="ignore"):
        good = (flat >= np.float32(fraction) * bkg.level) & (flat > 0)
    return ~good
