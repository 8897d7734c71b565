"""Tests for ccdcal.combine, with ccdproc and astropy as independent references."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from ccdcal.combine import (
    CombineResult,
    CombineSpec,
    combine_block,
    combine_frames_in_memory,
    variance_factor,
    variance_factor_table,
)

ccdproc = pytest.importorskip("ccdproc")
from astropy.nddata import CCDData  # noqa: E402
from astropy.stats import sigma_clip  # noqa: E402

# astropy warns when sigma-clipping data that contain NaN (ccdproc and reference runs).
pytestmark = pytest.mark.filterwarnings("ignore:Input data contains invalid values")


# ----------------------------------------------------------------------------- helpers


def make_stack(seed=0, n=12, ny=40, nx=50, nan_frac=0.0, level=1000.0, sigma=10.0):
    """Gaussian float32 stack with cosmic-ray-like spikes and a few low values."""
    rng = np.random.default_rng(seed)
    s = rng.normal(level, sigma, (n, ny, nx)).astype(np.float32)
    hi = rng.random(s.shape) < 0.03
    s[hi] += rng.uniform(100, 5000, hi.sum()).astype(np.float32)
    lo = rng.random(s.shape) < 0.01
    s[lo] -= rng.uniform(60, 300, lo.sum()).astype(np.float32)
    if nan_frac:
        s[rng.random(s.shape) < nan_frac] = np.nan
    return s


def ccds_of(stack):
    return [CCDData(f, unit="adu") for f in stack]


def used_mask(stack, spec):
    """Exact per-frame "used" mask of our rejection, read back through the variance
    bookkeeping: with method='sum' and var_i = 2**i the returned variance is the sum of
    2**i over the used frames, i.e. the bit mask (exact in float32 for n <= 24)."""
    n = stack.shape[0]
    assert n <= 24
    res = combine_block(
        stack.copy(), dataclasses.replace(spec, method="sum"), variances=(2.0 ** np.arange(n)).reshape(n, 1, 1)
    )
    bits = np.nan_to_num(res.variance, nan=0.0).astype(np.int64)
    mask = ((bits[None] >> np.arange(n)[:, None, None]) & 1).astype(bool)
    np.testing.assert_array_equal(mask.sum(0), res.n_used)
    return mask


def f32(a):
    return np.asarray(a, dtype=np.float64).astype(np.float32)


# ----------------------------------------------------------------------------- spec


def test_spec_from_dict_and_validation():
    spec = CombineSpec.from_dict(
        {"method": "Mean", "rejection": "sigma_clip", "sigma_low": None, "maxiters": 3, "center": None}
    )
    assert spec == CombineSpec(method="mean", rejection="sigma_clip", maxiters=3)
    assert CombineSpec.from_dict({"rejection": None}).rejection == "none"
    assert CombineSpec.from_dict({"method": "average"}).method == "mean"
    with pytest.raises(ValueError, match="combine option 'method': must be one of median, mean, sum"):
        CombineSpec.from_dict({"method": "mode"})
    with pytest.raises(ValueError, match="combine option 'rejection': must be one of"):
        CombineSpec.from_dict({"rejection": "linear_fit"})
    with pytest.raises(ValueError, match="unknown combine option"):
        CombineSpec.from_dict({"sigma": 3})
    with pytest.raises(ValueError, match="center"):
        CombineSpec(center="mode")
    with pytest.raises(ValueError, match="maxiters"):
        CombineSpec(maxiters=0)
    with pytest.raises(ValueError, match="n_low"):
        CombineSpec(n_low=-1)
    with pytest.raises(ValueError, match="sigma_high"):
        CombineSpec(sigma_high=0)
    with pytest.raises(ValueError, match="weights"):
        combine_block(make_stack(n=4, ny=2, nx=2), CombineSpec(method="mean"), weights=[1, 1, 0, 1])
    s = make_stack(n=5, ny=3, nx=4)
    a = combine_block(s.copy(), {"method": "mean", "rejection": "minmax", "n_low": None})
    b = combine_block(s.copy(), CombineSpec(method="mean", rejection="minmax"))
    assert a.data.tobytes() == b.data.tobytes()
    with pytest.raises(ValueError, match="broadcast"):
        combine_block(make_stack(n=4, ny=2, nx=2), CombineSpec(), variances=np.ones((4, 3, 1)))


# ----------------------------------------------------------------------------- ccdproc


@pytest.mark.parametrize(
    "method, ccd_method", [("median", "median_combine"), ("mean", "average_combine"), ("sum", "sum_combine")]
)
def test_plain_combine_matches_ccdproc(method, ccd_method):
    s = make_stack(seed=1, nan_frac=0.02)
    s[:, 5, 7] = np.nan  # all-NaN pixel
    ref = getattr(ccdproc.Combiner(ccds_of(s)), ccd_method)()
    res = combine_block(s.copy(), CombineSpec(method=method))
    assert res.data.dtype == np.float32 and res.n_used.dtype == np.uint16 and res.variance is None
    ok = ~ref.mask
    # Same float64 arithmetic as ccdproc: equal after rounding to float32.
    np.testing.assert_array_equal(res.data[ok], f32(ref.data[ok]))
    np.testing.assert_array_equal(res.n_used, np.sum(~np.isnan(s), axis=0))
    # All-NaN pixel: ccdproc masks it (its sum puts 0 there); we return NaN / 0.
    assert ref.mask[5, 7] and np.isnan(res.data[5, 7]) and res.n_used[5, 7] == 0
    assert np.array_equal(np.isnan(res.data), ref.mask)


def test_ccdproc_combine_function_sigma_clip_default_funcs():
    # ccdproc.combine(sigma_clip=True) uses ma.mean / ma.std, single pass. No NaN here:
    # those NaN-unaware default functions make ccdproc reject a whole pixel with a NaN.
    s = make_stack(seed=2)
    ref = ccdproc.combine(
        ccds_of(s), method="average", sigma_clip=True, sigma_clip_low_thresh=2.5, sigma_clip_high_thresh=3.0
    )
    spec = CombineSpec(method="mean", rejection="sigma_clip", sigma_low=2.5, sigma_high=3.0, maxiters=1, center="mean")
    res = combine_block(s.copy(), spec)
    ok = ~ref.mask
    np.testing.assert_allclose(res.data[ok], f32(ref.data[ok]), rtol=1e-6, atol=0)
    assert np.array_equal(np.isnan(res.data), ref.mask)


@pytest.mark.parametrize("func", ["median", "mean"])
@pytest.mark.parametrize("dev_func", ["std", "mad_std"])
def test_sigma_clipping_matches_ccdproc_single_pass(func, dev_func):
    s = make_stack(seed=3, nan_frac=0.01)
    comb = ccdproc.Combiner(ccds_of(s))
    comb.sigma_clipping(low_thresh=2.0, high_thresh=2.5, func=func, dev_func=dev_func)
    rejected_or_nan = np.ma.getmaskarray(comb.data_arr) | np.isnan(s)
    ref_med = comb.median_combine()
    ref_avg = comb.average_combine()

    rej = "sigma_clip" if dev_func == "std" else "mad_clip"
    spec = CombineSpec(rejection=rej, sigma_low=2.0, sigma_high=2.5, maxiters=1, center=func)
    np.testing.assert_array_equal(used_mask(s, spec), ~rejected_or_nan)
    for method, ref in (("median", ref_med), ("mean", ref_avg)):
        res = combine_block(s.copy(), dataclasses.replace(spec, method=method))
        ok = ~ref.mask
        np.testing.assert_array_equal(res.data[ok], f32(ref.data[ok]))
        np.testing.assert_array_equal(res.n_used, (~rejected_or_nan).sum(0))
        assert np.array_equal(np.isnan(res.data), ref.mask)


@pytest.mark.parametrize("nlow, nhigh", [(1, 1), (2, 0), (0, 3), (2, 2)])
def test_minmax_matches_ccdproc_clip_extrema(nlow, nhigh):
    s = make_stack(seed=4, n=9)  # no NaN: ccdproc sorts NaN as the highest values
    comb = ccdproc.Combiner(ccds_of(s))
    comb.clip_extrema(nlow=nlow, nhigh=nhigh)
    mask = np.ma.getmaskarray(comb.data_arr)
    spec = CombineSpec(rejection="minmax", n_low=nlow, n_high=nhigh)
    np.testing.assert_array_equal(used_mask(s, spec), ~mask)
    for method, ref in (
        ("median", comb.median_combine()),
        ("mean", comb.average_combine()),
        ("sum", comb.sum_combine()),
    ):
        res = combine_block(s.copy(), dataclasses.replace(spec, method=method))
        np.testing.assert_array_equal(res.data, f32(ref.data))
        assert np.all(res.n_used == s.shape[0] - nlow - nhigh)


def test_minmax_too_few_values_like_ccdproc():
    s = make_stack(seed=5, n=3, ny=4, nx=5)
    comb = ccdproc.Combiner(ccds_of(s))
    comb.clip_extrema(nlow=2, nhigh=1)
    ref = comb.median_combine()
    assert ref.mask.all()
    res = combine_block(s.copy(), CombineSpec(rejection="minmax", n_low=2, n_high=1))
    assert np.isnan(res.data).all() and (res.n_used == 0).all()


@pytest.mark.parametrize("nlow, nhigh", [(1, 1), (2, 1), (0, 2), (3, 3)])
def test_minmax_ties_follow_stable_rank(nlow, nhigh):
    # Integer-valued data (like raw bias frames) with many ties and some NaN: the
    # rejected frames are those a stable argsort ranks lowest / highest.
    rng = np.random.default_rng(17)
    s = rng.integers(0, 4, (8, 30, 40)).astype(np.float32)
    s[rng.random(s.shape) < 0.1] = np.nan
    order = np.argsort(s, axis=0, kind="stable")  # NaN last
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(8)[:, None, None] + 0 * order, axis=0)
    k = np.sum(~np.isnan(s), axis=0)
    keep = ~np.isnan(s) & (rank >= nlow) & (rank < k - nhigh)
    spec = CombineSpec(rejection="minmax", n_low=nlow, n_high=nhigh)
    np.testing.assert_array_equal(used_mask(s, spec), keep)


def test_minmax_ignores_nan_values():
    # Our semantics: extremes among the valid values. (ccdproc's clip_extrema argsorts
    # the raw data, so a NaN is counted as one of the "highest" values instead.)
    col = np.array([5.0, np.nan, 1.0, 3.0, 100.0, 4.0], dtype=np.float32)
    spec = CombineSpec(rejection="minmax", method="mean")
    res = combine_block(col.reshape(-1, 1, 1).copy(), spec)
    assert res.n_used[0, 0] == 3
    assert res.data[0, 0] == np.float32(4.0)  # mean of 5, 3, 4
    col2 = np.array([np.nan, 2.0, 7.0, np.nan], dtype=np.float32)  # 2 valid <= 1 + 1
    res = combine_block(col2.reshape(-1, 1, 1).copy(), CombineSpec(rejection="minmax"))
    assert np.isnan(res.data[0, 0]) and res.n_used[0, 0] == 0


def test_weighted_mean_and_sum_match_ccdproc():
    s = make_stack(seed=6)  # no NaN, no rejection: ccdproc normalises by all weights
    w = np.random.default_rng(6).uniform(0.5, 2.0, s.shape[0])
    for method, ccd_method in (("mean", "average_combine"), ("sum", "sum_combine")):
        comb = ccdproc.Combiner(ccds_of(s))
        comb.weights = w
        ref = getattr(comb, ccd_method)()
        res = combine_block(s.copy(), CombineSpec(method=method), weights=w)
        np.testing.assert_array_equal(res.data, f32(ref.data))
    # Median ignores weights.
    a = combine_block(s.copy(), CombineSpec(method="median"), weights=w)
    b = combine_block(s.copy(), CombineSpec(method="median"))
    np.testing.assert_array_equal(a.data, b.data)


def test_weighted_mean_with_rejection_normalises_by_used_weights():
    # ccdproc <= 2.5 divides by the sum of *all* weights even where frames were
    # rejected (astropy/ccdproc#893); we divide by the weights of the used frames.
    s = make_stack(seed=7, nan_frac=0.02)
    w = np.random.default_rng(7).uniform(0.5, 2.0, s.shape[0])
    spec = CombineSpec(method="mean", rejection="sigma_clip", sigma_low=2.5, sigma_high=2.5)
    used = used_mask(s, spec)
    res = combine_block(s.copy(), spec, weights=w)
    ww = np.where(used, w[:, None, None], 0.0)
    expect = np.sum(np.where(used, s.astype(np.float64), 0.0) * ww, 0) / ww.sum(0)
    np.testing.assert_allclose(res.data, expect, rtol=1e-6)


# ----------------------------------------------------------------------------- astropy


@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("rejection, stdfunc", [("sigma_clip", "std"), ("mad_clip", "mad_std")])
@pytest.mark.parametrize("maxiters", [2, 5, 50])
def test_iterative_clip_matches_astropy_sigma_clip(center, rejection, stdfunc, maxiters):
    s = make_stack(seed=8, n=16, nan_frac=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN warning
        ref = sigma_clip(
            s, sigma_lower=2.0, sigma_upper=2.5, maxiters=maxiters, cenfunc=center, stdfunc=stdfunc, axis=0, masked=True
        )
    keep = ~np.ma.getmaskarray(ref)
    spec = CombineSpec(rejection=rejection, sigma_low=2.0, sigma_high=2.5, maxiters=maxiters, center=center)
    np.testing.assert_array_equal(used_mask(s, spec), keep)
    vals = np.where(keep, s.astype(np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN slices
        ref_med = np.nanmedian(vals, axis=0)
        ref_mean = np.nanmean(vals, axis=0)
    med = combine_block(s.copy(), dataclasses.replace(spec, method="median"))
    mean = combine_block(s.copy(), dataclasses.replace(spec, method="mean"))
    np.testing.assert_array_equal(med.data, f32(ref_med))
    np.testing.assert_allclose(mean.data, ref_mean, rtol=1e-6)
    np.testing.assert_array_equal(med.n_used, keep.sum(0))


def test_more_iterations_reject_more():
    s = make_stack(seed=9, n=16)
    n1 = combine_block(s.copy(), CombineSpec(rejection="sigma_clip", maxiters=1)).n_used
    n5 = combine_block(s.copy(), CombineSpec(rejection="sigma_clip", maxiters=5)).n_used
    assert (n5 <= n1).all() and (n5 < n1).any()


# ----------------------------------------------------------------------------- winsorized


def test_winsorized_sigma_clip_removes_outliers():
    rng = np.random.default_rng(10)
    n, ny, nx, mu, sig = 20, 40, 40, 1000.0, 10.0
    s = rng.normal(mu, sig, (n, ny, nx)).astype(np.float32)
    # 10 % strong (one-sided) outliers: 2 random frames per pixel.
    order = np.argsort(rng.random((n, ny, nx)), axis=0)
    bad = np.zeros(s.shape, bool)
    np.put_along_axis(bad, order[:2], True, axis=0)
    s[bad] += rng.uniform(300, 3000, bad.sum()).astype(np.float32)

    spec = CombineSpec(method="mean", rejection="winsorized_sigma", sigma_low=3, sigma_high=3)
    res = combine_block(s.copy(), spec)
    plain = combine_block(s.copy(), CombineSpec(method="mean"))
    noise = sig / math.sqrt(n - 2)
    assert abs(float(np.mean(plain.data)) - mu) > 100  # plain mean is badly biased
    assert abs(float(np.mean(res.data)) - mu) < 0.2 * noise  # average over 1600 pixels
    assert np.max(np.abs(res.data - mu)) < 5 * noise
    used = used_mask(s, spec)
    assert not (used & bad).any()  # every outlier is rejected
    assert used.sum() > 0.97 * (~bad).sum()  # and few good values are lost


def test_winsorized_clean_data_keeps_almost_everything():
    s = np.random.default_rng(11).normal(0, 1, (15, 30, 30)).astype(np.float32)
    res = combine_block(s.copy(), CombineSpec(rejection="winsorized_sigma", method="mean"))
    assert res.n_used.mean() > 0.98 * 15  # < 2 % of good values rejected at 3 sigma
    assert abs(float(res.data.mean())) < 3 / math.sqrt(s.size)


# ----------------------------------------------------------------------------- percentile


def test_percentile_clipping_hand_example():
    cols = np.array(
        [
            [100, 79, 81, 111, 109],  # m=100: keep [80, 110] -> reject 79 and 111
            [-100, -79, -125, -111, -95],  # m=-100, |m| used: keep [-120, -90]
            [0, 5, -5, 0, 100],  # m=0: relative criterion undefined, no clipping
            [10, 10, 10, np.nan, 12],  # m=10: keep [8, 11] -> reject 12
        ],
        dtype=np.float32,
    ).T.reshape(5, 1, 4)
    spec = CombineSpec(rejection="percentile", percentile_low=0.2, percentile_high=0.1)
    res = combine_block(cols.copy(), dataclasses.replace(spec, method="mean"))
    np.testing.assert_array_equal(res.n_used[0], [3, 3, 5, 3])
    expect = [(100 + 81 + 109) / 3, (-100 - 111 - 95) / 3, 20.0, 10.0]
    np.testing.assert_allclose(res.data[0], expect, rtol=1e-7)
    med = combine_block(cols.copy(), spec)
    np.testing.assert_array_equal(med.data[0], [100, -100, 0, 10])


# ----------------------------------------------------------------------------- variance


def test_variance_model_mean_median_sum():
    rng = np.random.default_rng(12)
    n, sig = 31, 3.0
    s = rng.normal(50.0, sig, (n, 200, 300)).astype(np.float32)
    var = np.full((n, 1, 1), sig**2)
    mean = combine_block(s.copy(), CombineSpec(method="mean"), variances=var)
    med = combine_block(s.copy(), CombineSpec(method="median"), variances=var)
    tot = combine_block(s.copy(), CombineSpec(method="sum"), variances=var)
    c_median = variance_factor(CombineSpec(method="median"), n)  # 1.549, 1.4 % below pi/2
    np.testing.assert_allclose(mean.variance, sig**2 / n, rtol=1e-6)
    np.testing.assert_allclose(med.variance, c_median * sig**2 / n, rtol=1e-6)
    np.testing.assert_allclose(tot.variance, n * sig**2, rtol=1e-6)
    # The model agrees with the actual scatter of the combined values across pixels
    # (60000 pixels: 0.6 % standard error of a variance, 0.03 = 5 of them).
    ratio_mean = np.var(mean.data.astype(np.float64)) / (sig**2 / n)
    ratio_med = np.var(med.data.astype(np.float64)) / (c_median * sig**2 / n)
    assert ratio_mean == pytest.approx(1.0, abs=0.03)
    assert ratio_med == pytest.approx(1.0, abs=0.03)


def test_variance_per_frame_full_weights_and_rejection():
    rng = np.random.default_rng(13)
    n, ny, nx = 8, 10, 12
    s = rng.normal(0, 1, (n, ny, nx)).astype(np.float32)
    s[2, 3, 4] = np.nan
    v = rng.uniform(0.5, 4.0, n)
    w = rng.uniform(0.5, 2.0, n)
    vfull = np.broadcast_to(v[:, None, None], s.shape) * rng.uniform(0.9, 1.1, s.shape)
    valid = ~np.isnan(s)
    for variances, vv in ((v, np.broadcast_to(v[:, None, None], s.shape)), (vfull, vfull)):
        res = combine_block(s.copy(), CombineSpec(method="mean"), weights=w, variances=variances)
        ww = np.where(valid, w[:, None, None], 0.0)
        np.testing.assert_allclose(res.variance, (ww**2 * vv).sum(0) / ww.sum(0) ** 2, rtol=1e-6)
        res = combine_block(s.copy(), CombineSpec(method="sum"), weights=w, variances=variances)
        np.testing.assert_allclose(res.variance, (ww**2 * vv).sum(0), rtol=1e-6)
        res = combine_block(s.copy(), CombineSpec(method="median"), weights=w, variances=variances)
        nv = valid.sum(0)
        c = np.vectorize(lambda k: variance_factor(CombineSpec(method="median"), int(k)))(nv)
        expect = c * np.where(valid, vv, 0).sum(0) / nv**2
        np.testing.assert_allclose(res.variance, expect, rtol=1e-6)
    # With rejection, only the used frames count: minmax(1, 1) on equal variances, with the
    # factor of a mean of the middle n_used of n_used + 2 values (below 1).
    minmax = CombineSpec(method="mean", rejection="minmax")
    res = combine_block(s.copy(), minmax, variances=np.full(n, 2.0))
    np.testing.assert_array_equal(res.n_used, valid.sum(0) - 2)
    c = np.vectorize(lambda k: variance_factor(minmax, int(k)))(res.n_used)
    assert (c < 1).all()
    np.testing.assert_allclose(res.variance, c * 2.0 / res.n_used, rtol=1e-6)


# ----------------------------------------------------------------------------- variance factor
MEDIAN = CombineSpec(method="median")
#: the config's default combine for bias and dark (config.schema.yaml, $defs/combine)
DEFAULT_CLIP = CombineSpec(method="mean", rejection="sigma_clip")
#: seeds of the simulated stacks here; the factor's own Monte Carlo seeds with _MC_SEED
TEST_SEED = 8675309


def measured_variance_ratio(spec, n_frames, predicted, pixels=200_000, level=0.0, seed=0):
    """(measured var / predicted var, standard error of that ratio) for the combination of
    ``n_frames`` standard-normal frames of ``pixels`` pixels around ``level``. The standard
    error of a sample variance from the sample's own kurtosis: sqrt((m4/m2^2 - 1)/M)."""
    rng = np.random.default_rng([TEST_SEED, seed, n_frames])
    stack = (level + rng.standard_normal((n_frames, 100, pixels // 100))).astype(np.float32)
    result = combine_block(stack, spec)
    values = result.data.astype(np.float64).ravel()
    dev = values - values.mean()
    m2, m4 = np.mean(dev**2), np.mean(dev**4)
    return m2 / predicted, math.sqrt((m4 / m2**2 - 1) / values.size)


def test_median_variance_factor_exact_values():
    import ccdcal.combine as cmod

    c = {n: variance_factor(MEDIAN, n) for n in range(1, 202)}
    # n = 1 and 2 come out of the odd and even integrals: the median of two is their mean
    assert c[1] == pytest.approx(1.0, abs=1e-10) and c[2] == pytest.approx(1.0, abs=1e-10)
    # median of 3: E[X_(2)^2] = 1 - sqrt(3)/pi = 0.44867 (E[X_(3)^2] = 1 + sqrt(3)/(2 pi),
    # and the three squares add up to 3 on average)
    assert c[3] == pytest.approx(3 * (1 - math.sqrt(3) / math.pi), abs=1e-10)
    assert c[3] == pytest.approx(1.3460, abs=1e-4)
    # odd n above both even neighbours; each parity rises towards pi/2, from below
    for n in range(3, 201, 2):
        assert c[n] > c[n - 1] and c[n] > c[n + 1]
        assert c[n - 2] < c[n] < math.pi / 2 and c[n - 1] < c[n + 1] < math.pi / 2
    # the expansion pi/2 - 0.674/n (odd), pi/2 - 2.245/n (even) is off by O(1/n^2) only
    # (without its 1/n term, n^2 * error would be ~450 at n = 200), and within 5e-6 of the
    # integral where it takes over
    top = cmod.MEDIAN_EXACT_MAX_N
    for n in (200, 201, top - 1, top):
        assert n * n * abs(cmod._median_factor(n) - cmod._median_factor_asymptotic(n)) < 5
    assert variance_factor(MEDIAN, top + 1) == cmod._median_factor_asymptotic(top + 1)
    assert variance_factor(MEDIAN, 10**6) == pytest.approx(math.pi / 2, abs=3e-6)
    # a plain mean is 1; a sum keeps its own convention (the caller multiplies by n)
    assert variance_factor(CombineSpec(method="mean"), 7) == 1.0
    assert variance_factor(CombineSpec(method="sum", rejection="sigma_clip"), 7) == 1.0
    with pytest.raises(ValueError):
        variance_factor(MEDIAN, 0)


#: every N up to 16, then a sparser sweep to 50; odd and even throughout
SWEEP = list(range(2, 17)) + [18, 19, 20, 23, 24, 30, 31, 40, 41, 49, 50]


@pytest.mark.parametrize("spec", [MEDIAN, DEFAULT_CLIP], ids=["median", "default_sigma_clip"])
def test_variance_factor_matches_simulated_scatter(spec):
    """var(combined) of N standard-normal frames over 200k pixels against c(N)/N, for each
    N of SWEEP. Tolerance: 4 standard errors of the measured variance (from its sample
    kurtosis, ~0.33 %) combined with the factor's own Monte Carlo error (rejection only);
    and the mean of the standardised deviations within 4/sqrt(len(SWEEP)) of 0, which
    would catch a bias of ~1 % (pi/2 for the median is 1.4 % off at N = 31, 57 % at 2)."""
    import ccdcal.combine as cmod

    z = []
    for n in SWEEP:
        c = variance_factor(spec, n)
        mc_error = 0.0 if spec.rejection == "none" else cmod._monte_carlo_factor(spec, n)[1] / c
        assert mc_error <= 0.0025  # the Monte Carlo's aim: 1 % is 4 standard errors
        ratio, error = measured_variance_ratio(spec, n, c / n, seed=1)
        error = math.hypot(error, mc_error)
        assert abs(ratio - 1) < 4 * error, (n, c, ratio, error)
        z.append((ratio - 1) / error)
    assert abs(np.mean(z)) < 4 / math.sqrt(len(z)), z


@pytest.mark.parametrize(
    "spec, level",
    [
        (CombineSpec(method="mean", rejection="mad_clip"), 0.0),
        (CombineSpec(method="mean", rejection="winsorized_sigma"), 0.0),
        (CombineSpec(method="median", rejection="sigma_clip", sigma_low=2.0, sigma_high=2.5), 0.0),
        (CombineSpec(method="mean", rejection="minmax", n_low=1, n_high=2), 0.0),
        (CombineSpec(method="mean", rejection="percentile"), 1000.0),  # bounds at +-100 sigma
    ],
    ids=["mad_clip", "winsorized", "median_asymmetric_clip", "minmax", "percentile"],
)
def test_variance_factor_of_other_rejections(spec, level):
    """The other rejections at a few N, as above (100k pixels: ~0.45 % standard error).
    minmax's n is n_used: its stacks have n + n_low + n_high frames."""
    import ccdcal.combine as cmod

    for n in (3, 8, 21):
        c = variance_factor(spec, n)
        frames = n + (spec.n_low + spec.n_high if spec.rejection == "minmax" else 0)
        mc_error = 0.0 if spec.rejection == "percentile" else cmod._monte_carlo_factor(spec, n)[1] / c
        ratio, error = measured_variance_ratio(spec, frames, c / n, pixels=100_000, level=level, seed=2)
        assert abs(ratio - 1) < 4 * math.hypot(error, mc_error), (n, c, ratio, error)


def test_variance_factor_monte_carlo_is_deterministic_and_computed_per_present_n():
    import ccdcal.combine as cmod

    spec = CombineSpec(method="mean", rejection="sigma_clip", sigma_low=2.75)  # fresh cache
    before = cmod._monte_carlo_factor.cache_info().currsize
    table = variance_factor_table(spec, np.array([[0, 13], [6, 13]], dtype=np.uint16))
    assert cmod._monte_carlo_factor.cache_info().currsize == before + 2  # 6 and 13 only
    assert table.shape == (14,) and np.flatnonzero(np.isfinite(table)).tolist() == [6, 13]
    assert table[13] == variance_factor(spec, 13) > 1  # clipped good values: above the mean's 1
    # a fresh computation (not the memoised one) gives the same bits: seeded stacks
    assert cmod._monte_carlo_factor.__wrapped__(spec, 13) == cmod._monte_carlo_factor(spec, 13)


# ----------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("rejection", ["none", "sigma_clip", "mad_clip", "minmax", "winsorized_sigma", "percentile"])
@pytest.mark.parametrize("method", ["median", "mean", "sum"])
def test_nan_handling(rejection, method):
    s = make_stack(seed=14, n=10, ny=6, nx=7)
    s[:, 0, 0] = np.nan  # all missing
    s[:4, 1, 1] = np.nan  # partly missing
    s[0, 2, 2] = np.inf  # inf is missing too
    spec = CombineSpec(method=method, rejection=rejection)
    res = combine_block(s.copy(), spec, variances=np.ones(10))
    assert np.isnan(res.data[0, 0]) and res.n_used[0, 0] == 0 and np.isnan(res.variance[0, 0])
    assert res.n_used[1, 1] <= 6 and res.n_used[2, 2] <= 9
    assert np.isfinite(res.data[1:]).all() and (res.n_used[1:] > 0).all()
    # A NaN value gives the same result as the frame being absent at that pixel.
    sub = combine_block(s[4:, 1:2, 1:2].copy(), spec)
    assert res.data[1, 1] == sub.data[0, 0] and res.n_used[1, 1] == sub.n_used[0, 0]


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize("rejection", ["sigma_clip", "mad_clip", "winsorized_sigma", "minmax"])
def test_threads_and_block_rows_invariance(rejection, monkeypatch):
    s = make_stack(seed=15, n=9, ny=57, nx=33, nan_frac=0.02)
    w = np.linspace(0.5, 1.5, 9)
    var = np.random.default_rng(15).uniform(1, 2, s.shape).astype(np.float32)
    spec = CombineSpec(method="mean", rejection=rejection)
    before = s.copy()
    ref = combine_block(s.copy(), spec, weights=w, variances=var)
    import ccdcal.combine as cmod

    results = []
    for threads, block_rows, chunk in ((1, None, None), (3, 7, None), (4, 1, 50), (2, 100, 1000)):
        if chunk is not None:  # also vary the internal work-chunk size
            monkeypatch.setattr(cmod, "_CHUNK_VALUES", chunk)
        results.append(
            combine_frames_in_memory(list(s), spec, weights=w, variances=var, threads=threads, block_rows=block_rows)
        )
        results.append(
            combine_frames_in_memory(s, spec, weights=w, variances=var, threads=threads, block_rows=block_rows)
        )
    np.testing.assert_array_equal(s, before)  # input frames untouched
    for r in results:
        assert isinstance(r, CombineResult)
        assert r.data.tobytes() == ref.data.tobytes()
        assert r.n_used.tobytes() == ref.n_used.tobytes()
        assert r.variance.tobytes() == ref.variance.tobytes()


def test_deterministic_repeat():
    s = make_stack(seed=16, nan_frac=0.01)
    spec = CombineSpec(method="median", rejection="winsorized_sigma")
    a = combine_block(s.copy(), spec)
    b = combine_block(s.copy(), spec)
    assert a.data.tobytes() == b.data.tobytes() and a.n_used.tobytes() == b.n_used.tobytes()


@pytest.mark.parametrize("method", ["median", "mean", "sum"])
@pytest.mark.parametrize(
    "rejection,extra",
    [
        ("none", {}),
        ("sigma_clip", {"maxiters": 5}),
        ("sigma_clip", {"center": "mean", "maxiters": 3}),
        ("minmax", {"n_low": 2, "n_high": 3}),
    ],
)
def test_sorted_fast_path_is_bit_identical_to_the_general_path(method, rejection, extra):
    """float32 stacks without NaN take the sorted fast path; the same values as float64
    take the general one. Ties, -0.0, outliers and integer-valued data included."""
    rng = np.random.default_rng(7)
    stack = rng.normal(1000, 5, (15, 40, 50)).astype(np.float32)
    stack[:, :10] = np.round(stack[:, :10])  # many ties
    stack[3, 5:8] = -0.0
    stack[rng.integers(0, 15, 200), rng.integers(0, 40, 200), rng.integers(0, 50, 200)] += 300
    spec = CombineSpec(method=method, rejection=rejection, **extra)
    fast = combine_block(stack.copy(), spec, variances=np.full(15, 4.0))
    general = combine_block(stack.astype(np.float64), spec, variances=np.full(15, 4.0))
    assert np.array_equal(fast.n_used, general.n_used)
    assert np.array_equal(fast.data, general.data, equal_nan=True)
    assert np.array_equal(fast.variance, general.variance, equal_nan=True)
    assert (fast.n_used < 15).any() == (rejection != "none")


# ----------------------------------------------------------------------------- sigma-clip fast path
# float32 stacks with sigma_clip take a certificate path (most pixels provably reject
# nothing) and an exact fallback; float64 stacks take the general path. Both must agree
# bit for bit on every pixel, including values on or within one ulp of a bound.


def assert_fast_matches_general(stack, spec, variances=None):
    """combine_block on the float32 stack (fast path) vs on its float64 copy (general path):
    same data bits, n_used and variance. Returns n_used."""
    fast = combine_block(stack.copy(), spec, variances=variances)
    general = combine_block(stack.astype(np.float64), spec, variances=variances)
    differ = (fast.data.view(np.uint32) != general.data.view(np.uint32)) | (fast.n_used != general.n_used)
    assert not differ.any(), f"{differ.sum()} pixels differ, e.g. values {stack[:, differ][:, 0]}"
    if variances is not None:
        assert fast.variance.tobytes() == general.variance.tobytes()
    return general.n_used


def clip_stack(n, seed, integer=False, ny=16, nx=125):
    """Gaussian frames (integer ADU with many ties if ``integer``), with cosmic rays and low
    outliers (single values, both signs), hot pixels (high in every frame), constant pixels
    (zero too), -0.0 and missing (NaN, +-inf) values and pixels."""
    rng = np.random.default_rng([seed, n])
    s = rng.normal(1000.0, 2.0 if integer else 5.0, (n, ny, nx))
    if integer:
        s = np.round(s)
    s = s.astype(np.float32)
    pick = rng.integers(0, ny * nx, 60)
    frame = rng.integers(0, n, 60)
    s.reshape(n, -1)[frame[:30], pick[:30]] += rng.uniform(30, 5000, 30).astype(np.float32)  # cosmic rays
    s.reshape(n, -1)[frame[30:], pick[30:]] -= rng.uniform(30, 500, 30).astype(np.float32)  # low outliers
    s[:, 1, :5] += np.float32(800.0)  # hot pixels
    s[:, 2, :3] = np.float32(1234.5)  # constant pixels
    s[:, 2, 3:5] = np.float32(0.0)
    s[: n // 2, 2, 4] = np.float32(-0.0)
    s[0, 3, 0], s[-1, 3, 1], s[n // 2, 3, 2] = np.nan, np.inf, -np.inf
    s[:, 3, 3], s[:, 3, 4] = np.inf, np.nan
    return s


@pytest.mark.parametrize("n", [3, 4, 5, 10, 30, 31, 64])
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("maxiters", [1, 5])
@pytest.mark.parametrize("sigmas", [(3.0, 3.0), (2.0, 2.5)])
@pytest.mark.parametrize("integer", [False, True], ids=["float", "integer"])
def test_sigma_clip_fast_path_matches_the_general_path(n, center, maxiters, sigmas, integer):
    stack = clip_stack(n, seed=21, integer=integer)
    for method in ("mean", "median", "sum"):
        spec = CombineSpec(method=method, rejection="sigma_clip", center=center, maxiters=maxiters)
        spec = dataclasses.replace(spec, sigma_low=sigmas[0], sigma_high=sigmas[1])
        n_used = assert_fast_matches_general(stack, spec)
        assert (n_used[4:] == n).any()  # both the certified pixels and the others occur
        if (n - 1) / math.sqrt(n) > max(sigmas):  # (else no value can be that many std away)
            assert (n_used[4:] < n).any()


def test_sigma_clip_fast_path_matches_the_general_path_with_variances():
    stack = clip_stack(12, seed=22)
    spec = CombineSpec(method="mean", rejection="sigma_clip", sigma_low=2.0, sigma_high=2.5)
    assert_fast_matches_general(stack, spec, variances=np.full(12, 4.0))


@pytest.mark.parametrize("n", [4, 5, 10, 30, 31, 64])
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("maxiters", [1, 3])
def test_sigma_clip_fast_path_with_values_exactly_on_the_bounds(n, center, maxiters):
    """Two clusters c - t and c + t (plus c for odd n, where sigma = sqrt(n / (n - 1)) puts
    the bounds on c -+ t up to float64 rounding), some values nudged by one float32 ulp or
    a tiny amount so that the bounds move by a few float64 ulps either way."""
    rng = np.random.default_rng([23, n])
    pixels = 2000
    half = n // 2
    c = rng.choice([0.0, 1000.0, -3.0, 2.0**20], pixels).astype(np.float32)
    t = rng.choice([1.0, 0.5, 3.0, 2.0**-10], pixels).astype(np.float32)
    x = np.empty((n, pixels), dtype=np.float32)
    x[:half], x[half : 2 * half] = c - t, c + t
    if n % 2:
        x[-1] = c
    sigma = math.sqrt(n / (2 * half))
    # nudge one value per pixel: 0, 1 float32 ulp in or out, or a tiny step near the centre
    which = rng.integers(0, n, pixels)
    kind = rng.integers(0, 4, pixels)
    cols = np.arange(pixels)
    v = x[which, cols]
    towards = np.where(v > c, np.float32(np.inf), np.float32(-np.inf))
    away = np.where(v > c, np.float32(-np.inf), np.float32(np.inf))
    nudged = np.where(kind == 1, np.nextafter(v, towards), np.where(kind == 2, np.nextafter(v, away), v))
    tiny = (t * np.float32(2.0**-20) * rng.choice([-1, 1], pixels)).astype(np.float32)
    x[which, cols] = np.where(kind == 3, v + tiny, nudged)
    stack = rng.permuted(x, axis=0).reshape(n, 20, 100)  # each pixel's values in a random frame order
    spec = CombineSpec(
        method="mean", rejection="sigma_clip", center=center, maxiters=maxiters, sigma_low=sigma, sigma_high=sigma
    )
    n_used = assert_fast_matches_general(stack, spec)
    assert (n_used == n).any() and (n_used < n).any()  # on both sides of the bounds


@pytest.mark.parametrize("n", [12, 30, 31, 64])
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("sigmas", [(3.0, 3.0), (2.0, 2.5)])
def test_sigma_clip_fast_path_with_an_outlier_within_one_ulp_of_the_bound(n, center, sigmas):
    """Gaussian pixels whose largest (or smallest) value is replaced by the float32 value at
    which the general path's first bound switches from keeping it to rejecting it (found
    by bisection), and by its neighbours one ulp away."""
    from ccdcal.combine import _bounds_fn

    rng = np.random.default_rng([24, n])
    pixels = 600
    base = rng.normal(0.0, 1.0, (pixels, n)).astype(np.float32) + np.float32(50.0)
    bounds = _bounds_fn(center, "std", sigmas[0], sigmas[1])
    columns = []
    for side in (1, -1):  # the outlier above (the last value), then below
        x = base.astype(np.float64) * side
        # bisection over float32 bit patterns of (side * value) in [50, 2**30]
        lo = np.full(pixels, np.float32(50.0)).view(np.int32).astype(np.int64)
        hi = np.full(pixels, np.float32(2.0**30)).view(np.int32).astype(np.int64)
        while (hi - lo > 1).any():
            mid = (lo + hi) // 2
            x[:, -1] = mid.astype(np.int32).view(np.float32).astype(np.float64) * side
            kept = (x[:, -1] <= bounds(x)[1]) if side > 0 else (x[:, -1] >= bounds(x)[0])
            lo, hi = np.where(kept, mid, lo), np.where(kept, hi, mid)
        edge = lo.astype(np.int32).view(np.float32)
        for step in (-1, 0, 1):
            values = base.copy()
            values[:, -1] = side * (np.nextafter(edge, np.float32(step * np.inf)) if step else edge)
            columns.append(values)
    stack = np.ascontiguousarray(np.concatenate(columns).T).reshape(n, 6, pixels)
    spec = CombineSpec(method="mean", rejection="sigma_clip", center=center, maxiters=5)
    spec = dataclasses.replace(spec, sigma_low=sigmas[0], sigma_high=sigmas[1])
    n_used = assert_fast_matches_general(stack, spec)
    # rows: above the others by one ulp less than the edge, the edge, one ulp more; below
    assert (n_used[[1, 4]] == n).any() and (n_used[[2, 5]] < n).any()
