"""Frame geometry (amplifiers, overscan, trim) and overscan correction.

Each amplifier has a data region and an overscan region (FITS sections in raw-frame
coordinates). The overscan reads the amplifier with no charge; its level, modelled
along the readout direction, is subtracted from that amplifier's data region only.
A serial overscan (extra columns) gives one value per row (``axis='rows'``); a parallel
overscan (extra rows, e.g. WHT ISIS) gives one value per column (``axis='columns'``).

The overscan methods are the entries of ``METHODS`` (name -> the model of the level, ADU),
each said there. After correction the frame is cut to the trim section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .camera import HeaderView
from .sections import Section
from .steps import light_steps, reading_layout


@dataclass(frozen=True)
class Amplifier:
    data: Section  # raw-frame coordinates
    overscan: Section | None


@dataclass(frozen=True)
class Layout:
    """Where the data, overscans and trim section lie in a raw frame."""

    raw_shape: tuple[int, int]
    trim: Section
    amplifiers: tuple[Amplifier, ...]
    method: str = "none"
    order: int = 1
    axis: str = "auto"

    @property
    def shape(self) -> tuple[int, int]:
        """numpy shape of the trimmed, calibrated frame."""
        return self.trim.shape

    @property
    def corrects(self) -> bool:
        return self.method != "none" and any(a.overscan for a in self.amplifiers)

    def describe(self) -> str:
        if not self.corrects:
            return f"no overscan; trim {self.trim}"
        amps = "; ".join(f"data {a.data} overscan {a.overscan}" for a in self.amplifiers)
        return f"{self.method} (order {self.order}) {amps}; trim {self.trim}"


def _section(value: str, header: HeaderView, keyword: str, what: str) -> Section | None:
    if value == "header":
        text = header.get(keyword)
        if text is None:
            return None
        try:
            return Section.parse(text)
        except ValueError as exc:
            raise ValueError(f"{keyword} of the frame: {exc}") from None
    try:
        return Section.parse(value)
    except ValueError as exc:
        raise ValueError(f"overscan {what} in the camera profile: {exc}") from None


def _data_beside(overscan: Section, raw_shape: tuple[int, int]) -> Section:
    """The larger side of the frame next to an overscan strip that spans the whole frame."""
    ny, nx = raw_shape
    if overscan.x1 == 1 and overscan.x2 >= nx and overscan.y1 == 1 and overscan.y2 >= ny:
        raise ValueError(f"overscan {overscan} covers the whole {nx}x{ny} (NAXIS1xNAXIS2) frame: no data beside it")
    if overscan.y1 == 1 and overscan.y2 == ny:  # serial: columns
        left, right = overscan.x1 - 1, nx - overscan.x2
        return Section(1, left, 1, ny) if left >= right else Section(overscan.x2 + 1, nx, 1, ny)
    if overscan.x1 == 1 and overscan.x2 == nx:  # parallel: rows
        below, above = overscan.y1 - 1, ny - overscan.y2
        return Section(1, nx, 1, below) if below >= above else Section(1, nx, overscan.y2 + 1, ny)
    raise ValueError(
        f"cannot tell the data region beside overscan {overscan}: give DATASEC/TRIMSEC "
        "or set 'trim' and 'overscan.regions' in the camera profile"
    )


def layout_for(header: HeaderView, raw_shape: tuple[int, int], profile: Mapping[str, Any]) -> Layout:
    """The frame layout from the camera profile, reading BIASSEC/DATASEC/TRIMSEC when it says 'header',
    as far as the profile's raw steps take it (``steps.reading_layout``: without the overscan
    step, no correction; without the trim step, the whole frame).

    Raises ValueError naming the section that is missing or outside the frame, or the
    overscan and the section it overlaps.
    """
    spec = profile["overscan"]
    method = spec["method"]
    amplifiers: list[Amplifier] = []
    if spec["regions"] == "header":
        overscan = _section("header", header, "BIASSEC", "overscan")
        data = _section("header", header, "DATASEC", "data")
        if overscan is not None:
            if data is None:
                data = _section("header", header, "TRIMSEC", "data")
            if data is None:
                data = _data_beside(overscan, raw_shape)
            amplifiers.append(Amplifier(data, overscan))
    else:
        for region in spec["regions"]:
            overscan = _section(region["overscan"], header, "BIASSEC", "overscan")
            data = _section(region["data"], header, "DATASEC", "data")
            if overscan is None or data is None:
                raise ValueError("overscan region 'header' but the frame has no BIASSEC/DATASEC")
            amplifiers.append(Amplifier(data, overscan))

    trim_spec = profile["trim"]
    if trim_spec == "none":
        trim = Section.full(raw_shape)
    elif trim_spec == "header":
        trim = _section("header", header, "TRIMSEC", "trim") or _section("header", header, "DATASEC", "trim")
        if trim is None:
            trim = _union([a.data for a in amplifiers]) if amplifiers else Section.full(raw_shape)
    else:
        trim = _section(trim_spec, header, "TRIMSEC", "trim")

    trim.check_inside(raw_shape, "trim section")
    for amp in amplifiers:
        amp.data.check_inside(raw_shape, "data section")
        if amp.overscan is not None:
            amp.overscan.check_inside(raw_shape, "overscan section")
            # trim 'none' keeps the whole frame, overscan included, on purpose
            check_overscan_apart(amp.overscan, amp.data, None if trim_spec == "none" else trim)
    if not amplifiers:
        method = "none"
    planned = Layout(tuple(raw_shape), trim, tuple(amplifiers), method, spec["order"], spec["axis"])
    return reading_layout(planned, light_steps(profile.get("steps")))


def check_overscan_apart(overscan: Section, data: Section | None, trim: Section | None) -> None:
    """Raise ValueError naming both sections when ``overscan`` shares a pixel with its
    amplifier's ``data`` region or with the ``trim`` section (None: not checked). Such an
    overscan would measure the science signal as the offset, or be kept as science."""
    for other, what in ((data, "data section"), (trim, "trim section")):
        if other is not None and _overlap(overscan, other):
            raise ValueError(f"overscan section {overscan} overlaps the {what} {other}")


def _overlap(a: Section, b: Section) -> bool:
    return a.x1 <= b.x2 and b.x1 <= a.x2 and a.y1 <= b.y2 and b.y1 <= a.y2


def _union(sections: list[Section]) -> Section:
    return Section(
        min(s.x1 for s in sections),
        max(s.x2 for s in sections),
        min(s.y1 for s in sections),
        max(s.y2 for s in sections),
    )


def overscan_pixel_noise(read_rows: Callable[[slice], np.ndarray], layout: Layout) -> list[float]:
    """Per amplifier, the pixel noise (ADU) of its overscan strip: 1.4826 MAD of the pixels
    about their line's median (the line the model follows), x sqrt(n / (n - 1)) for the n
    pixels of a line sharing that median. Near the read noise for a true overscan."""
    noise = []
    for amp in layout.amplifiers:
        rows, cols = amp.overscan.slices
        strip = np.asarray(read_rows(rows)[:, cols], dtype=np.float64)
        along = 1 if _model_axis(layout, amp.overscan) == "rows" else 0
        n = strip.shape[along]
        residual = strip - np.median(strip, axis=along, keepdims=True)
        mad = np.median(np.abs(residual - np.median(residual)))
        noise.append(float(1.4826 * mad * math.sqrt(n / max(n - 1, 1))))
    return noise


def _model_axis(layout: Layout, overscan: Section) -> str:
    if layout.axis != "auto":
        return layout.axis
    ny, nx = overscan.shape
    return "rows" if ny >= nx else "columns"


#: An overscan method: ``model(strip, overscan, data, order, axis)`` -> the level (ADU,
#: float32) to subtract from ``data``, broadcastable to its numpy shape: (1, 1) for one
#: number, else one value per line. ``strip``: the overscan region's pixels (float32 ADU,
#: numpy [y, x]); ``axis``: 'rows' (one value per row) or 'columns'.
OverscanModel = Callable[[np.ndarray, Section, Section, int, str], np.ndarray]


def _mean(strip: np.ndarray, overscan: Section, data: Section, order: int, axis: str) -> np.ndarray:
    return np.array([[np.mean(strip, dtype=np.float64)]], dtype=np.float32)


def _median(strip: np.ndarray, overscan: Section, data: Section, order: int, axis: str) -> np.ndarray:
    return np.array([[np.median(strip)]], dtype=np.float32)


def _lines(strip: np.ndarray, overscan: Section, data: Section, axis: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The median of each line of the strip along ``axis`` (ADU), the lines' numbers and
    those of the data's lines (FITS, 1-based)."""
    if axis == "rows":
        return np.median(strip, axis=1), np.arange(overscan.y1, overscan.y2 + 1), np.arange(data.y1, data.y2 + 1)
    return np.median(strip, axis=0), np.arange(overscan.x1, overscan.x2 + 1), np.arange(data.x1, data.x2 + 1)


