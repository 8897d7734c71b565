"""FITS image sections.

FITS sections are written ``[x1:x2,y1:y2]``: 1-based, inclusive, x (column) first.
numpy indexes ``data[y, x]``: 0-based, end-exclusive, row first. So the FITS section
``[1029:1064,1:1024]`` is ``data[0:1024, 1028:1064]``.

A ``Section`` always holds the FITS numbers; ``.slices`` gives the numpy view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


@dataclass(frozen=True, order=True)
class Section:
    """A rectangle of a 2-D image in FITS convention (1-based, inclusive)."""

    x1: int
    x2: int
    y1: int
    y2: int

    @classmethod
    def parse(cls, text: str) -> Section:
        """Parse ``'[x1:x2,y1:y2]'``; reversed ranges (x2 < x1) are normalised."""
        match = _SECTION.match(str(text))
        if not match:
            raise ValueError(f"not a FITS section '[x1:x2,y1:y2]': {text!r}")
        x1, x2, y1, y2 = (int(v) for v in match.groups())
        if min(x1, x2, y1, y2) < 1:
            raise ValueError(f"FITS sections are 1-based, got {text!r}")
        return cls(min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2))

    @classmethod
    def from_slices(cls, rows: slice, cols: slice) -> Section:
        """The section covering ``data[rows, cols]`` (explicit start/stop slices)."""
        return cls(cols.start + 1, cols.stop, rows.start + 1, rows.stop)

    @classmethod
    def full(cls, shape: tuple[int, int]) -> Section:
        """The whole of an image of numpy ``shape`` (ny, nx)."""
        return cls(1, shape[1], 1, shape[0])

    @property
    def slices(self) -> tuple[slice, slice]:
        """numpy ``(rows, cols)`` slices."""
        return slice(self.y1 - 1, self.y2), slice(self.x1 - 1, self.x2)

    @property
    def shape(self) -> tuple[int, int]:
        """numpy shape (ny, nx)."""
        return self.y2 - self.y1 + 1, self.x2 - self.x1 + 1

    def check_inside(self, shape: tuple[int, int], what: str = "section", given: object = None) -> None:
        """Raise ValueError naming the section when it is empty or does not lie wholly in
        an image of numpy ``shape`` (ny, nx). ``given``: the section as the user wrote it
        (a dict of 0-based bounds, say), named in the message instead of the FITS form."""
        named = self if given is None else given
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError(f"{what} {named} is empty; the image is {shape[1]}x{shape[0]} (NAXIS1xNAXIS2)")
        if self.x1 < 1 or self.y1 < 1 or self.x2 > shape[1] or self.y2 > shape[0]:
            raise ValueError(f"{what} {named} lies outside the {shape[1]}x{shape[0]} (NAXIS1xNAXIS2) image")

    def __str__(self) -> str:
        return f"[{self.x1}:{self.x2},{self.y1}:{self.y2}]"
