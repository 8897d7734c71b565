"""Colour filter arrays: the Bayer pattern of one-shot-colour (OSC) frames.

ccdcal never debayers: bias, dark and flat are per-pixel operations. What a CFA changes
is which pixels are *neighbours of the same colour*: a flat's per-channel normalisation
(``flat.cfa: per_channel``), hot and dead pixel detection and cosmetic correction look at
each colour's pixels (two pixels apart) on their own, through ``channels``.

Conventions
-----------
The header says the pattern as capture software writes it (N.I.N.A., SharpCap, ASCOM,
Siril, PixInsight read it so): ``BAYERPAT`` names the 2 x 2 colours starting at the
sensor's first pixel in *readout order* (row by row from the top), ``XBAYROFF`` /
``YBAYROFF`` (0 or 1) shift where the pattern starts, and ``ROWORDER`` says how the
file stores rows: ``TOP-DOWN`` (the file's first row is the top row: the pattern applies
to numpy row 0 as is) or ``BOTTOM-UP`` (FITS's own convention: numpy row 0 is the
sensor's last row). Without ``ROWORDER``, TOP-DOWN (what capture software that writes
``BAYERPAT`` does). So the colour of numpy pixel (iy, ix) of an array ny rows high is

    BAYERPAT[2 * ((sy + YBAYROFF) % 2) + (ix + XBAYROFF) % 2]
    with sy = iy (TOP-DOWN) or ny - 1 - iy (BOTTOM-UP).

A camera profile's ``bayer_pattern`` (RGGB, BGGR, GRBG, GBRG) replaces ``BAYERPAT``
(offsets and ROWORDER still from the header); ``none`` treats the frames as monochrome.

``CfaLayout`` is the result for one numpy array: its four colours in numpy order
([0, 0], [0, 1], [1, 0], [1, 1]). Trimming moves where the pattern starts: the outputs
keep ``BAYERPAT`` and ``ROWORDER`` as the raw frame wrote them and get ``XBAYROFF`` /
``YBAYROFF`` such that the formula above gives the trimmed array's colours
(``header_cards``). Binning a CFA frame mixes its colours: such frames are refused
(``binning_problem``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The 2 x 2 Bayer patterns (other CFAs, e.g. X-Trans 6 x 6, are refused).
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
#: The header cards describing the pattern.
CFA_KEYWORDS = ("BAYERPAT", "XBAYROFF", "YBAYROFF", "ROWORDER")
ROW_ORDERS = ("TOP-DOWN", "BOTTOM-UP")


class CfaError(ValueError):
    """A header's (or profile's) Bayer description that cannot be used; the message says which card and why."""


@dataclass(frozen=True)
class CfaLayout:
    """The colours of one numpy array's 2 x 2 cells, in numpy order: ``colours[0]`` at
    [0, 0], [1] at [0, 1], [2] at [1, 0], [3] at [1, 1] (e.g. 'RGGB')."""

    colours: str

    def __post_init__(self) -> None:
        if self.colours not in BAYER_PATTERNS:
            raise CfaError(f"CFA pattern {self.colours!r}: not one of {', '.join(BAYER_PATTERNS)}")

    def shifted(self, dy: int, dx: int) -> CfaLayout:
        """The layout of ``array[dy:, dx:]`` (numpy offsets, any sign)."""
        c = self.colours
        return CfaLayout("".join(c[2 * ((y + dy) % 2) + (x + dx) % 2] for y in (0, 1) for x in (0, 1)))

    def channels(self) -> Iterator[tuple[str, tuple[slice, slice]]]:
        """(name, numpy slices) of the four CFA channels, e.g. ('R', (0::2, 0::2)),
        ('G1', (0::2, 1::2)), ('G2', (1::2, 0::2)), ('B', (1::2, 1::2)) for RGGB: each
        slice pair selects one colour's pixels, whose neighbours in the view are the
        pixels of the same colour two pixels away. The two greens are kept apart (G1 in
        the red row, G2 in the blue row: their responses differ slightly)."""
        for index, colour in enumerate(self.colours):
            y, x = divmod(index, 2)
            name = colour if colour != "G" else ("G1" if "R" in self.colours[2 * y : 2 * y + 2] else "G2")
            yield name, (slice(y, None, 2), slice(x, None, 2))

    def colour_map(self, shape: tuple[int, int]) -> np.ndarray:
        """An array of ``shape`` holding each pixel's colour letter (for tests and figures)."""
        out = np.empty(shape, dtype="<U1")
        for index, colour in enumerate(self.colours):
            y, x = divmod(index, 2)
            out[y::2, x::2] = colour
        return out


def _offset(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key, 0)
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CfaError(f"{key} {value!r}: not a number (0 or 1)")
    if not np.isfinite(value) or value != int(value) or int(value) < 0:
        raise CfaError(f"{key} {value!r}: not a pixel offset (0 or 1)")
    return int(value) % 2


def row_order(header: Mapping[str, Any]) -> str:
    """ROWORDER as 'TOP-DOWN' or 'BOTTOM-UP' (TOP-DOWN when absent); CfaError otherwise."""
    value = header.get("ROWORDER")
    if value in (None, ""):
        return "TOP-DOWN"
    text = str(value).strip().upper()
    if text not in ROW_ORDERS:
        raise CfaError(f"ROWORDER {value!r}: not TOP-DOWN or BOTTOM-UP")
    return text