def _per_line(values: np.ndarray, axis: str) -> np.ndarray:
    """One value per data line as a float32 column (``axis='rows'``) or row."""
    values = values.astype(np.float32)
    return values[:, None] if axis == "rows" else values[None, :]


def _median_per_row(strip: np.ndarray, overscan: Section, data: Section, order: int, axis: str) -> np.ndarray:
    """Each data line gets the median of the overscan's line of the same number."""
    lines, coords, at = _lines(strip, overscan, data, axis)
    index = at - coords[0]
    if index.min() < 0 or index.max() >= coords.size:
        raise ValueError(
            f"median_per_row: overscan {overscan} does not cover every line of data {data}; "
            "use a fit (polynomial, chebyshev, spline) or mean/median"
        )
    return _per_line(lines[index], axis)


def _line_fit(fit: Callable[[np.ndarray, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]) -> OverscanModel:
    """The model that fits ``fit(x, y, order)`` (a callable of x) to the finite line medians
    ``y`` (ADU) against their line numbers ``x``, evaluated at the data's lines."""

    def model(strip: np.ndarray, overscan: Section, data: Section, order: int, axis: str) -> np.ndarray:
        lines, coords, at = _lines(strip, overscan, data, axis)
        good = np.isfinite(lines)
        return _per_line(fit(coords[good].astype(np.float64), lines[good].astype(np.float64), order)(at), axis)

    return model


def _cubic_spline(x: np.ndarray, y: np.ndarray, order: int) -> Callable[[np.ndarray], np.ndarray]:
    """A least-squares cubic spline with ``order`` interior knots, evenly spaced; constant
    beyond the first and last line."""
    from scipy.interpolate import make_lsq_spline

    k = 3
    inner = np.linspace(x[0], x[-1], order + 2)[1:-1]
    knots = np.concatenate([[x[0]] * (k + 1), inner, [x[-1]] * (k + 1)])
    spline = make_lsq_spline(x, y, knots, k=k)
    return lambda at: spline(np.clip(at, x[0], x[-1]))


#: The overscan methods by name (the configuration's ``overscan.method``). A line is a row
#: of a serial overscan, a column of a parallel one.
METHODS: dict[str, OverscanModel | None] = {
    "none": None,  # no correction (``Layout.corrects`` is False)
    "mean": _mean,  # of the whole overscan: one number
    "median": _median,  # of the whole overscan: one number
    "median_per_row": _median_per_row,  # the median of each line
    "polynomial": _line_fit(np.polynomial.Polynomial.fit),  # of degree ``order``, fitted to the line medians
    "chebyshev": _line_fit(np.polynomial.Chebyshev.fit),  # of degree ``order``, fitted to the line medians
    "spline": _line_fit(_cubic_spline),  # cubic, ``order`` interior knots, fitted to the line medians
}


class FrameCorrector:
    """Overscan-corrects and trims one frame, block by block of output rows.

    ``read_rows(slice, out=None)`` returns raw-frame rows as float32 ADU (e.g.
    ``RawFrame.read``), written into ``out`` when given. The overscan models are computed
    once, from the overscan strips, at construction.
    """

    def __init__(self, read_rows: Callable[[slice], np.ndarray], layout: Layout):
        self.layout = layout
        self._read = read_rows
        self.models: list[np.ndarray] = []
        if layout.corrects:
            for amp in layout.amplifiers:
                rows, cols = amp.overscan.slices
                strip = read_rows(rows)[:, cols]
                axis = _model_axis(layout, amp.overscan)
                self.models.append(METHODS[layout.method](strip, amp.overscan, amp.data, layout.order, axis))

    @property
    def levels(self) -> list[float]:
        """Mean overscan level (ADU) subtracted from each amplifier."""
        return [float(np.mean(m)) for m in self.models]

    def block(
        self, y0: int, y1: int, saturation: float | None = None, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Output rows ``y0:y1`` (0-based, trimmed coordinates), overscan-corrected, float32 ADU.

        Written into ``out`` (rows, nx) when given: read straight into it when the trim
        keeps every column. With ``saturation`` (raw ADU), also a boolean mask of the pixels
        at or above it in the raw data (None when there are none).
        """
        trim = self.layout.trim
        raw_y0 = trim.y1 - 1 + y0
        raw_y1 = trim.y1 - 1 + y1
        cols = slice(trim.x1 - 1, trim.x2)
        every_column = cols == slice(0, self.layout.raw_shape[1])
        if out is not None and every_column:
            raw = self._read(slice(raw_y0, raw_y1), out=out)
        else:
            raw = self._read(slice(raw_y0, raw_y1))
        saturated = None
        if saturation is not None and raw[:, cols].max(initial=-np.inf) >= saturation:
            saturated = raw[:, cols] >= saturation
        for amp, model in zip(self.layout.amplifiers, self.models):
            a_rows, a_cols = amp.data.slices
            lo, hi = max(a_rows.start, raw_y0), min(a_rows.stop, raw_y1)
            if lo >= hi:
                continue
            piece = model
            if model.shape[0] > 1:  # one value per row
                piece = model[lo - a_rows.start : hi - a_rows.start]
            raw[lo - raw_y0 : hi - raw_y0, a_cols] -= piece
        if out is None:
            out = raw if every_column else np.ascontiguousarray(raw[:, cols])
        elif raw is not out:
            out[...] = raw[:, cols]
        return out, saturated

    def full(
        self, saturation: float | None = None, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return self.block(0, self.layout.shape[0], saturation, out=out)
