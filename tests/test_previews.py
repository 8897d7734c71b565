"""Previews, histograms and plots for the night report: sizes, stretch, determinism, empty input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccdcal import previews
from ccdcal.previews import (
    PixelHistogram,
    block_mean,
    draw_histogram,
    pixel_histogram,
    plot_dark_current,
    plot_flat_levels,
    plot_noise_vs_uncert,
    plot_overscan_levels,
    plot_photon_transfer,
    plot_trends,
    write_preview,
)
from ccdcal.writers import write_bytes_atomic

SRC = Path(__file__).resolve().parents[1] / "src"


def png(path: Path) -> Image.Image:
    """The decoded PNG (fully loaded: a truncated file raises here)."""
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def sky(shape=(512, 512), level=1000.0, noise=10.0, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).normal(level, noise, shape).astype(np.float32)


# ------------------------------------------------------------------ block mean
def reference_block_mean(data, block, mask=None):
    """Slow and obvious: the mean of the finite unmasked pixels of each block, NaN if none."""
    ny, nx = data.shape
    out = np.full((-(-ny // block), -(-nx // block)), np.nan)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            tile = data[i * block : (i + 1) * block, j * block : (j + 1) * block].astype(np.float64)
            good = np.isfinite(tile)
            if mask is not None:
                good &= mask[i * block : (i + 1) * block, j * block : (j + 1) * block] == 0
            if good.any():
                out[i, j] = tile[good].mean()
    return out


@pytest.mark.parametrize("shape, block", [((12, 18), 3), ((13, 17), 4), ((5, 5), 1), ((9, 40), 8)])
def test_block_mean_ignores_nan_inf_and_masked_pixels(shape, block):
    rng = np.random.default_rng(7)
    data = rng.normal(100, 5, shape).astype(np.float32)
    data[0, :3] = np.nan
    data[:block, :block] = np.nan  # a whole block without a good pixel
    data[-1, -1] = np.inf
    mask = (rng.random(shape) < 0.2).astype(np.uint8)
    for m in (None, mask):
        got = block_mean(data, block, m)
        want = reference_block_mean(data, block, m)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-6)
        assert np.isnan(got[0, 0])


def test_block_mean_leaves_the_input_untouched():
    data = sky((64, 64))
    data[3, 3] = np.inf
    mask = np.zeros(data.shape, bool)
    mask[10:20, 10:20] = True
    before = data.copy()
    block_mean(data, 8, mask)
    np.testing.assert_array_equal(data, before)


# ------------------------------------------------------------------ preview
@pytest.mark.parametrize(
    "shape, max_size, size, block",
    [
        ((4096, 4096), 512, (512, 512), 8),
        ((300, 1000), 512, (500, 150), 2),  # PIL's size is (width, height)
        ((10, 4100), 512, (456, 2), 9),  # ceil(4100 / 9) = 456: the padded edge block kept
        ((200, 300), 512, (300, 200), 1),  # small enough: pixel for pixel
    ],
)
def test_preview_size_is_the_block_mean_of_the_longest_side(tmp_path, shape, max_size, size, block):
    info = write_preview(sky(shape), tmp_path / "p.png", max_size=max_size)
    image = png(tmp_path / "p.png")
    assert image.mode == "L"
    assert image.size == size == (info.width, info.height)
    assert info.block == block
    assert max(image.size) <= max_size


def test_preview_stretch_sky_grey_nan_and_masked_black_star_white_row_zero_at_bottom(tmp_path):
    data = sky((256, 256))
    data[100:110, 20:40] = np.nan
    mask = np.zeros(data.shape, np.uint8)
    mask[200:220, 150:170] = 4  # any nonzero value is bad
    data[200:220, 150:170] = 0.0  # masked pixels' values are ignored: would be black anyway
    data[50:53, 60:63] = 30_000.0  # a star
    data[0:4, :] = 1500.0  # the first rows, bright: drawn at the bottom of the PNG
    info = write_preview(data, tmp_path / "p.png", mask=mask)
    pixels = np.asarray(png(tmp_path / "p.png"))[::-1]  # back to FITS row order
    assert info.block == 1
    assert 1000 - 80 < info.black_adu < 1000 - 20 and 1000 + 20 < info.white_adu < 1000 + 80  # N(1000, 10)
    # ZScale's range is about +-6 sigma, cut at the sampled pixels' extremes: the bright rows
    # leave the upper limit at +6 sigma, the lower one is the faintest sample (-3 sigma).
    sky_grey = np.median(pixels[120:190, 100:240])
    expected_grey = 255 * (1000 - info.black_adu) / (info.white_adu - info.black_adu)
    assert 60 <= sky_grey <= 160 and sky_grey == pytest.approx(expected_grey, abs=3)
    assert 15 < pixels[120:190, 100:240].std() < 80  # the noise is visible, not saturated
    assert (pixels[100:110, 20:40] == 0).all()
    assert (pixels[200:220, 150:170] == 0).all()
    assert (pixels[50:53, 60:63] == 255).all()
    assert (pixels[0:4] == 255).all()
    assert np.median(pixels[-4:]) < 200  # the top rows are ordinary sky


def test_preview_of_a_downsampled_image_keeps_partly_masked_blocks(tmp_path):
    data = sky((1024, 1024))
    mask = np.zeros(data.shape, np.uint8)
    mask[0:2, 0:2] = 1  # 4 of the 16 pixels of the first 4x4 block
    mask[4:8, 4:8] = 1  # the whole second block on the diagonal
    data[0:2, 0:2] = 1e6  # would make the block white if it were counted
    info = write_preview(data, tmp_path / "p.png", mask=mask, max_size=256)
    pixels = np.asarray(png(tmp_path / "p.png"))[::-1]
    assert info.block == 4
    assert pixels[1, 1] == 0  # fully masked: black
    assert 0 < pixels[0, 0] < 255  # the rest of its pixels: sky


def test_preview_of_constant_and_of_empty_images(tmp_path):
    write_preview(np.full((64, 64), 7.0), tmp_path / "constant.png")
    assert set(np.unique(np.asarray(png(tmp_path / "constant.png")))) == {128}
    info = write_preview(np.full((64, 32), np.nan), tmp_path / "nan.png")
    assert png(tmp_path / "nan.png").size == (32, 64)
    assert not np.asarray(png(tmp_path / "nan.png")).any()
    assert np.isnan(info.black_adu)
    write_preview(np.arange(64 * 64, dtype=np.int32).reshape(64, 64), tmp_path / "ints.png")
    assert np.asarray(png(tmp_path / "ints.png")).std() > 50  # integer images are stretched too


def test_preview_rejects_what_is_not_an_image(tmp_path):
    with pytest.raises(ValueError, match="mask shape"):
        write_preview(sky((64, 64)), tmp_path / "p.png", mask=np.zeros((64, 63), np.uint8))
    with pytest.raises(ValueError, match=r"image \[y, x\]"):
        write_preview(np.zeros((2, 3, 4)), tmp_path / "p.png")
    with pytest.raises(ValueError, match="max_size"):
        write_preview(sky((64, 64)), tmp_path / "p.png", max_size=0)
    assert list(tmp_path.iterdir()) == []


def test_preview_is_byte_identical_when_rewritten(tmp_path):
    data = sky((2048, 1536))
    data[::97, ::89] = np.nan
    mask = np.zeros(data.shape, np.uint8)
    mask[500:600] = 1
    write_preview(data, tmp_path / "a.png", mask=mask)
    first = (tmp_path / "a.png").read_bytes()
    write_preview(data.copy(), tmp_path / "a.png", mask=mask.copy())
    write_preview(data, tmp_path / "b.png", mask=mask)
    assert (tmp_path / "a.png").read_bytes() == first == (tmp_path / "b.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary left


def test_thumbnail_is_a_deterministic_jpeg_of_the_same_stretch_as_the_png(tmp_path):
    data = sky((2048, 2048))
    data[1000:1010, 1000:1010] = 5000.0  # a star: white in both
    mask = np.zeros(data.shape, np.uint8)
    mask[:64, :64] = 1  # masked: black in both
    info = previews.write_thumbnail(data, tmp_path / "a.jpg", mask)
    previews.write_thumbnail(data.copy(), tmp_path / "b.jpg", mask.copy())
    assert (tmp_path / "a.jpg").read_bytes() == (tmp_path / "b.jpg").read_bytes()
    previews.write_thumbnail(data, tmp_path / "a.png", mask)
    decoded = Image.open(tmp_path / "a.jpg")
    decoded.load()
    assert decoded.format == "JPEG" and decoded.mode == "L"
    jpeg, lossless = np.asarray(decoded).astype(int), np.asarray(png(tmp_path / "a.png")).astype(int)
    assert jpeg.shape == lossless.shape == (256, 256) and (info.width, info.height) == (256, 256)
    assert abs(jpeg.mean() - lossless.mean()) < 1.0  # the same stretch, JPEG's error averages out
    assert np.abs(jpeg - lossless).mean() < 6.0  # q90: a few grey levels on noise
    assert jpeg[-4:, :4].max() < 20 and jpeg[-126, 126] > 200  # masked corner black, star white (row 0 at the bottom)


# ------------------------------------------------------------------ histogram
def test_histogram_size_statistics_and_outliers(tmp_path):
    data = sky((600, 500), level=1000.0, noise=10.0)
    data[0, :30] = 5000.0  # above median + 8 sigma
    data[1, :20] = -100.0  # below
    data[2, :10] = np.nan
    mask = np.zeros(data.shape, np.uint8)
    mask[3, :40] = 1
    info = pixel_histogram(data, mask=mask)
    draw_histogram(info, tmp_path / "h.png", "bias")
    assert png(tmp_path / "h.png").size == (640, 400)
    assert sum(info.counts) == info.count - info.below - info.above
    assert len(info.edges) == len(info.counts) + 1
    assert info.count == 600 * 500 - 10 - 40
    assert (info.below, info.above) == (20, 30)
    assert info.median == pytest.approx(1000.0, abs=0.2)
    assert info.sigma == pytest.approx(10.0, rel=0.02)


def test_histogram_is_byte_identical_through_json_and_empty_input_gives_a_no_data_figure(tmp_path):
    data = np.rint(sky((300, 300)))  # whole numbers: the integer binning
    histogram = pixel_histogram(data)
    assert np.diff(histogram.edges) == pytest.approx(
        np.ones(len(histogram.counts)) * (histogram.edges[1] - histogram.edges[0])
    )
    assert all(e % 1 == 0.5 for e in histogram.edges)  # whole units centred on integers
    draw_histogram(histogram, tmp_path / "a.png", "raw bias", unit="ADU")
    carried = PixelHistogram.from_json(json.loads(json.dumps(histogram.as_json())))  # as a master's report holds it
    assert carried == histogram
    draw_histogram(carried, tmp_path / "b.png", "raw bias", unit="ADU")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    draw_histogram(histogram, tmp_path / "e.png", "raw bias", unit="e-")
    assert (tmp_path / "e.png").read_bytes() != (tmp_path / "a.png").read_bytes()  # the unit is drawn

    info = pixel_histogram(np.full((10, 10), np.nan))
    assert info.count == 0 and np.isnan(info.median)
    as_json = json.dumps(info.as_json(), allow_nan=False)  # strict JSON: NaN is null
    assert np.isnan(PixelHistogram.from_json(json.loads(as_json)).sigma)
    draw_histogram(info, tmp_path / "empty.png", "nothing")
    assert png(tmp_path / "empty.png").size == (640, 400)
    everything_masked = np.ones((300, 300), np.uint8)
    draw_histogram(pixel_histogram(data, mask=everything_masked), tmp_path / "masked.png", "nothing")
    assert (tmp_path / "masked.png").read_bytes() == (tmp_path / "empty.png").read_bytes()


def test_histogram_of_a_constant_image(tmp_path):
    info = pixel_histogram(np.full((50, 50), 3.25, np.float32))
    draw_histogram(info, tmp_path / "h.png", "flat")
    assert (info.median, info.sigma, info.below, info.above) == (3.25, 0.0, 0, 0)
    assert png(tmp_path / "h.png").size == (640, 400)


# ------------------------------------------------------------------ plots
PLOTS = {
    "overscan": (
        lambda path, empty: plot_overscan_levels(
            {}
            if empty
            else {
                "amp A": [(10.0, 1000.2), (10.5, 1000.9), (11.25, 1001.4)],
                "amp B": [(10.2, 990.1), (11.0, float("nan")), (11.3, 991.0)],
            },
            path,
        ),
        (640, 400),
    ),
    "noise": (
        lambda path, empty: plot_noise_vs_uncert(
            []
            if empty
            else [(f"light_{i:03d}.fits", 1.0 + 0.02 * np.sin(i)) for i in range(30)]
            + [("hot.fits", 1.3), ("none.fits", None)],
            path,
        ),
        (640, 400),
    ),
    "dark": (
        lambda path, empty: plot_dark_current(
            []
            if empty
            else [
                (60, -10.0, 0.011, "cam1"),
                (300, -10.1, 0.012, "cam1"),
                (600, None, 0.05, "cam2"),
                (600, -5.0, 0.04, "cam2"),
            ],
            path,
        ),
        (640, 400),
    ),
    "flats": (
        lambda path, empty: plot_flat_levels(
            {} if empty else {"R": [21000, 22000, 23500], "V": [30500], "Ha": []}, path, saturation=60000
        ),
        (640, 400),
    ),
    "photon_transfer": (
        lambda path, empty: plot_photon_transfer(
            []
            if empty
            else [
                (1e3, 640.0, 25.0),
                (8e3, 4950.0, 120.0),
                (2e4, 12590.0, 300.0),
                (3e4, 18750.0, None),
                (4e4, float("nan"), 500.0),
            ],
            1.6,
            path,
        ),
        (640, 400),
    ),
    "trends": (
        lambda path, empty: plot_trends(
            {}
            if empty
            else {
                "bias level (ADU)": [("2026-01-02", 1001.0), ("2026-01-01", 1000.0)],
                "dark current (e-/s)": [("2026-01-01", 0.01), ("2026-01-09", 0.012)],
                "hot pixels": [],
            },
            path,
        ),
        (640, 420),
    ),  # three panels: 140 px each
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_size_determinism_and_no_data(tmp_path, name):
    draw, size = PLOTS[name]
    draw(tmp_path / "a.png", False)
    draw(tmp_path / "b.png", False)
    draw(tmp_path / "empty.png", True)
    assert png(tmp_path / "a.png").size == size
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"matplotlib" not in (tmp_path / "a.png").read_bytes()  # no software version in the file
    empty = png(tmp_path / "empty.png")
    assert empty.size == (640, 400)
    assert (tmp_path / "empty.png").read_bytes() != (tmp_path / "a.png").read_bytes()
    # a figure with data draws more than the 'no data' one
    ink = {key: (np.asarray(png(tmp_path / f"{key}.png").convert("L")) < 200).mean() for key in ("a", "empty")}
    assert ink["a"] > 2 * ink["empty"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "empty.png"]


def test_plots_with_only_unusable_values_are_no_data_figures(tmp_path):
    plot_overscan_levels({"amp A": [(0.0, float("nan"))]}, tmp_path / "overscan.png")
    plot_overscan_levels({}, tmp_path / "overscan_empty.png")
    assert (tmp_path / "overscan.png").read_bytes() == (tmp_path / "overscan_empty.png").read_bytes()
    plot_trends({"bias level (ADU)": [("2026-01-01", None)]}, tmp_path / "trends.png")
    plot_trends({}, tmp_path / "trends_empty.png")
    assert (tmp_path / "trends.png").read_bytes() == (tmp_path / "trends_empty.png").read_bytes()


def test_photon_transfer_line_is_drawn_only_with_a_gain(tmp_path):
    points = [(1000.0, 625.0, 20.0), (20000.0, 12500.0, 300.0)]
    plot_photon_transfer(points, 1.6, tmp_path / "gain.png")
    plot_photon_transfer(points, None, tmp_path / "nogain.png")
    red = {}
    for key in ("gain", "nogain"):
        rgb = np.asarray(png(tmp_path / f"{key}.png").convert("RGB")).astype(int)
        red[key] = ((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum()  # C3 is red
    assert red["gain"] > 200 and red["nogain"] == 0


def test_figures_are_identical_from_another_process_and_pyplot_is_not_loaded(tmp_path):
    data = sky((200, 300))
    draw_histogram(pixel_histogram(data), tmp_path / "h.png", "sky")
    plot_flat_levels({"R": [1.0, 2.0], "V": [3.0]}, tmp_path / "f.png", saturation=4.0)
    write_preview(data, tmp_path / "p.png", max_size=100)
    script = (
        "import sys, numpy as np\n"
        "from ccdcal.previews import draw_histogram, pixel_histogram, plot_flat_levels, write_preview\n"
        "data = np.random.default_rng(1).normal(1000.0, 10.0, (200, 300)).astype(np.float32)\n"
        "out = sys.argv[1]\n"
        "draw_histogram(pixel_histogram(data), out + '/h.png', 'sky')\n"
        "plot_flat_levels({'R': [1.0, 2.0], 'V': [3.0]}, out + '/f.png', saturation=4.0)\n"
        "write_preview(data, out + '/p.png', max_size=100)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    other = tmp_path / "other"
    other.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script, str(other)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("h.png", "f.png", "p.png"):
        assert (other / name).read_bytes() == (tmp_path / name).read_bytes(), name


# ------------------------------------------------------------------ atomic writes
def test_write_bytes_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "figure.png"
    write_bytes_atomic(b"first", target)  # the folder is made
    assert target.read_bytes() == b"first"

    def failing_replace(src, dst):
        raise OSError("simulated failure at the rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        write_bytes_atomic(b"second", target)
    with pytest.raises(OSError, match="simulated"):
        previews.plot_flat_levels({"R": [1.0]}, target)
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]  # no temporary file left
