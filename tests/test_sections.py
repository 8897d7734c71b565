"""FITS sections ([x1:x2,y1:y2], 1-based inclusive, x first) against numpy slices."""

from __future__ import annotations

import numpy as np
import pytest

from ccdcal.sections import Section


def test_parse_fits_numbers_and_numpy_slices():
    section = Section.parse("[1029:1064,1:1024]")
    assert (section.x1, section.x2, section.y1, section.y2) == (1029, 1064, 1, 1024)
    rows, cols = section.slices
    assert (rows.start, rows.stop) == (0, 1024)
    assert (cols.start, cols.stop) == (1028, 1064)
    assert section.shape == (1024, 36)
    assert str(section) == "[1029:1064,1:1024]"


def test_slices_select_the_documented_pixels():
    # pixel value encodes its FITS coordinates: 1000 * x + y (both 1-based)
    ny, nx = 7, 9
    y, x = np.mgrid[1 : ny + 1, 1 : nx + 1]
    data = 1000 * x + y
    cut = data[Section.parse("[3:5,2:6]").slices]
    assert cut.shape == (5, 3)
    assert cut[0, 0] == 3002  # first pixel is column 3, row 2
    assert cut[-1, -1] == 5006  # last pixel is column 5, row 6 (inclusive)


def test_whitespace_is_tolerated():
    assert Section.parse("  [ 1 : 20 , 3 : 4 ] ") == Section(1, 20, 3, 4)


def test_reversed_ranges_are_normalised():
    assert Section.parse("[64:1,100:51]") == Section(1, 64, 51, 100)
    assert Section.parse("[64:1,100:51]").slices == (slice(50, 100), slice(0, 64))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1:10,1:10",
        "[1:10]",
        "[1:10,1:10",
        "[a:10,1:10]",
        "[1:10;1:10]",
        "[1.5:10,1:10]",
        "[-1:10,1:10]",
        "[1:10,1:10,1:2]",
    ],
)
def test_bad_strings_raise_naming_the_text(text):
    with pytest.raises(ValueError) as info:
        Section.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["[0:10,1:10]", "[1:10,0:9]", "[0:0,0:0]"])
def test_zero_based_input_is_rejected(text):
    with pytest.raises(ValueError, match="1-based") as info:
        Section.parse(text)
    assert repr(text) in str(info.value)


def test_check_inside_accepts_exact_fit_and_names_an_outside_section():
    Section.parse("[1:483,1:4099]").check_inside((4190, 483))  # exactly fits: no error
    with pytest.raises(ValueError) as info:
        Section.parse("[1:484,1:10]").check_inside((4190, 483), "trim section")
    message = str(info.value)
    assert "trim section" in message and "[1:484,1:10]" in message
    assert "483x4190" in message  # NAXIS1 x NAXIS2
    with pytest.raises(ValueError, match=r"\[1:10,4100:4191\]"):
        Section.parse("[1:10,4100:4191]").check_inside((4190, 483))


def test_full_and_from_slices_round_trip():
    assert Section.full((20, 30)) == Section(1, 30, 1, 20)
    section = Section.parse("[5:12,3:9]")
    assert Section.from_slices(*section.slices) == section


@pytest.mark.parametrize(
    "section, problem",
    [
        (Section.from_slices(slice(0, 10), slice(-5, 20)), "lies outside"),  # a negative 0-based start
        (Section(1, 10, 0, 5), "lies outside"),
        (Section.from_slices(slice(0, 10), slice(20, 20)), "is empty"),  # xmax == xmin
        (Section.from_slices(slice(10, 5), slice(0, 20)), "is empty"),  # ymax < ymin
    ],
)
def test_check_inside_refuses_sections_before_the_first_pixel_and_empty_ones(section, problem):
    """A section starting before pixel 1 (a negative numpy index would count from the far
    edge) or holding no pixel is refused too, named as the user gave it when told."""
    given = {"xmin": -5, "xmax": 20, "ymin": 0, "ymax": 10}
    with pytest.raises(ValueError) as info:
        section.check_inside((4190, 483), "image_area", given=given)
    message = str(info.value)
    assert message.startswith(f"image_area {given} ") and problem in message and "483x4190" in message
