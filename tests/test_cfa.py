"""ccdcal.cfa: the Bayer layout of an array from its header (BAYERPAT, XBAYROFF/YBAYROFF,
ROWORDER), kept right through trims of any parity and both row orders; bad descriptions
and binned colour frames refused with the reason; per-colour detection and cosmetic
correction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ccdcal import cfa
from ccdcal.background import dead_pixels
from ccdcal.cosmetic import correct_cosmetic
from ccdcal.products import BADPIX


def sensor_colours(pattern: str, shape: tuple[int, int], x_off: int = 0, y_off: int = 0) -> np.ndarray:
    """Colour letters of a sensor in readout order (row 0 read first), by definition."""
    ny, nx = shape
    out = np.empty(shape, dtype="<U1")
    for y, x in itertools.product(range(ny), range(nx)):
        out[y, x] = pattern[2 * ((y + y_off) % 2) + (x + x_off) % 2]
    return out


@pytest.mark.parametrize("pattern", cfa.BAYER_PATTERNS)
@pytest.mark.parametrize("order", ["TOP-DOWN", "BOTTOM-UP", None])
@pytest.mark.parametrize("offsets", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("ny", [10, 11])
def test_layout_is_the_colour_of_each_stored_pixel(pattern, order, offsets, ny):
    """The layout read from the header gives, for every numpy pixel, the colour the sensor
    had there: bottom-up files store the last sensor row first (odd heights included)."""
    shape = (ny, 8)
    sensor = sensor_colours(pattern, shape, *offsets)
    stored = sensor[::-1] if order == "BOTTOM-UP" else sensor
    header = {"BAYERPAT": pattern, "XBAYROFF": offsets[0], "YBAYROFF": offsets[1]}
    if order:
        header["ROWORDER"] = order
    layout = cfa.raw_layout(header, shape)
    assert (layout.colour_map(shape) == stored).all()


@pytest.mark.parametrize("order", ["TOP-DOWN", "BOTTOM-UP"])
def test_trims_of_every_parity_keep_the_cards_true(order):
    """For every trim start and end parity, the cards written for the trimmed array,
    read back with the same rules, give the colours its pixels had."""
    raw_shape = (12, 14)
    header = {"BAYERPAT": "GRBG", "XBAYROFF": 1, "YBAYROFF": 0, "ROWORDER": order}
    colours = cfa.raw_layout(header, raw_shape).colour_map(raw_shape)
    for y0, y1, x0, x1 in itertools.product((0, 1, 2, 3), (9, 10, 11, 12), (0, 1, 2), (11, 12, 13)):
        rows, cols = slice(y0, y1), slice(x0, x1)
        layout, cards = cfa.trimmed(header, raw_shape, (rows, cols))
        trimmed_shape = (y1 - y0, x1 - x0)
        written = {key: value for key, (value, _) in cards.items()}
        assert written["BAYERPAT"] == "GRBG" and written["ROWORDER"] == order
        assert (cfa.raw_layout(written, trimmed_shape).colour_map(trimmed_shape) == colours[rows, cols]).all()
        assert (layout.colour_map(trimmed_shape) == colours[rows, cols]).all()


def test_monochrome_and_profile_overrides():
    assert cfa.raw_layout({}, (4, 4)) is None
    assert cfa.raw_layout({"BAYERPAT": "NONE"}, (4, 4)) is None
    assert cfa.trimmed({}, (4, 4), (slice(0, 4), slice(0, 4))) == (None, {})
    assert cfa.raw_layout({"BAYERPAT": "RGGB"}, (4, 4), "none") is None
    assert cfa.raw_layout({}, (4, 4), "BGGR").colours == "BGGR"
    assert cfa.raw_layout({"BAYERPAT": "RGGB"}, (4, 4), "GBRG").colours == "GBRG"
    assert cfa.raw_layout({"BAYERPAT": " rggb "}, (4, 4)).colours == "RGGB"


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ({"BAYERPAT": "RGBW"}, "BAYERPAT 'RGBW': not a 2x2 Bayer pattern"),
        ({"BAYERPAT": "XTRANS"}, "not a 2x2 Bayer pattern"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": "one"}, "XBAYROFF 'one': not a number"),
        ({"BAYERPAT": "RGGB", "YBAYROFF": 0.5}, "YBAYROFF 0.5: not a pixel offset"),
        ({"BAYERPAT": "RGGB", "YBAYROFF": -1}, "YBAYROFF -1: not a pixel offset"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": float("nan")}, "XBAYROFF nan: not a pixel offset"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": float("inf")}, "XBAYROFF inf: not a pixel offset"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": True}, "XBAYROFF True: not a number"),
        ({"BAYERPAT": "RG\x01GB"}, "not a 2x2 Bayer pattern"),
        ({"BAYERPAT": "RGGB", "ROWORDER": "LEFT-RIGHT"}, "ROWORDER 'LEFT-RIGHT': not TOP-DOWN or BOTTOM-UP"),
    ],
)
def test_descriptions_that_cannot_be_used_say_which_card(header, says):
    with pytest.raises(cfa.CfaError, match=says.replace("(", r"\(").replace(")", r"\)")):
        cfa.raw_layout(header, (4, 4))


def test_binned_colour_frames_are_refused_with_the_reason():
    layout = cfa.CfaLayout("RGGB")
    assert cfa.binning_problem(layout, "1x1") is None
    assert cfa.binning_problem(None, "2x2") is None
    problem = cfa.binning_problem(layout, "2x2")
    assert "binned 2x2" in problem and "mixes the CFA colours" in problem and "bayer_pattern" in problem


def colour_mosaic(shape=(64, 64), levels=None) -> tuple[np.ndarray, cfa.CfaLayout]:
    layout = cfa.CfaLayout("RGGB")
    levels = levels or {"R": 1.0, "G": 0.7, "B": 0.3}
    letters = layout.colour_map(shape)
    image = np.empty(shape, np.float32)
    for letter, value in levels.items():
        image[letters == letter] = value
    return image, layout


def test_dead_pixels_are_judged_against_their_own_colour():
    """A flat lit 1 : 0.7 : 0.3: against all its neighbours every blue pixel looks dead
    (0.3 < 0.5 x the local level); against blue pixels only, just the truly dead one is."""
    flat, layout = colour_mosaic()
    flat[21, 21] *= 0.2  # a blue pixel at a fifth of its response
    flat[20, 20] *= 0.2  # a red one
    mixed = dead_pixels(flat, fraction=0.5)
    assert mixed[1::2, 1::2].all()  # every blue pixel
    own = cfa.detect_per_channel(layout, flat, lambda plane: dead_pixels(plane, fraction=0.5))
    assert set(zip(*np.nonzero(own))) == {(20, 20), (21, 21)}


def test_channel_medians_by_colour_inside_a_region():
    image, layout = colour_mosaic()
    medians = cfa.channel_medians(layout, image, (slice(1, 40), slice(3, 50)))
    assert medians == pytest.approx({"R": 1.0, "G1": 0.7, "G2": 0.7, "B": 0.3})


def test_cosmetic_correction_fills_from_the_pixels_own_colour():
    """A flagged blue pixel on a colour mosaic gets the blue level back exactly with the
    layout; without it, the median of its red and green neighbours."""
    image, layout = colour_mosaic()
    image[31, 31] = 50.0  # hot, blue
    mask = np.zeros(image.shape, np.uint8)
    mask[31, 31] = BADPIX
    uncert = np.full(image.shape, 0.01, np.float32)
    own = correct_cosmetic(image, uncert, mask, cfa=layout)
    assert own.image[31, 31] == pytest.approx(0.3)
    assert own.replaced == 1
    mixed = correct_cosmetic(image, uncert, mask)
    assert mixed.image[31, 31] == pytest.approx(0.85)  # median of 4 reds (1.0) and 4 greens (0.7)


def test_quality_figures_of_a_colour_light_are_measured_on_its_2x2_cells():
    """A colour mosaic with noise as its UNCERT says: measured pixel to pixel, the colour
    steps look like noise 8 times UNCERT; on 2x2 cells the noise ratio is 1 and the flat
    sky is flat."""
    from ccdcal.qc import light_statistics

    rng = np.random.default_rng(3)
    levels, layout = colour_mosaic((256, 256), {"R": 800.0, "G": 1000.0, "B": 600.0})
    image = (levels + rng.normal(0, 10.0, levels.shape)).astype(np.float32)
    uncert = np.full(image.shape, 10.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mixed = light_statistics(image, uncert, mask)
    assert mixed["noise_ratio"] > 5
    cells = light_statistics(image, uncert, mask, colour=True)
    assert cells["noise_ratio"] == pytest.approx(1.0, abs=0.05)
    assert cells["sky"] == pytest.approx(850.0, abs=1.0)
    assert cells["flatness"] < 0.005


def test_colour_thumbnails_are_in_colour_from_the_2x2_cells(tmp_path):
    """A colour light's thumbnail is an RGB image of its cells (no checkerboard): a red
    star on a grey sky comes out red where it is, the sky grey."""
    from PIL import Image

    from ccdcal.previews import write_thumbnail

    rng = np.random.default_rng(5)
    image, layout = colour_mosaic((512, 512), {"R": 800.0, "G": 1000.0, "B": 600.0})
    image = image + rng.normal(0, 10.0, image.shape).astype(np.float32)
    letters = layout.colour_map(image.shape)
    star = np.zeros(image.shape, bool)
    star[300:320, 100:120] = True
    image[star & (letters == "R")] += 5000.0  # a red star
    path = tmp_path / "thumb.png"
    info = write_thumbnail(image, path, cfa=layout, max_size=128)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (128, 128, 3) and info.block == 4
    row = 127 - 310 // 4  # row 0 at the bottom
    red, green, blue = pixels[row, 110 // 4].astype(int)
    assert red == 255 and green < 200 and blue < 200
    sky = pixels[10:40, 10:40].reshape(-1, 3).astype(float)
    assert np.abs(np.median(sky, axis=0) - np.median(sky)).max() < 25  # grey-ish: each channel its own limits


@pytest.mark.parametrize("how", ["together", "per_channel"])
def test_a_colour_master_flat_is_finished_per_colour(how, camera_profile):
    """finish_flat (ccdcal's masters and PixInsight imports): a flat lit 1 : 0.7 : 0.3
    with one dead blue pixel; per_channel gives each channel median 1 (FLATNR* the
    levels), together one median; either way the one dead pixel is the only BADPIX (a
    blue pixel judged against its red and green neighbours would look dead too)."""
    from ccdcal.master_recipes import finish_flat

    rng = np.random.default_rng(7)
    flat, layout = colour_mosaic((128, 128))
    flat = (flat * 20000.0 * (1 + 0.01 * rng.normal(size=flat.shape))).astype(np.float32)
    flat[41, 41] *= 0.1
    variance = np.full(flat.shape, 100.0, np.float32)
    camera = camera_profile(flat={"cfa": how})
    mask, cards = finish_flat(flat, variance, camera, layout)
    assert set(zip(*np.nonzero(mask & BADPIX))) == {(41, 41)}
    assert cards["FLATCFA"][0] == how
    medians = {name: np.median(flat[view]) for name, view in layout.channels()}
    if how == "per_channel":
        assert medians == pytest.approx({"R": 1.0, "G1": 1.0, "G2": 1.0, "B": 1.0}, abs=1e-6)
        assert cards["FLATNRB"][0] / cards["FLATNRR"][0] == pytest.approx(0.3, rel=0.01)
        assert variance[1, 1] == pytest.approx(100.0 / cards["FLATNRB"][0] ** 2, rel=1e-5)
    else:
        assert np.median(flat) == pytest.approx(1.0, abs=1e-6)
        assert medians["B"] / medians["R"] == pytest.approx(0.3, rel=0.01)
        assert "FLATNRR" not in cards
