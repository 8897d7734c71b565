"""Tests for ccdcal.background: local background (photutils Background2D) and its uses
(sky-flat star rejection, hot and dead pixels), on simulated frames with known truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ccdcal.background import (
    Background,
    BackgroundSpec,
    PrecisionSigmaClip,
    _median_filter_grid,
    cell_shape,
    dead_pixels,
    estimate_background,
    hot_pixels,
    reject_sky_flat_stars,
)

FWHM = 3.0
SIG = FWHM / 2.3548


# ----------------------------------------------------------------------------- helpers


def add_stars(img, ys, xs, peaks, sigma=SIG):
    """Add circular Gaussian stars (peak values ``peaks``) to ``img`` in place."""
    ny, nx = img.shape
    r = int(np.ceil(7 * sigma)) + 1
    for y, x, a in zip(ys, xs, peaks):
        y0, x0 = int(round(y)), int(round(x))
        sl = (slice(max(0, y0 - r), min(ny, y0 + r + 1)), slice(max(0, x0 - r), min(nx, x0 + r + 1)))
        yy, xx = np.mgrid[sl]
        img[sl] += a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma * sigma))
    return img


def random_stars(rng, shape, n, peaks=(500.0, 20000.0), margin=10):
    ys = rng.uniform(margin, shape[0] - margin, n)
    xs = rng.uniform(margin, shape[1] - margin, n)
    amps = np.exp(rng.uniform(np.log(peaks[0]), np.log(peaks[1]), n))
    return ys, xs, amps


def star_image(shape, ys, xs, peaks):
    return add_stars(np.zeros(shape), ys, xs, peaks)


def sky_with_glow(shape, base=1000.0, gx=0.3, gy=-0.2, glow=200.0, scale=150.0):
    """A linear gradient plus an exponential amplifier glow in the top-right corner."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    r = np.hypot(y - (shape[0] - 1), x - (shape[1] - 1))
    return base + gx * x + gy * y + glow * np.exp(-r / scale)