def pattern_name(header: Mapping[str, Any], profile_pattern: str | None = "header") -> str | None:
    """The pattern the frame's colours follow (BAYERPAT, or the profile's
    ``bayer_pattern`` when it is not 'header'); None for a monochrome frame (no BAYERPAT,
    or the profile says 'none'). CfaError for a pattern that is not 2 x 2 Bayer."""
    if profile_pattern not in (None, "header"):
        return None if profile_pattern == "none" else str(profile_pattern)
    value = header.get("BAYERPAT")
    if value in (None, ""):
        return None
    text = str(value).strip().upper()
    if text in ("", "NONE", "MONO"):
        return None
    if text not in BAYER_PATTERNS:
        raise CfaError(f"BAYERPAT {value!r}: not a 2x2 Bayer pattern ({', '.join(BAYER_PATTERNS)})")
    return text


def raw_layout(
    header: Mapping[str, Any], shape: tuple[int, int], profile_pattern: str | None = "header"
) -> CfaLayout | None:
    """The ``CfaLayout`` of a raw frame's numpy array of ``shape`` (ny, nx), from its
    header (module docstring); None for a monochrome frame."""
    name = pattern_name(header, profile_pattern)
    if name is None:
        return None
    x_off, y_off = _offset(header, "XBAYROFF"), _offset(header, "YBAYROFF")
    first_row = shape[0] - 1 if row_order(header) == "BOTTOM-UP" else 0
    # bottom-up, numpy row iy is sensor row ny - 1 - iy: a 2-periodic pattern only needs
    # the parity of the first row's, as numpy row iy + 1 is one sensor row away either way
    return CfaLayout(name).shifted(first_row + y_off, x_off)


def trimmed_layout(layout: CfaLayout | None, trim_y0: int, trim_x0: int) -> CfaLayout | None:
    """The layout of a raw array's trim starting at numpy row ``trim_y0``, column ``trim_x0``."""
    return None if layout is None else layout.shifted(trim_y0, trim_x0)


def header_cards(
    header: Mapping[str, Any], raw_shape: tuple[int, int], trim_rows: slice, trim_cols: slice, profile_pattern="header"
) -> dict[str, tuple[Any, str]]:
    """The Bayer cards of an output cut from a raw frame (numpy ``trim_rows``,
    ``trim_cols`` of ``raw_shape``): BAYERPAT and ROWORDER as the raw frame said them
    (or the profile's pattern), XBAYROFF / YBAYROFF moved so that they describe the
    output array (module docstring); {} for a monochrome frame."""
    name = pattern_name(header, profile_pattern)
    if name is None:
        return {}
    order = row_order(header)
    x_off = (_offset(header, "XBAYROFF") + trim_cols.start) % 2
    if order == "BOTTOM-UP":  # the rows cut from the end of the array are the sensor's top rows
        y_off = (_offset(header, "YBAYROFF") + raw_shape[0] - trim_rows.stop) % 2
    else:
        y_off = (_offset(header, "YBAYROFF") + trim_rows.start) % 2
    return {
        "BAYERPAT": (name, "CFA pattern from the first pixel, readout order"),
        "XBAYROFF": (x_off, "X offset of the Bayer pattern (this image)"),
        "YBAYROFF": (y_off, "Y offset of the Bayer pattern (this image)"),
        "ROWORDER": (order, "order of the rows in the image array"),
    }


def trimmed(
    header: Mapping[str, Any],
    raw_shape: tuple[int, int],
    trim_slices: tuple[slice, slice],
    profile_pattern: str | None = "header",
) -> tuple[CfaLayout | None, dict[str, tuple[Any, str]]]:
    """The layout of a raw frame's trimmed array (numpy ``trim_slices`` of ``raw_shape``)
    and the Bayer cards its outputs carry (``header_cards``); (None, {}) for a
    monochrome frame. CfaError for a Bayer description that cannot be used."""
    rows, cols = trim_slices
    layout = trimmed_layout(raw_layout(header, raw_shape, profile_pattern), rows.start, cols.start)
    return layout, header_cards(header, raw_shape, rows, cols, profile_pattern)


def binning_problem(layout: CfaLayout | None, binning: str) -> str | None:
    """Why a CFA frame binned ``binning`` ('2x2') cannot be calibrated as a colour frame:
    binning sums neighbouring pixels of different colours, so the result has no Bayer
    pattern left; None for an unbinned or monochrome frame."""
    if layout is None or binning in ("1x1", ""):
        return None
    return (
        f"a colour (Bayer {layout.colours}) frame binned {binning}: binning mixes the CFA colours, "
        "so no pattern is left to calibrate by; take colour frames unbinned (bin after debayering), "
        "or set the camera's bayer_pattern to none to calibrate it as monochrome"
    )


def detect_per_channel(
    layout: CfaLayout | None, image: np.ndarray, detect: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``detect(plane) -> boolean plane`` (hot or dead pixels against a local background)
    run on ``image`` itself for a monochrome frame (``layout`` None), else on each CFA
    channel's pixels (a contiguous copy of ``image[y::2, x::2]``) in turn, so that a pixel
    is compared with neighbours of its own colour; the boolean map of ``image``'s shape."""
    if layout is None:
        return np.asarray(detect(image), dtype=bool)
    found = np.zeros(image.shape, dtype=bool)
    for _, view in layout.channels():
        found[view] = detect(np.ascontiguousarray(image[view]))
    return found


def channel_medians(layout: CfaLayout, image: np.ndarray, region: tuple[slice, slice]) -> dict[str, float]:
    """The median of each CFA channel's finite pixels inside ``region`` (numpy slices of
    ``image``), by channel name ('R', 'G1', 'G2', 'B')."""
    from .stats import median

    rows, cols = region
    sub = image[rows, cols]
    inner = layout.shifted(rows.start or 0, cols.start or 0)
    return {name: float(median(sub[view])) for name, view in inner.channels()}
