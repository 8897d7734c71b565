"""Small PNG figures for the night report: image previews, pixel histograms and plots.

Images are numpy arrays [y, x] in ADU; a mask is an array of the same shape, nonzero
where a pixel is bad. Every figure is written atomically (``write_bytes_atomic``) and is
deterministic: the same input gives a byte-identical file (no time stamp, no software
version in the PNG). Plots use matplotlib's Figure with the Agg canvas directly (no
pyplot, no global figure state), 640x400 px unless said otherwise. A plot given no data
draws a labelled 'no data' figure instead of raising.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import bottleneck as bn
import numpy as np

from .stats import median
from .writers import write_bytes_atomic

if TYPE_CHECKING:
    from .cfa import CfaLayout

#: Normal consistency of the median absolute deviation: sigma = 1.4826 MAD.
MAD_TO_SIGMA = 1.482602218505602
#: Dots per inch of every plot: a 6.4 x 4.0 inch figure is 640 x 400 px.
PLOT_DPI = 100
PLOT_SIZE_INCHES = (6.4, 4.0)
#: Half-width of a histogram's range, in robust sigma (1.4826 MAD) either side of the median.
HISTOGRAM_HALF_WIDTH_SIGMA = 8.0
HISTOGRAM_BINS = 200
#: The band of measured noise / median UNCERT counted as agreement.
NOISE_RATIO_BAND = (0.95, 1.05)


@dataclass(frozen=True)
class PreviewInfo:
    """What ``write_preview`` drew: the PNG's size (px), the side of the square block of
    image pixels averaged into one PNG pixel, and the ADU values drawn black and white."""

    width: int
    height: int
    block: int
    black_adu: float
    white_adu: float


@dataclass(frozen=True)
class PixelHistogram:
    """A histogram of an image's finite unmasked pixels: ``counts`` in the bins between
    ``edges`` (one more than the counts; ADU or the image's unit), the pixels' median and
    robust sigma (1.4826 MAD), how many there are, and how many fall below and above the
    edges. Computed where the image is in memory (a master's job, ``pixel_histogram``),
    drawn where the report is made (``draw_histogram``); ``as_json`` / ``from_json``
    carry it between them (a pixel-less histogram's median and sigma are NaN, null in
    JSON)."""

    counts: tuple[int, ...]
    edges: tuple[float, ...]
    median: float
    sigma: float
    count: int
    below: int
    above: int

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": list(self.counts),
            "edges": list(self.edges),
            **{
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in (("median", self.median), ("sigma", self.sigma))
            },
            "count": self.count,
            "below": self.below,
            "above": self.above,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> PixelHistogram:
        nan = float("nan")
        return cls(
            counts=tuple(int(c) for c in record["counts"]),
            edges=tuple(float(e) for e in record["edges"]),
            median=nan if record["median"] is None else float(record["median"]),
            sigma=nan if record["sigma"] is None else float(record["sigma"]),
            count=int(record["count"]),
            below=int(record["below"]),
            above=int(record["above"]),
        )


# ------------------------------------------------------------------ image preview
def _good_pixels(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean array: finite and not masked."""
    good = np.isfinite(data)
    if mask is not None:
        good &= np.asarray(mask) == 0
    return good


def _checked_image(data, mask) -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` as a C-contiguous float array (float32 unless it is float64) and ``mask``
    as an array, both checked to be 2-D and of one shape."""
    image = np.asarray(data)
    if image.ndim != 2:
        raise ValueError(f"an image [y, x] is needed, got an array of shape {image.shape}")
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float32)
    image = np.ascontiguousarray(image)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} is not the image's {image.shape}")
    return image, mask


def block_mean(data: np.ndarray, block: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean of each ``block`` x ``block`` square of ``data`` (float32, ADU), ignoring
    non-finite and masked pixels; NaN where a square has none. An image whose sides are
    not multiples of ``block`` is padded with NaN: the result has ceil(ny / block) rows
    and ceil(nx / block) columns."""
    image, mask = _checked_image(data, mask)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if block == 1:
        out = image.astype(np.float32, copy=True)
        out[~_good_pixels(image, mask)] = np.nan
        return out
    ny, nx = image.shape
    rows, cols = -(-ny // block), -(-nx // block)
    nan = image.dtype.type(np.nan)
    # Bad pixels become NaN (in a copy): bottleneck's nansum skips them without a mask array.
    values = image if mask is None else np.where(mask == 0, image, nan)
    if (rows * block, cols * block) != (ny, nx):
        padded = np.full((rows * block, cols * block), nan, dtype=image.dtype)
        padded[:ny, :nx] = values
        values = padded
    height = values.shape[0]
    row_sums = bn.nansum(values.reshape(height, cols, block), axis=2)  # along x within each block
    if not np.isfinite(row_sums).all():  # an infinite pixel: bad, like NaN
        values = np.where(np.isinf(values), nan, values)
        row_sums = bn.nansum(values.reshape(height, cols, block), axis=2)
    sums = row_sums.reshape(rows, block, cols).sum(axis=1, dtype=np.float64)
    if not bn.anynan(values):
        return (sums / (block * block)).astype(np.float32)
    good = ~np.isnan(values)
    # Counted along y first (whole rows added, fast), then along x on the smaller array.
    column_counts = (
        good.view(np.uint8)
        .reshape(rows, block, cols * block)
        .sum(axis=1, dtype=np.uint16 if block < 1 << 16 else np.uint32)
    )
    counts = column_counts.reshape(rows, cols, block).sum(axis=2, dtype=np.uint32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


#: Longest side of a master's preview, px.
PREVIEW_SIZE = 512


def reduced_image(
    data: np.ndarray, mask: np.ndarray | None = None, max_size: int = PREVIEW_SIZE
) -> tuple[np.ndarray, int]:
    """An image (ADU, [y, x]) reduced for a preview: the mean of each block x block square
    (``block_mean``: NaN and masked pixels left out), ``block`` the smallest integer that
    makes the longer side <= ``max_size`` px. Returns (float32 image, block)."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1 px, got {max_size}")
    image, mask = _checked_image(data, mask)
    block = max(1, -(-max(image.shape) // max_size))
    return block_mean(image, block, mask), block


#: JPEG quality of the lights' thumbnails.
THUMBNAIL_JPEG_QUALITY = 90


def _stretched(reduced: np.ndarray) -> tuple[np.ndarray, float, float]:
    """8-bit levels of a 2-D image between its finite pixels' ZScale limits (NaN black;
    one value: mid-grey), and the limits (NaN when no pixel is finite)."""
    finite = np.isfinite(reduced)
    pixels = np.zeros(reduced.shape, dtype=np.uint8)
    black = white = float("nan")
    if finite.any():
        # here: astropy.visualization imports matplotlib (~0.08 s), which the workflow's
        # evaluation (the Snakefile imports ccdcal.resources) does not need
        from astropy.visualization import ZScaleInterval

        black, white = (float(v) for v in ZScaleInterval().get_limits(reduced[finite]))
        if white > black:
            scaled = (reduced[finite].astype(np.float64) - black) * (255.0 / (white - black))
            pixels[finite] = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
        else:
            pixels[finite] = 128
    return pixels, black, white


def write_stretched(reduced: np.ndarray, path: str | os.PathLike, block: int = 1) -> PreviewInfo:
    """Write an 8-bit grayscale image of a (reduced) image to ``path``, stretched linearly
    between the ZScale limits (IRAF's zscale, astropy's ZScaleInterval) of its finite
    pixels. Below the lower limit is black, above the upper white, a NaN pixel black; an
    image of a single value is mid-grey. Row 0 is at the bottom, as ds9 shows a FITS
    image. ``block``: what ``reduced_image`` reduced by (recorded in the PreviewInfo). A
    colour image (y, x, 3: R, G, B) is written in colour, each channel between its own
    limits (an "unlinked" stretch: the sky comes out grey), the green's in the PreviewInfo.

    A path ending in .jpg is written as JPEG (quality 90: a light's thumbnail, a sky's
    noise, encodes in a fourteenth of a PNG's time at 0.6 times its bytes), any other as
    PNG (lossless: a master's preview)."""
    reduced = np.asarray(reduced)
    if reduced.ndim == 3:  # colour (y, x, RGB): each channel stretched by its own limits
        stretched = [_stretched(reduced[..., c]) for c in range(reduced.shape[2])]
        pixels = np.stack([pixels for pixels, _, _ in stretched], axis=-1)
        _, black, white = stretched[1]  # green's, in the PreviewInfo
    else:
        pixels, black, white = _stretched(reduced)
    from PIL import Image  # here: only a job that draws pays it (a light job of cached lights does not)

    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels[::-1]))
    if str(path).lower().endswith(".jpg"):
        image.save(buffer, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    else:  # zlib level 1: a sixth of level 6's time for a 512 px preview, 1.2 times its bytes
        image.save(buffer, format="PNG", compress_level=1)
    write_bytes_atomic(buffer.getvalue(), path)
    return PreviewInfo(width=pixels.shape[1], height=pixels.shape[0], block=block, black_adu=black, white_adu=white)


def write_preview(
    data: np.ndarray, path: str | os.PathLike, mask: np.ndarray | None = None, max_size: int = PREVIEW_SIZE
) -> PreviewInfo:
    """Write an 8-bit grayscale PNG of an image (ADU, [y, x]) to ``path``: the image
    reduced to at most ``max_size`` px a side (``reduced_image``), then stretched
    (``write_stretched``) between the ZScale limits of that reduced image: the limits are
    those of what is shown, so the sky's noise spans the grey levels whatever the
    reduction."""
    reduced, block = reduced_image(data, mask, max_size)
    return write_stretched(reduced, path, block)


def save_array(array: np.ndarray, path: str | os.PathLike) -> None:
    """``array`` as a .npy file, written atomically (a reduced image a master's job hands
    to the report job; byte-identical for the same array)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes_atomic(buffer.getvalue(), path)


#: Longest side of a light's thumbnail, px.
THUMBNAIL_SIZE = 256


def write_thumbnail(
    data: np.ndarray,
    path: str | os.PathLike,
    mask: np.ndarray | None = None,
    max_size: int = THUMBNAIL_SIZE,
    cfa: CfaLayout | None = None,
) -> PreviewInfo:
    """A small preview of a light (``write_preview`` of every n-th pixel of every n-th
    row, n = its longer side / ``max_size``, rounded up; JPEG when ``path`` ends in .jpg):
    ~1.5 ms at 2048², where a block mean of every pixel costs ~20 ms a light. A colour
    frame (``cfa``, its Bayer layout) is shown in colour: every n-th of its 2 x 2 cells
    gives one pixel (R, the mean of its two G, B; masked pixels left out)."""
    if cfa is not None:
        step = max(1, -(-max(data.shape) // (2 * max_size)))
        planes: dict[str, list[np.ndarray]] = {"R": [], "G": [], "B": []}
        ny, nx = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
        for name, (rows, cols) in cfa.channels():
            view = (slice(rows.start, ny, 2 * step), slice(cols.start, nx, 2 * step))
            plane = data[view].astype(np.float32)
            if mask is not None:
                plane[mask[view] != 0] = np.nan
            planes[name[0]].append(plane)
        with warnings.catch_warnings():  # a cell whose two greens are masked: NaN, shown black
            warnings.simplefilter("ignore", RuntimeWarning)
            rgb = np.stack([np.nanmean(planes[c], axis=0) for c in "RGB"], axis=-1)
        return write_stretched(rgb, path, 2 * step)
    step = max(1, -(-max(data.shape) // max_size))
    return write_preview(data[::step, ::step], path, None if mask is None else mask[::step, ::step], max_size=max_size)


# ------------------------------------------------------------------ figures
def _new_figure(height_inches: float = PLOT_SIZE_INCHES[1], ncols: int = 1, nrows: int = 1, sharex: bool = False):
    """A figure 6.4 inches (640 px) wide with its Agg canvas, and its axes. Fixed margins:
    a constrained layout measures every text once more (half of a histogram's cost)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: 0.25 s a process that
    from matplotlib.figure import Figure  # makes no figure (a light job) does not pay

    figure = Figure(figsize=(PLOT_SIZE_INCHES[0], height_inches), dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    inch = 1.0 / height_inches
    figure.subplots_adjust(
        left=0.12, right=0.97, bottom=0.55 * inch, top=1 - 0.4 * inch, wspace=0.3, hspace=0.45 * 4 * inch
    )
    axes = figure.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    return figure, [ax for row in axes for ax in row]


def _save(figure, path: str | os.PathLike) -> None:
    """The figure as a PNG at ``PLOT_DPI``, without the software version (deterministic)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    write_bytes_atomic(buffer.getvalue(), path)


def _mark_no_data(ax, text: str = "no data") -> None:
    """Write ``text`` in the middle of an empty panel, without ticks."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _write_no_data(path: str | os.PathLike, title: str, text: str = "no data") -> None:
    figure, (ax,) = _new_figure()
    ax.set_title(title)
    _mark_no_data(ax, text)
    _save(figure, path)


def _finite_pairs(points: Iterable[Sequence]) -> tuple[np.ndarray, np.ndarray]:
    """The first two values of each point as float arrays, without non-finite pairs or Nones."""
    xs, ys = [], []
    for point in points:
        x, y = point[0], point[1]
        if x is None or y is None:
            continue
        x, y = float(x), float(y)
        if math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


#: Pixels the histogram's median and robust sigma are computed from, at most.
HISTOGRAM_SAMPLE = 1 << 20


def pixel_histogram(data: np.ndarray, mask: np.ndarray | None = None) -> PixelHistogram:
    """The histogram of an image's finite unmasked pixels (ADU, [y, x]).

    The range is the median +- 8 robust sigma (1.4826 MAD), or the data's range when the
    MAD is 0, in 200 bins; integer-valued data (raw frames) get bins of whole units centred
    on integers, so quantisation does not comb the histogram. Every pixel is counted; the
    median and sigma come from evenly spaced pixels (at most ``HISTOGRAM_SAMPLE``: their
    error is ~0.1 %).
    """
    image, mask = _checked_image(data, mask)
    good = _good_pixels(image, mask)
    values = image[good] if not good.all() else image.ravel()
    if values.size == 0:
        nan = float("nan")
        return PixelHistogram(counts=(), edges=(), median=nan, sigma=nan, count=0, below=0, above=0)
    spaced = values[:: max(1, values.size // HISTOGRAM_SAMPLE)]
    centre = median(spaced)
    deviations = spaced - spaced.dtype.type(centre)
    sigma = MAD_TO_SIGMA * median(np.abs(deviations, out=deviations))
    del deviations, spaced
    if sigma > 0:
        low, high = (centre - HISTOGRAM_HALF_WIDTH_SIGMA * sigma, centre + HISTOGRAM_HALF_WIDTH_SIGMA * sigma)
    else:
        low, high = float(values.min()), float(values.max())
    sample = values[:: max(1, values.size // 10_000)]
    if np.array_equal(sample, np.rint(sample)):  # whole numbers: one or more units per bin
        width = max(1, math.ceil((high - low) / HISTOGRAM_BINS))
        low, high = math.floor(low) - 0.5, math.ceil(high) + 0.5
        edges = np.arange(low, high + width, width)
    else:
        if high <= low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    # equal bins given as a count and a range: numpy's fast path (no search per pixel)
    counts, edges = np.histogram(values, bins=len(edges) - 1, range=(float(edges[0]), float(edges[-1])))
    below = int(np.count_nonzero(values < edges[0]))
    above = int(values.size - below - counts.sum())
    return PixelHistogram(
        counts=tuple(int(c) for c in counts),
        edges=tuple(float(e) for e in edges),
        median=float(centre),
        sigma=float(sigma),
        count=int(values.size),
        below=below,
        above=above,
    )


def draw_histogram(histogram: PixelHistogram, path: str | os.PathLike, title: str, unit: str = "ADU") -> None:
    """Draw a ``pixel_histogram`` to ``path``: log count axis, a solid line at the median,
    dotted at +- 1 sigma, the counts below and above the range written on the figure. A
    histogram of no pixel: a 'no data' figure."""
    if histogram.count == 0:
        _write_no_data(path, title, "no finite unmasked pixel")
        return
    from matplotlib.ticker import FuncFormatter, NullLocator

    centre, sigma, edges = histogram.median, histogram.sigma, histogram.edges
    figure, (ax,) = _new_figure()
    ax.stairs(histogram.counts, edges, color="C0", linewidth=1.0)
    ax.set_yscale("log")
    # decades only, written plainly ('1000', '1e+06'): minor ticks and mathtext labels
    # were 40 % of the figure's time
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_ylim(bottom=0.7)
    ax.axvline(centre, color="C3", linewidth=1.2, label=f"median {centre:.6g} {unit}")
    if sigma > 0:
        for side in (-1, 1):
            ax.axvline(
                centre + side * sigma,
                color="C3",
                linewidth=0.8,
                linestyle=":",
                label=f"± 1 sigma ({sigma:.4g} {unit}, 1.4826 MAD)" if side > 0 else None,
            )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_title(title)
    ax.set_xlabel(f"pixel value ({unit})")
    ax.set_ylabel("pixels per bin")
    ax.legend(loc="upper right", fontsize=8)
    ax.text(
        0.01,
        0.98,
        f"{histogram.count} pixels\n{histogram.below} below, {histogram.above} above the range",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=8,
    )
    _save(figure, path)


def plot_overscan_levels(
    series: Mapping[str, Iterable[Sequence[float]]],
    path: str | os.PathLike,
    xlabel: str = "hours since the first frame",
) -> None:
    """Overscan level (ADU) through the night, one line per amplifier or camera.

    ``series``: {label: [(time in hours or frame index, level in ADU), ...]}; the x axis
    is counted from the earliest time of all series.
    """
    title = "Overscan level"
    lines = {label: _finite_pairs(points) for label, points in series.items()}
    lines = {label: xy for label, xy in lines.items() if xy[0].size}
    if not lines:
        _write_no_data(path, title)
        return
    start = min(float(x.min()) for x, _ in lines.values())
    figure, (ax,) = _new_figure()
    for label, (x, y) in lines.items():
        order = np.argsort(x, kind="stable")
        ax.plot(x[order] - start, y[order], marker=".", markersize=4, linewidth=1.0, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("overscan level (ADU)")
    ax.legend(fontsize=8)
    _save(figure, path)


def plot_noise_vs_uncert(rows: Iterable[Sequence], path: str | os.PathLike) -> None:
    """Measured robust noise / median UNCERT per calibrated light, with the 0.95-1.05 band.

    ``rows``: [(light name, ratio)]; a ratio of 1 means the uncertainty plane matches the
    scatter. Points outside the band are drawn in red; names label the x axis up to 20
    lights, beyond that the axis is the light's index.
    """
    title = "Measured noise / median UNCERT"
    names, ratios = [], []
    for name, ratio in rows:
        if ratio is not None and math.isfinite(float(ratio)):
            names.append(str(name))
            ratios.append(float(ratio))
    if not ratios:
        _write_no_data(path, title)
        return
    x = np.arange(len(ratios))
    y = np.array(ratios)
    inside = (y >= NOISE_RATIO_BAND[0]) & (y <= NOISE_RATIO_BAND[1])
    figure, (ax,) = _new_figure()
    ax.axhspan(
        *NOISE_RATIO_BAND, color="C2", alpha=0.2, linewidth=0, label=f"{NOISE_RATIO_BAND[0]:g}-{NOISE_RATIO_BAND[1]:g}"
    )
    ax.axhline(1.0, color="C2", linewidth=0.8)
    ax.plot(x[inside], y[inside], "o", color="C0", markersize=4, label="inside")
    if not inside.all():
        ax.plot(x[~inside], y[~inside], "o", color="C3", markersize=4, label="outside")
    if len(names) <= 20:
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("light")
    else:
        ax.set_xlabel("light (index in the list)")
    ax.set_title(title)
    ax.set_ylabel("robust noise / median UNCERT")
    ax.legend(fontsize=8)
    _save(figure, path)


def plot_dark_current(points: Iterable[Sequence], path: str | os.PathLike) -> None:
    """Dark current (e-/s) against exposure time (s) and against temperature (deg C).

    ``points``: [(exposure s, temperature C or None, current e-/s, label)], one colour per
    label (e.g. a camera or a master); a point without a temperature is left out of the
    temperature panel only.
    """
    title = "Dark current"
    by_label: dict[str, list[tuple[float, float, float]]] = {}
    for exposure, temperature, current, label in points:
        if exposure is None or current is None:
            continue
        exposure, current = float(exposure), float(current)
        if not (math.isfinite(exposure) and math.isfinite(current)):
            continue
        temp = float(temperature) if temperature is not None else float("nan")
        by_label.setdefault(str(label), []).append((exposure, temp, current))
    if not by_label:
        _write_no_data(path, title)
        return
    figure, (vs_exposure, vs_temperature) = _new_figure(ncols=2)
    any_temperature = False
    for index, (label, rows) in enumerate(by_label.items()):
        exposure, temp, current = (np.array(column) for column in zip(*rows))
        colour = f"C{index % 10}"
        vs_exposure.plot(exposure, current, "o", color=colour, markersize=4, label=label)
        known = np.isfinite(temp)
        if known.any():
            any_temperature = True
            vs_temperature.plot(temp[known], current[known], "o", color=colour, markersize=4)
    vs_exposure.set_xlabel("exposure (s)")
    vs_exposure.set_ylabel("dark current (e-/s)")
    vs_exposure.legend(fontsize=7)
    if any_temperature:
        vs_temperature.set_xlabel("temperature (deg C)")
        vs_temperature.set_ylabel("dark current (e-/s)")
    else:
        _mark_no_data(vs_temperature, "no temperature")
    figure.suptitle(title)
    _save(figure, path)


def plot_flat_levels(
    levels: Mapping[str, Iterable[float]], path: str | os.PathLike, saturation: float | None = None
) -> None:
    """Level (ADU) of each flat, one column of points per filter, with an optional
    horizontal line at the saturation level (ADU). ``levels``: {filter: [level ADU, ...]};
    within a column the points are spread evenly, in the order given."""
    title = "Flat levels"
    columns = {}
    for name, values in levels.items():
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if finite:
            columns[str(name)] = np.array(finite)
    if not columns:
        _write_no_data(path, title)
        return
    figure, (ax,) = _new_figure()
    for index, values in enumerate(columns.values()):
        spread = np.linspace(-0.25, 0.25, values.size) if values.size > 1 else np.zeros(1)
        ax.plot(index + spread, values, "o", color=f"C{index % 10}", markersize=4)
    if saturation is not None:
        ax.axhline(
            float(saturation),
            color="C3",
            linestyle="--",
            linewidth=1.0,
            label=f"saturation {float(saturation):.6g} ADU",
        )
        ax.legend(fontsize=8)
    ax.set_xticks(np.arange(len(columns)), list(columns))
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_title(title)
    ax.set_xlabel("filter")
    ax.set_ylabel("flat level (ADU)")
    _save(figure, path)


def plot_photon_transfer(points: Iterable[Sequence], gain: float | None, path: str | os.PathLike) -> None:
    """Photon transfer: shot-noise variance (ADU^2) against signal (ADU) of the flat pairs,
    with the line variance = signal / gain for ``gain`` in e-/ADU (no line when None).

    ``points``: [(signal ADU, shot variance ADU^2, 1-sigma error of the variance ADU^2 or None)].
    """
    title = "Photon transfer"
    rows = []
    for signal, variance, error in points:
        if signal is None or variance is None:
            continue
        signal, variance = float(signal), float(variance)
        error = float(error) if error is not None and math.isfinite(float(error)) else 0.0
        if math.isfinite(signal) and math.isfinite(variance):
            rows.append((signal, variance, error))
    if not rows:
        _write_no_data(path, title)
        return
    signal, variance, error = (np.array(column) for column in zip(*rows))
    figure, (ax,) = _new_figure()
    ax.errorbar(signal, variance, yerr=error, fmt="o", markersize=4, capsize=2, label="flat pairs")
    if gain is not None and math.isfinite(float(gain)) and float(gain) > 0:
        line = np.array([0.0, float(signal.max()) * 1.05])
        ax.plot(
            line,
            line / float(gain),
            color="C3",
            linewidth=1.0,
            label=f"variance = signal / gain, gain {float(gain):.4g} e-/ADU",
        )
        title = f"{title}: gain {float(gain):.4g} e-/ADU"
    ax.set_title(title)
    ax.set_xlabel("signal (ADU)")
    ax.set_ylabel("shot-noise variance (ADU$^2$)")
    ax.legend(fontsize=8)
    _save(figure, path)


def plot_trends(series: Mapping[str, Iterable[Sequence]], path: str | os.PathLike) -> None:
    """One small panel per quantity against the night's date, sharing the date axis.

    ``series``: {quantity with its unit, e.g. 'bias level (ADU)': [('YYYY-MM-DD', value)]};
    for a library's nights. The figure is 640 px wide and 400 px high, or 140 px per
    panel when there are more than two.
    """
    from matplotlib import dates as mdates

    title = "Trends over the nights"
    panels = {}
    for quantity, points in series.items():
        days, values = [], []
        for day, value in points:
            if value is None or not math.isfinite(float(value)):
                continue
            days.append(mdates.date2num(date.fromisoformat(str(day)[:10])))
            values.append(float(value))
        panels[str(quantity)] = (np.array(days), np.array(values))
    if not any(days.size for days, _ in panels.values()):
        _write_no_data(path, title)
        return
    figure, axes = _new_figure(
        height_inches=max(PLOT_SIZE_INCHES[1], 1.4 * len(panels)), nrows=len(panels), sharex=True
    )
    for ax, (quantity, (days, values)) in zip(axes, panels.items()):
        ax.set_title(quantity, fontsize=9, loc="left")
        if days.size == 0:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.4")
            ax.set_yticks([])  # (not the x ticks: the date axis is shared)
            continue
        order = np.argsort(days, kind="stable")
        ax.plot(days[order], values[order], marker="o", markersize=3, linewidth=1.0)
        ax.tick_params(labelsize=8)
    locator = mdates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("night")
    figure.suptitle(title)
    _save(figure, path)


def write_figure_data(kind: str, data: np.ndarray, mask: np.ndarray, preview: str) -> dict[str, Any]:
    """What a master's figures in the night's report are drawn from, computed while it
    is in memory: the master reduced to at most 512 px a side (``previews.reduced_image``,
    float32 ADU, written to ``preview`` as .npy), and the histogram of its pixels,
    returned (``previews.PixelHistogram.as_json`` with its ``unit``: ADU, '' for a flat).
    The report job stretches and draws them (``report_pages.draw_master_figures``): a
    master job imports neither astropy.visualization nor matplotlib."""
    reduced, _ = reduced_image(data, mask)
    save_array(reduced, preview)
    return {**pixel_histogram(data, mask).as_json(), "unit": "" if kind in ("flat", "fringe") else "ADU"}