def vignetted(shape, level=20000.0, depth=0.45):
    """A vignetted flat: ``level`` at the centre, (1 - depth) * level in the corners."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    r2 = (y - (shape[0] - 1) / 2) ** 2 + (x - (shape[1] - 1) / 2) ** 2
    return level * (1 - depth * r2 / r2.max())


def inner(a, margin):
    return a[margin:-margin, margin:-margin]


# ----------------------------------------------------------------------------- spec


def test_spec_defaults_and_from_dict():
    spec = BackgroundSpec.from_dict(
        {"mesh": 128, "estimator": "Mode", "interpolation": "IDW", "smooth": 5, "precision": 0.05, "sigma_upper": None}
    )
    assert spec == BackgroundSpec(mesh=128, estimator="mode", interpolation="idw", smooth=5, precision=0.05)
    assert BackgroundSpec.from_dict(None) == BackgroundSpec()
    assert BackgroundSpec.from_dict(spec) is spec


@pytest.mark.parametrize(
    "key, value",
    [
        ("mesh", 0),
        ("mesh", 2.5),
        ("mesh", "64"),
        ("mesh", True),
        ("sigma_upper", 0),
        ("sigma_upper", -1.0),
        ("sigma_upper", float("nan")),
        ("sigma_lower", "x"),
        ("precision", -0.1),
        ("precision", 1.0),
        ("maxiters", 0),
        ("estimator", "biweight"),
        ("estimator", 3),
        ("smooth", 2),
        ("smooth", 0),
        ("interpolation", "linear"),
    ],
)
def test_bad_spec_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=repr(key)):
        BackgroundSpec.from_dict({key: value})
    with pytest.raises(ValueError, match=repr(key)):
        BackgroundSpec(**{key: value})


def test_unknown_spec_key_is_named():
    with pytest.raises(ValueError, match="'box_size'"):
        BackgroundSpec.from_dict({"box_size": 64})
    with pytest.raises(ValueError, match="mapping"):
        BackgroundSpec.from_dict([("mesh", 64)])


# ----------------------------------------------------------------------------- estimate_background


@pytest.mark.parametrize("interpolation", ["zoom", "idw"])
@pytest.mark.parametrize("estimator", ["mean", "median", "mode"])
def test_recovers_gradient_and_glow_under_noise_and_stars(estimator, interpolation):
    rng = np.random.default_rng(11)
    shape, sigma, mesh = (448, 576), 10.0, 64
    truth = sky_with_glow(shape)
    img = truth + rng.normal(0.0, sigma, shape)
    add_stars(img, *random_stars(rng, shape, 40, peaks=(200.0, 20000.0)))
    img = img.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no photutils deprecation or astropy warning leaks out
        bg = estimate_background(img, BackgroundSpec(mesh=mesh, estimator=estimator, interpolation=interpolation))
    assert isinstance(bg, Background)
    assert bg.level.dtype == np.float32 and bg.rms.dtype == np.float32
    assert bg.level.shape == shape and bg.rms.shape == shape
    err = (bg.level - truth) / sigma
    if interpolation == "zoom":
        # away from the glow: a small fraction of the noise, up to the edges (where the
        # extrapolation of the grid doubles the small noise of the cell values)
        assert np.abs(err[:, : shape[1] // 2]).max() < 0.3
        # next to the glow the cell statistic of a curved background is off by a little
        assert np.abs(inner(err, mesh)).max() < 0.5
        # everywhere, the glow corner included (the map is extrapolated beyond the centres)
        assert np.abs(err).max() < 1.5
    else:
        # photutils' IDW (power 1, 10 nearest cells) blurs gradients between the cell
        # centres: ~0.5 sigma for this 19 ADU/cell ramp, up to ~2.5 sigma near the glow,
        # and is flat beyond the outer cell centres (11 sigma short in the glow corner)
        assert np.percentile(np.abs(inner(err, mesh)), 99) < 1.0
        assert np.abs(inner(err, mesh)).max() < 3.0
        assert np.abs(err).max() < 15
    # at the cell centres (the glow corner cell: its mean differs from its centre value)
    assert np.abs(err[mesh // 2 :: mesh, mesh // 2 :: mesh]).max() < 1.5
    assert abs(np.median(err)) < 0.05
    # rms: the noise (3-sigma clipped: 0.987 sigma), not the spread of the gradient
    # within a cell (0.3 * 64 / sqrt(12) = 5.5 ADU, which would make it 1.14 sigma)
    # (with IDW, its misfit of the ramp between cell centres adds a little)
    assert 0.96 * sigma < np.median(bg.rms) < (1.03 if interpolation == "zoom" else 1.1) * sigma


def test_estimators_on_a_skewed_sky():
    """mean > median > mode on a sky with a positive tail; mode = 2.5 median - 1.5 mean
    cell by cell (same clipped pixels)."""
    img = skewed_cells(seed=3, n_cells=256 * 4, n=64).reshape(256, 256).astype(np.float32)
    mesh = {
        e: estimate_background(img, BackgroundSpec(estimator=e, smooth=1)).level_mesh.astype(np.float64)
        for e in ("mean", "median", "mode")
    }
    assert (mesh["mean"] > mesh["median"]).all() and (mesh["median"] > mesh["mode"]).all()
    np.testing.assert_allclose(mesh["mode"], 2.5 * mesh["median"] - 1.5 * mesh["mean"], rtol=0, atol=1e-3)


def test_smooth_suppresses_the_overestimate_of_a_very_bright_star():
    rng = np.random.default_rng(3)
    shape, sigma = (512, 512), 10.0
    img = 1000.0 + rng.normal(0.0, sigma, shape)
    # a very bright star with extended wings in the middle of a cell
    add_stars(img, [224.0], [288.0], [40000.0], sigma=9.0)
    img = img.astype(np.float32)
    plain = estimate_background(img, BackgroundSpec(smooth=1))
    smooth = estimate_background(img, BackgroundSpec(smooth=3))
    assert plain.level[224, 288] - 1000.0 > 5 * sigma  # the star's cell is overestimated
    assert abs(smooth.level[224, 288] - 1000.0) < 0.3 * sigma
    # elsewhere they agree
    far = (slice(0, 100), slice(0, 100))
    assert np.abs(plain.level[far] - smooth.level[far]).max() < 0.2 * sigma


def test_smooth_keeps_gradients_and_glow_at_the_edges():
    """The grid filter must not pull edge cells towards the inside (photutils' own
    NaN-padded 2-D filter does: a linear ramp loses half a cell's change at the edges)."""
    ramp = np.add.outer(np.arange(7) * 20.0, np.arange(9) * 30.0)
    np.testing.assert_allclose(_median_filter_grid(ramp, (3, 3)), ramp)
    np.testing.assert_allclose(_median_filter_grid(ramp, (5, 5)), ramp)
    y, x = np.mgrid[0:7, 0:9]
    glow = 50 + 400 * np.exp(-np.hypot(y, x) / 1.5)
    np.testing.assert_allclose(_median_filter_grid(glow, (3, 3)), glow)
    spike = np.full((7, 9), 10.0)
    spike[3, 4] = 500.0
    spike[0, 6] = 500.0  # on an edge, not in a corner
    np.testing.assert_allclose(_median_filter_grid(spike, (3, 3)), 10.0)
    np.testing.assert_allclose(_median_filter_grid(spike, (1, 1)), spike)


def test_the_grid_filter_is_the_edge_preserving_one():
    """Background2D's _filter_grid hook (photutils 3.0) is the one that runs: a change
    in photutils that bypasses it must fail here."""
    rng = np.random.default_rng(9)
    img = sky_with_glow((320, 384), glow=300.0, scale=60.0) + rng.normal(0, 5.0, (320, 384))
    img = img.astype(np.float32)
    raw = estimate_background(img, BackgroundSpec(smooth=1))
    for size in (3, 5):
        smooth = estimate_background(img, BackgroundSpec(smooth=size))
        np.testing.assert_allclose(
            smooth.level_mesh, _median_filter_grid(raw.level_mesh, (size, size)), rtol=0, atol=1e-3
        )
        assert not np.allclose(smooth.level_mesh, raw.level_mesh, rtol=0, atol=1e-3)


def test_not_a_multiple_of_the_mesh_and_nan_pixels():
    rng = np.random.default_rng(5)
    shape, sigma = (300, 437), 5.0
    truth = sky_with_glow(shape, glow=0.0)
    img = (truth + rng.normal(0.0, sigma, shape)).astype(np.float32)
    img[100:140, 200:260] = np.nan  # a blank region
    img[rng.random(shape) < 0.01] = np.nan  # scattered bad pixels
    img[:, -1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # non-finite pixels are expected: no warning
        bg = estimate_background(img, BackgroundSpec(mesh=64))
    by, bx = bg.cell_shape
    assert bg.cell_shape == cell_shape(shape, 64)
    # the cells tile each axis exactly or leave at least half a cell at the far edge
    for n, b in zip(shape, (by, bx)):
        assert 48 <= b <= 80 and (n % b == 0 or 2 * (n % b) >= b)
    assert np.isfinite(bg.level).all() and np.isfinite(bg.rms).all()
    err = (bg.level - truth) / sigma
    # the statistic of a cell 40 % blank stands for its unmasked part, not its centre:
    # ~0.4 sigma around it, for a ramp of 3.8 sigma per cell
    assert np.abs(inner(err, 40)).max() < 0.6
    assert np.percentile(np.abs(err), 95) < 0.3 and np.median(np.abs(err)) < 0.1
    assert np.abs(err).max() < 3  # the far edges too: no sliver cells
    # the noise, not the ramp across a cell (which would make it hypot(5, 5.5) = 7.5);
    # a 3-sigma clipped Gaussian has a standard deviation of 0.987 sigma
    assert abs(np.median(bg.rms) / sigma - 0.987) < 0.03


def test_cell_shape_rules():
    assert cell_shape((4096, 4096), 64) == (64, 64)
    assert cell_shape((4176, 6248), 64) == (60, 64)  # last cells 36/60 and 40/64 wide
    assert cell_shape((4160, 4100), 64) == (64, 58)  # 4100 = 70 * 58 + 40 (64 would leave 4)
    assert cell_shape((50, 4096), 64) == (50, 64)  # shorter than a cell: one cell
    b = cell_shape((4099, 4099), 64)[0]
    assert 4099 % b == 0 or 2 * (4099 % b) >= b


def test_mask_excludes_pixels_from_the_statistics():
    rng = np.random.default_rng(8)
    shape, sigma = (256, 256), 10.0
    img = 500.0 + rng.normal(0.0, sigma, shape)
    blob = np.zeros(shape, bool)
    blob[64:128, 64:128] = True
    img[blob] += 8.0  # a faint extended source filling one cell: not clipped
    img = img.astype(np.float32)
    spec = BackgroundSpec(smooth=1)
    assert estimate_background(img, spec).level[96, 96] > 505
    masked = estimate_background(img, spec, mask=blob)
    assert abs(masked.level[96, 96] - 500.0) < 1.0
    with pytest.raises(ValueError, match="mask shape"):
        estimate_background(img, spec, mask=blob[:10])


def test_output_is_float32_and_input_untouched():
    rng = np.random.default_rng(1)
    for img in (rng.normal(100, 3, (128, 160)), rng.integers(90, 110, (128, 160)).astype(np.uint16)):
        before = img.copy()
        bg = estimate_background(img, BackgroundSpec(mesh=32))
        assert bg.level.dtype == np.float32 and bg.rms.dtype == np.float32
        np.testing.assert_array_equal(img, before)
        assert abs(np.median(bg.level) - 100) < 1


def test_all_nan_image_raises():
    with pytest.raises(ValueError, match="no finite"):
        estimate_background(np.full((64, 64), np.nan, np.float32), BackgroundSpec(mesh=32))
    with pytest.raises(ValueError, match="2-D"):
        estimate_background(np.zeros(64, np.float32), BackgroundSpec(mesh=32))


# ----------------------------------------------------------------------------- precision


def skewed_cells(seed=0, n_cells=64, n=4096):
    """Cells of Gaussian noise plus a heavy positive tail (faint unresolved sources)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(100.0, 5.0, (n_cells, n))
    tail = rng.random(d.shape) < 0.15
    d[tail] += rng.exponential(12.0, tail.sum())
    return d


def test_precision_zero_is_astropy_sigma_clip():
    from astropy.stats import SigmaClip

    d = skewed_cells(n_cells=40)
    d[3, 17] = np.nan
    ours = PrecisionSigmaClip(sigma_lower=3.0, sigma_upper=2.5, precision=0.0, maxiters=8)
    ref = SigmaClip(sigma_lower=3.0, sigma_upper=2.5, maxiters=8, cenfunc="median", stdfunc="std")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, alo, ahi = ours(d, axis=1, masked=False, return_bounds=True)
        b, blo, bhi = ref(d, axis=1, masked=False, return_bounds=True)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(alo, blo, rtol=1e-12)
    np.testing.assert_allclose(ahi, bhi, rtol=1e-12)
    assert ours.passes.max() > 2  # a skewed distribution needs several passes
    # masked output and axis=None
    m = ours(d[:2], axis=None, masked=True)
    assert isinstance(m, np.ma.MaskedArray) and m.mask.shape == (2, d.shape[1])


def test_looser_precision_stops_earlier():
    d = skewed_cells()
    passes, highs = {}, {}
    for precision in (0.0, 0.001, 0.05, 0.3):
        clip = PrecisionSigmaClip(3.0, 3.0, precision=precision, maxiters=20)
        _, _, hi = clip(d, axis=1, masked=False, return_bounds=True)
        passes[precision], highs[precision] = clip.passes.mean(), hi.mean()
    assert passes[0.3] < passes[0.05] < passes[0.001] <= passes[0.0]
    assert passes[0.3] <= 2
    # stopping earlier clips less of the tail: a higher upper bound
    assert highs[0.3] > highs[0.05] > highs[0.001]
    # maxiters caps the passes
    clip = PrecisionSigmaClip(3.0, 3.0, precision=0.0, maxiters=2)
    clip(d, axis=1, masked=False)
    assert clip.passes.max() == 2


def test_precision_is_used_by_estimate_background():
    rng = np.random.default_rng(2)
    img = skewed_cells(seed=4, n_cells=256 * 4, n=64).reshape(256, 256).astype(np.float32)
    img = img[rng.permutation(256)]  # mix the rows: every cell sees the same distribution
    fine = estimate_background(img, BackgroundSpec(precision=0.001, maxiters=20, estimator="mean"))
    loose = estimate_background(img, BackgroundSpec(precision=0.3, maxiters=20, estimator="mean"))
    assert len(fine.clip_passes) == len(loose.clip_passes) == 16
    assert loose.clip_passes.mean() < fine.clip_passes.mean()
    assert np.median(loose.level) > np.median(fine.level) + 0.3  # more of the tail kept


# ----------------------------------------------------------------------------- sky flats


def twilight_flat(rng, shape, ys, xs, peaks, level=20000.0):
    clean = vignetted(shape, level)
    stars = star_image(shape, ys, xs, peaks)
    noisy = rng.poisson(clean + stars).astype(np.float32)
    return clean, stars, noisy


def test_reject_sky_flat_stars_sigma():
    rng = np.random.default_rng(21)
    shape = (512, 512)
    ys, xs, peaks = random_stars(rng, shape, 20)
    clean, stars, flat = twilight_flat(rng, shape, ys, xs, peaks)
    reject = reject_sky_flat_stars(flat, BackgroundSpec(), method="sigma", k=3.0)
    assert reject.dtype == bool and reject.shape == shape
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    near = np.zeros(shape, bool)
    for yc, xc in zip(ys, xs):
        near |= np.hypot(y - yc, x - xc) <= 2 * FWHM
    significant = near & (stars > 5 * np.sqrt(clean))
    assert significant.sum() > 200
    assert reject[significant].mean() >= 0.99
    far = np.ones(shape, bool)
    for yc, xc in zip(ys, xs):
        far &= np.hypot(y - yc, x - xc) > 5 * FWHM
    assert reject[far].mean() < 0.01
    # the bright stars are rejected out to their faint wings (grow)
    no_grow = reject_sky_flat_stars(flat, BackgroundSpec(), k=3.0, grow=0)
    assert reject.sum() > no_grow.sum() and not (no_grow & ~reject).any()


def test_reject_sky_flat_stars_on_a_normalized_flat_and_nan():
    rng = np.random.default_rng(22)
    shape = (256, 320)
    ys, xs, peaks = random_stars(rng, shape, 8, peaks=(5000.0, 20000.0))
    _, _, flat = twilight_flat(rng, shape, ys, xs, peaks)
    flat /= np.median(flat)
    flat[5, 7] = np.nan
    reject = reject_sky_flat_stars(flat, BackgroundSpec(mesh=64))
    assert reject[5, 7]
    for yc, xc in zip(ys, xs):
        assert reject[int(round(yc)), int(round(xc))]


def test_reject_sky_flat_minmax_is_exact():
    rng = np.random.default_rng(23)
    flat = rng.normal(20000.0, 2000.0, (100, 120)).astype(np.float32)
    flat[0, 0] = 15000.0  # on the limits: kept
    flat[0, 1] = 25000.0
    reject = reject_sky_flat_stars(flat, BackgroundSpec(), method="minmax", low=15000.0, high=25000.0)
    np.testing.assert_array_equal(reject, (flat < 15000.0) | (flat > 25000.0))
    assert 0 < reject.sum() < flat.size and not reject[0, 0] and not reject[0, 1]
    only_high = reject_sky_flat_stars(flat, None, method="MinMax", high=25000.0)
    np.testing.assert_array_equal(only_high, flat > 25000.0)
    flat[3, 3] = np.nan
    assert reject_sky_flat_stars(flat, None, method="minmax", low=0.0)[3, 3]
    with pytest.raises(ValueError, match="low and/or high"):
        reject_sky_flat_stars(flat, None, method="minmax")
    with pytest.raises(ValueError, match="method"):
        reject_sky_flat_stars(flat, None, method="median")


def test_dithered_sky_flats_combine_without_star_residuals():
    """7 dithered twilight flats with stars: the mean of the non-rejected pixels has no
    star residual above 0.5 %; the plain mean keeps > 5 % at the bright stars."""
    rng = np.random.default_rng(24)
    shape = (384, 384)
    n = 7
    with_stars, without, star_maps, stars_all = [], [], [], []
    for _ in range(n):
        ys, xs, peaks = random_stars(rng, shape, 20)
        level = 20000.0 * rng.uniform(0.8, 1.2)  # twilight fades between exposures
        clean = vignetted(shape, level)
        noise = rng.normal(0.0, 1.0, shape) * np.sqrt(clean)
        stars = star_image(shape, ys, xs, peaks)
        norm = np.median(clean)
        with_stars.append(((clean + noise + stars) / norm).astype(np.float32))
        without.append(((clean + noise) / norm).astype(np.float32))
        star_maps.append(stars / clean)
        stars_all += [(y, x, p / clean[int(y), int(x)]) for y, x, p in zip(ys, xs, peaks)]
    spec = BackgroundSpec()
    cube = np.array(with_stars)
    clean_cube = np.array(without)

    def star_residual(masks):
        """What the stars add to the master (the noise of the same pixels removed)."""
        rejected = np.where(masks, np.nan, cube)
        return np.nanmean(rejected, axis=0) / np.nanmean(np.where(masks, np.nan, clean_cube), axis=0) - 1

    masks = np.array([reject_sky_flat_stars(f, spec, method="sigma", k=3.0) for f in with_stars])
    assert (~masks).sum(axis=0).min() >= 3  # no pixel lost in most of the 7
    master = np.nanmean(np.where(masks, np.nan, cube), axis=0)
    assert np.abs(star_residual(masks)).max() < 0.005
    # the wings matter: without growing the mask the residual is above 0.5 %
    bare = np.array([reject_sky_flat_stars(f, spec, method="sigma", k=3.0, grow=0) for f in with_stars])
    assert np.abs(star_residual(bare)).max() > 0.005
    # without rejection the bright stars stay in the master
    plain = cube.mean(axis=0) / clean_cube.mean(axis=0) - 1
    bright = [(y, x) for y, x, rel in stars_all if rel > 0.5]
    assert len(bright) > 10
    for y, x in bright:
        assert plain[int(round(y)), int(round(x))] > 0.05
    # and the master is the flat: within the noise of a 7-flat mean
    truth = vignetted(shape, 1.0) / np.median(vignetted(shape, 1.0))
    assert abs(np.median(master / truth) - 1) < 1e-3


# ----------------------------------------------------------------------------- hot / dead pixels


def test_hot_pixels_on_a_dark_with_amplifier_glow():
    rng = np.random.default_rng(31)
    shape, noise = (512, 512), 3.0
    glow = sky_with_glow(shape, base=20.0, gx=0.0, gy=0.0, glow=500.0, scale=80.0)
    dark = glow + rng.normal(0.0, noise, shape)
    n_hot = 400
    idx = rng.choice(dark.size, n_hot, replace=False)
    weak = np.zeros(n_hot, bool)
    weak[: n_hot // 20] = True  # 5 % just above the threshold (5 sigma)
    excess = np.where(weak, 7.0 * noise, rng.uniform(20 * noise, 3000.0, n_hot))
    dark.flat[idx] += excess
    dark = dark.astype(np.float32)
    hot = hot_pixels(dark, BackgroundSpec(), k=5.0)
    truth = np.zeros(shape, bool)
    truth.flat[idx] = True
    assert hot.flat[idx[~weak]].all()  # every strong one
    assert hot.flat[idx[weak]].mean() >= 0.75  # most of the weak ones
    glow_region = glow - 20.0 > 10 * noise
    assert glow_region.sum() > 5000 and hot[glow_region & truth].any()
    assert not (hot & ~truth)[glow_region].any()  # no glow pixel
    assert (hot & ~truth).sum() <= 1  # elsewhere: Gaussian noise above 5 sigma (p ~ 3e-7)
    # photutils' own grid filter and interpolation flag hundreds of glow pixels here
    from photutils.background import Background2D, MedianBackground

    ref = Background2D(dark, 64, filter_size=3, bkg_estimator=MedianBackground())
    assert ((dark > ref.background + 5 * ref.background_rms) & ~truth)[glow_region].sum() > 100


def test_hot_pixels_k_is_the_threshold():
    rng = np.random.default_rng(32)
    dark = rng.normal(10.0, 2.0, (256, 256)).astype(np.float32)
    dark[100, 100] += 8.0  # 4 sigma
    assert not hot_pixels(dark, BackgroundSpec(), k=5.0)[100, 100]
    assert hot_pixels(dark, BackgroundSpec(), k=3.0)[100, 100]
    with pytest.raises(ValueError, match="'k'"):
        hot_pixels(dark, BackgroundSpec(), k=0)


def test_dead_pixels_in_a_vignetted_flat():
    rng = np.random.default_rng(41)
    shape = (512, 512)
    clean = vignetted(shape, 20000.0, depth=0.55)  # corners at 45 %
    flat = rng.poisson(clean).astype(np.float32)
    idx = rng.choice(flat.size, 300, replace=False)
    response = rng.uniform(0.0, 0.4, idx.size)
    flat.flat[idx] *= response
    flat[200:260, 300] *= 0.3  # a weak column segment
    flat[10, 10] = np.nan
    flat[20, 20] = -5.0
    dead = dead_pixels(flat, BackgroundSpec(), fraction=0.5)
    truth = np.zeros(shape, bool)
    truth.flat[idx] = True
    truth[200:260, 300] = True
    truth[10, 10] = truth[20, 20] = True
    np.testing.assert_array_equal(dead, truth)
    # normalised flat, same answer; the dark corners (45 % of the centre) are not dead
    normalized = flat / np.nanmedian(flat)
    np.testing.assert_array_equal(dead_pixels(normalized, BackgroundSpec(), fraction=0.5), truth)
    assert (normalized[:20, :20][~truth[:20, :20]] < 0.6).any()


def test_estimate_background_2k_is_fast():
    """Not a benchmark: guards against an accidental quadratic path (e.g. IDW by default)."""
    import time

    img = np.random.default_rng(0).normal(100.0, 5.0, (2048, 2048)).astype(np.float32)
    t0 = time.perf_counter()
    bg = estimate_background(img, BackgroundSpec())
    assert time.perf_counter() - t0 < 20
    assert abs(float(np.median(bg.level)) - 100.0) < 0.1


def test_threads_give_the_same_maps_hot_and_dead_pixels():
    """Working through the rows of cells on two threads changes nothing."""
    rng = np.random.default_rng(5)
    shape = (640, 704)
    img = (sky_with_glow(shape) + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    add_stars(img, *random_stars(rng, shape, 30, peaks=(200.0, 20000.0)))
    img[rng.random(shape) < 0.001] += 500.0
    img[3, 3] = np.nan
    spec = BackgroundSpec(mesh=32)  # 20 rows of cells
    one = estimate_background(img, spec)
    two = estimate_background(img, spec, threads=2)
    hot = (hot_pixels(img, spec, 5.0), hot_pixels(img, spec, 5.0, threads=2))
    dead = (dead_pixels(img, spec, 0.9), dead_pixels(img, spec, 0.9, threads=2))
    np.testing.assert_array_equal(one.level, two.level)
    np.testing.assert_array_equal(one.rms, two.rms)
    np.testing.assert_array_equal(np.sort(one.clip_passes), np.sort(two.clip_passes))
    assert hot[0].sum() > 100
    np.testing.assert_array_equal(*hot)
    np.testing.assert_array_equal(*dead)


def test_the_level_alone_is_the_same_level(monkeypatch):
    """rms=False (what dead_pixels asks for) skips the second pass over the residual: the
    level and its grid are those of the full estimate, the rms is None, and the cells'
    statistics are computed once instead of twice."""
    import ccdcal.background as background

    rng = np.random.default_rng(8)
    shape = (320, 384)
    img = (sky_with_glow(shape) + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    full = estimate_background(img, BackgroundSpec(mesh=32))
    runs = []
    real = background._cell_statistics
    monkeypatch.setattr(background, "_cell_statistics", lambda *a, **k: runs.append(1) or real(*a, **k))
    level = estimate_background(img, BackgroundSpec(mesh=32), rms=False)
    assert len(runs) == 1 and level.rms is None and level.rms_mesh is None
    np.testing.assert_array_equal(level.level, full.level)
    np.testing.assert_array_equal(level.level_mesh, full.level_mesh)


@pytest.mark.parametrize("estimator", ["median", "mean", "mode"])
def test_cell_statistics_are_photutils_background2d(estimator):
    """The cells' statistics equal photutils' Background2D (3.0, the reference) given the
    same clipping: partial cells at two edges, masked and NaN pixels, a cell left out (too
    few good pixels) and filled from its neighbours, level and rms grids."""
    from photutils.background import (
        Background2D,
        MeanBackground,
        MedianBackground,
        ModeEstimatorBackground,
        StdBackgroundRMS,
    )

    import ccdcal.background as background

    rng = np.random.default_rng(11)
    shape = (300, 370)  # cells of 32: partial last row (12) and column (18)
    img = (sky_with_glow(shape) + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    add_stars(img, *random_stars(rng, shape, 15, peaks=(200.0, 5000.0)))
    img[rng.random(shape) < 0.002] = np.nan
    mask = np.zeros(shape, bool)
    mask[64:96, 96:128] = True  # a whole cell masked: left out, filled by IDW
    mask[100:110, 10:200] = True
    box = background.cell_shape(shape, 32)
    needed = background._good_pixels_needed(shape, box)
    estimators = {
        "median": MedianBackground(sigma_clip=None),
        "mean": MeanBackground(sigma_clip=None),
        "mode": ModeEstimatorBackground(median_factor=2.5, mean_factor=1.5, sigma_clip=None),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Background2D(
            img,
            box,
            mask=mask,
            filter_size=1,
            exclude_percentile=100.0 * (1.0 - needed / (box[0] * box[1])),
            sigma_clip=PrecisionSigmaClip(3.0, 3.0, 0.01, 10),
            bkg_estimator=estimators[estimator],
            bkg_rms_estimator=StdBackgroundRMS(sigma_clip=None),
        )
        ref_level, ref_rms = np.asarray(ref.background_mesh), np.asarray(ref.background_rms_mesh)
    level, spread = background._cell_statistics(
        img, mask, box, PrecisionSigmaClip(3.0, 3.0, 0.01, 10, threads=2), estimator, rms=True
    )
    assert np.isnan(level[2, 3]) and np.isnan(spread[2, 3])  # the masked cell is left out
    np.testing.assert_allclose(background._fill_left_out(level), ref_level, rtol=2e-6)
    np.testing.assert_allclose(background._fill_left_out(spread), ref_rms, rtol=1e-5)


def test_the_median_of_a_run_of_sorted_values_is_bottlenecks():
    """The clip keeps a run of each sorted row and reads its median off the middle: the
    value bottleneck's nanmedian selects, exactly, for runs of odd and even length, rows
    with masked (NaN) values, and NaN for an empty run."""
    import bottleneck as bn

    from ccdcal.background import _run_medians

    rng = np.random.default_rng(7)
    rows = rng.normal(20000.0, 3.0, (40, 501))
    rows[3, 100:] = np.nan
    rows[4] = np.nan
    rows.sort(axis=1)
    valid = 501 - np.count_nonzero(np.isnan(rows), axis=1)
    start = rng.integers(0, 250, 40)
    end = np.maximum(start, np.minimum(start + rng.integers(1, 250, 40), valid))
    end[7] = start[7]  # an empty run
    medians = _run_medians(rows, start, end)
    for i in range(40):
        run = rows[i, start[i] : end[i]]
        assert np.isnan(medians[i]) if run.size == 0 else medians[i] == bn.nanmedian(run)
    assert {len(rows[i, start[i] : end[i]]) % 2 for i in range(40)} == {0, 1}
