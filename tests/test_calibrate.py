"""Bias/dark subtraction, flat division, uncertainty and mask on synthetic arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdcal.calibrate import calibrate_array, subtrahend
from ccdcal.products import BADPIX, NONFINITE, SATURATED, WEAKFLAT, Product

GAIN = 1.5  # e-/ADU
READ_NOISE = 4.0  # ADU


def product(data, uncert, mask=None):
    data = np.asarray(data, dtype=np.float32)
    uncert = np.broadcast_to(np.asarray(uncert, dtype=np.float32), data.shape).copy()
    mask = np.zeros(data.shape, np.uint8) if mask is None else np.asarray(mask, np.uint8)
    return Product(path=Path("x"), data=data, uncert=uncert, mask=mask, header=fits.Header(), digest="x")


@pytest.fixture
def scene():
    """Known truth on a 6x7 grid: bias B, dark current rate, flat F, sky+star signal S."""
    rng = np.random.default_rng(11)
    shape = (6, 7)
    B = 500.0 + rng.uniform(-20, 20, shape)
    rate = 0.5 + rng.uniform(0, 0.2, shape)  # ADU/s
    F = rng.uniform(0.8, 1.2, shape)
    S = rng.uniform(100, 3000, shape)
    return dict(B=B, rate=rate, F=F, S=S, shape=shape)


def raw_of(scene, t):
    return scene["B"] + scene["rate"] * t + scene["F"] * scene["S"]


def masters(scene, t_dark, sB=1.0, sD=2.0, sF=0.01):
    bias = product(scene["B"], sB)
    dark = product(scene["B"] + scene["rate"] * t_dark, sD)
    flat = product(scene["F"], sF)
    return bias, dark, flat


# ------------------------------------------------------------------------------ arithmetic


def test_unscaled_dark(scene):
    bias, dark, flat = masters(scene, 120.0)
    raw = raw_of(scene, 120.0).astype(np.float32)
    expected = (raw.astype(np.float64) - dark.data) / flat.data
    sub = subtrahend(None, dark, "unscaled", 1.0)
    out, unc, mask = calibrate_array(raw.copy(), None, sub, flat, GAIN, READ_NOISE)
    assert out.dtype == np.float32 and unc.dtype == np.float32 and mask.dtype == np.uint8
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-3)
    np.testing.assert_allclose(out, scene["S"], rtol=1e-5, atol=2e-3)  # truth recovered
    assert not mask.any()


def test_scaled_dark(scene):
    t, t_dark = 300.0, 120.0
    k = t / t_dark
    bias, dark, flat = masters(scene, t_dark)
    raw = raw_of(scene, t).astype(np.float32)
    B, D, F = (p.data.astype(np.float64) for p in (bias, dark, flat))
    expected = (raw - B - k * (D - B)) / F
    sub = subtrahend(bias, dark, "scaled", k)
    out, _, _ = calibrate_array(raw.copy(), None, sub, flat, GAIN, READ_NOISE)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-3)
    np.testing.assert_allclose(out, scene["S"], rtol=1e-5, atol=3e-3)
    # the unscaled form would leave (k - 1) * rate * t_dark of dark current in: >= 90 ADU
    wrong = (raw - D) / F
    assert np.min(np.abs(wrong - scene["S"])) > 50


def test_bias_only(scene):
    bias, _, flat = masters(scene, 0.0)
    no_dark = dict(scene, rate=np.zeros(scene["shape"]))
    raw = raw_of(no_dark, 60.0).astype(np.float32)
    sub = subtrahend(bias, None, None, None)
    out, _, _ = calibrate_array(raw.copy(), None, sub, flat, GAIN, READ_NOISE)
    np.testing.assert_allclose(out, (raw.astype(np.float64) - bias.data) / flat.data, rtol=2e-6, atol=1e-3)
    np.testing.assert_allclose(out, scene["S"], rtol=1e-5, atol=2e-3)


def test_no_flat_and_no_masters(scene):
    bias, _, _ = masters(scene, 0.0)
    raw = raw_of(dict(scene, rate=np.zeros(scene["shape"])), 0.0).astype(np.float32)
    out, _, _ = calibrate_array(raw.copy(), None, subtrahend(bias, None, None, None), None, GAIN, READ_NOISE)
    np.testing.assert_allclose(out, raw - bias.data, rtol=1e-6)
    out, unc, _ = calibrate_array(raw.copy(), None, subtrahend(None, None, None, None), None, GAIN, READ_NOISE)
    np.testing.assert_array_equal(out, raw)
    np.testing.assert_allclose(unc, np.sqrt(READ_NOISE**2 + raw / GAIN), rtol=1e-6)


def test_scaled_needs_a_bias(scene):
    _, dark, _ = masters(scene, 60.0)
    with pytest.raises(ValueError, match="bias"):
        subtrahend(None, dark, "scaled", 2.0)


def test_subtrahend_blocks(scene):
    bias, dark, _ = masters(scene, 60.0)
    sub = subtrahend(bias, dark, "scaled", 2.0)
    np.testing.assert_allclose(sub.image(slice(None)), 2.0 * dark.data - bias.data, rtol=1e-6)
    np.testing.assert_allclose(
        sub.variance(slice(None)), 1.0 * 1.0 + 4.0 * 2.0**2, rtol=1e-6
    )  # (1-k)^2 sB^2 + k^2 sD^2
    block = np.full((2, 7), 1000.0, np.float32)
    sub.subtract(block, slice(3, 5))
    np.testing.assert_allclose(block, 1000.0 - sub.image(slice(3, 5)), rtol=1e-6)


# ----------------------------------------------------------------------------- uncertainty


def expected_sigma(raw, B, D, F, vB, vD, vF, mode, k, out):
    """The module docstring's formula, in float64."""
    if mode == "unscaled":
        signal = raw - (B if B is not None else D)
        var_pre = READ_NOISE**2 + np.maximum(signal, 0) / GAIN + vD
    elif mode == "scaled":
        var_pre = READ_NOISE**2 + np.maximum(raw - B, 0) / GAIN + (1 - k) ** 2 * vB + k**2 * vD
    else:
        var_pre = READ_NOISE**2 + np.maximum(raw - B, 0) / GAIN + vB
    return np.sqrt(var_pre / F**2 + out**2 * vF / F**2)


@pytest.mark.parametrize("case", ["unscaled_no_bias", "unscaled_with_bias", "scaled", "bias_only"])
def test_uncertainty_formula(scene, case):
    t_dark = 120.0 if case.startswith("unscaled") else 60.0
    t = 120.0 if case != "scaled" else 200.0
    bias, dark, flat = masters(scene, t_dark, sB=1.5, sD=2.5, sF=0.02)
    raw = raw_of(scene, t).astype(np.float32)
    raw[0, 0] = bias.data[0, 0] - 30.0  # below the bias: no Poisson term, only read noise
    k = t / t_dark
    if case == "unscaled_no_bias":
        sub, mode, B = subtrahend(None, dark, "unscaled", 1.0), "unscaled", None
    elif case == "unscaled_with_bias":
        sub, mode, B = subtrahend(bias, dark, "unscaled", 1.0), "unscaled", bias.data
    elif case == "scaled":
        sub, mode, B = subtrahend(bias, dark, "scaled", k), "scaled", bias.data
    else:
        sub, mode, B = subtrahend(bias, None, None, None), None, bias.data
    out, unc, _ = calibrate_array(raw.copy(), None, sub, flat, GAIN, READ_NOISE)
    f64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    want = expected_sigma(f64(raw), f64(B), f64(dark.data), f64(flat.data), 1.5**2, 2.5**2, 0.02**2, mode, k, f64(out))
    np.testing.assert_allclose(unc, want, rtol=1e-5)
    if case == "unscaled_with_bias":  # dark current's shot noise is counted (raw - B, not raw - D)
        no_dark_shot = expected_sigma(
            f64(raw), None, f64(dark.data), f64(flat.data), 0, 2.5**2, 0.02**2, "unscaled", 1.0, f64(out)
        )
        assert np.all(unc[1:] > no_dark_shot[1:])


def monte_carlo(mode, n=(400, 500), seed=7):
    """Calibrate n independent realisations of one pixel (every array element is one) and
    return (calibrated values, predicted 1-sigma)."""
    rng = np.random.default_rng(seed)
    B0, rate, F0, S = 500.0, 0.5, 0.9, 800.0
    sB, sD, sF = 3.0, 4.0, 0.02
    t, t_dark = (120.0, 60.0) if mode == "scaled" else (120.0, 120.0)
    if mode == "bias_only":
        rate = 0.0
    mean_raw = B0 + rate * t + F0 * S
    shot = READ_NOISE**2 + (rate * t + F0 * S) / GAIN
    raw = (mean_raw + rng.normal(0, np.sqrt(shot), n)).astype(np.float32)
    bias = product(B0 + rng.normal(0, sB, n), sB)
    dark = product(B0 + rate * t_dark + rng.normal(0, sD, n), sD)
    flat = product(F0 + rng.normal(0, sF, n), sF)
    if mode == "scaled":
        sub = subtrahend(bias, dark, "scaled", t / t_dark)
    elif mode == "unscaled":
        sub = subtrahend(bias, dark, "unscaled", 1.0)
    else:
        sub = subtrahend(bias, None, None, None)
    out, unc, mask = calibrate_array(raw, None, sub, flat, GAIN, READ_NOISE)
    assert not mask.any()
    return out.astype(np.float64), unc.astype(np.float64), S


@pytest.mark.parametrize("mode", ["scaled", "unscaled", "bias_only"])
def test_predicted_sigma_matches_monte_carlo(mode):
    out, unc, S = monte_carlo(mode)
    # 200 000 realisations: the empirical sigma is known to ~0.16 %; the first-order flat
    # propagation is good to ~0.1 % for a 2 % flat error. Allow 1 % (leaving out the k^2 var_D
    # term of the scaled case would be a 1.8 % error).
    empirical = np.std(out)
    predicted = np.sqrt(np.mean(unc**2))
    assert predicted == pytest.approx(empirical, rel=0.01)
    assert np.mean(out) == pytest.approx(S, rel=0.002)  # unbiased
    # the check is sharp: dropping the flat term (~30 % of the variance) would fail it
    without_flat_term = np.sqrt(np.mean(unc**2 - out**2 * 0.02**2 / 0.9**2))
    assert abs(without_flat_term / empirical - 1) > 0.1


# ------------------------------------------------------------------------------------ masks


def test_mask_bits():
    shape = (4, 5)
    raw = np.full(shape, 1500.0, np.float32)
    bias_mask = np.zeros(shape, np.uint8)
    bias_mask[0, 0] = BADPIX
    bias_mask[0, 1] = SATURATED | NONFINITE  # only BADPIX is inherited from the masters
    dark_mask = np.zeros(shape, np.uint8)
    dark_mask[1, 1] = BADPIX
    flat_mask = np.zeros(shape, np.uint8)
    flat_mask[2, 2] = BADPIX
    flat_mask[2, 3] = WEAKFLAT
    flat_data = np.ones(shape, np.float32)
    flat_data[3, 0] = 0.1  # weak, still finite
    flat_data[3, 1] = 0.25  # above the 0.2 threshold
    flat_data[3, 2] = 0.0
    flat_data[3, 3] = np.nan
    flat_data[3, 4] = -0.5
    bias = product(np.full(shape, 500.0), 1.0, bias_mask)
    dark = product(np.full(shape, 530.0), 1.0, dark_mask)
    flat = product(flat_data, 0.01, flat_mask)
    saturated = np.zeros(shape, bool)
    saturated[1, 4] = True
    raw[0, 4] = np.nan

    out, unc, mask = calibrate_array(
        raw.copy(), saturated, subtrahend(bias, dark, "scaled", 2.0), flat, GAIN, READ_NOISE
    )
    assert mask[0, 0] == BADPIX  # from the bias
    assert mask[0, 1] == 0
    assert mask[1, 1] == BADPIX  # from the dark
    assert mask[2, 2] == BADPIX and mask[2, 3] == WEAKFLAT  # from the flat
    assert mask[1, 4] == SATURATED
    assert mask[3, 0] == WEAKFLAT and np.isfinite(out[3, 0])
    assert mask[3, 1] == 0
    for col in (2, 3, 4):  # zero, NaN, negative flat
        assert mask[3, col] == WEAKFLAT | NONFINITE and np.isnan(out[3, col])
    assert mask[0, 4] == NONFINITE and np.isnan(out[0, 4])
    flagged = {(0, 0), (1, 1), (2, 2), (2, 3), (1, 4), (3, 0), (3, 2), (3, 3), (3, 4), (0, 4)}
    clean = np.ones(shape, bool)
    for yx in flagged:
        clean[yx] = False
    assert not mask[clean].any()
    assert np.all(np.isfinite(out[clean])) and np.all(np.isfinite(unc[clean]))
    # BADPIX values are still calibrated (only flagged)
    assert out[0, 0] == pytest.approx(1500.0 - 500.0 - 2.0 * 30.0)

    # an unscaled dark does not use the bias: its bad pixels are not inherited
    _, _, mask = calibrate_array(raw.copy(), None, subtrahend(bias, dark, "unscaled", 1.0), None, GAIN, READ_NOISE)
    assert mask[0, 0] == 0 and mask[1, 1] == BADPIX


def test_weak_threshold_argument():
    shape = (1, 3)
    flat = product(np.array([[0.15, 0.25, 0.35]]), 0.0)
    raw = np.full(shape, 100.0, np.float32)
    _, _, mask = calibrate_array(
        raw.copy(), None, subtrahend(None, None, None, None), flat, GAIN, READ_NOISE, weak_threshold=0.3
    )
    assert mask.tolist() == [[WEAKFLAT, WEAKFLAT, 0]]


@pytest.mark.parametrize("mode", ["unscaled", "scaled"])
def test_calibration_prepared_on_threads_is_the_same(mode):
    """Calibration(threads=2) prepares its planes two row blocks at a time: the same
    planes, so the same calibrated frame, bit for bit, as one thread."""
    from ccdcal.calibrate import Calibration

    rng = np.random.default_rng(4)
    shape = (203, 57)  # not a whole number of 64-row blocks
    bias = product(500 + rng.normal(0, 2, shape), 1.2)
    dark = product(560 + rng.normal(0, 3, shape), 2.1)
    flat = product(rng.uniform(0.1, 1.3, shape), 0.01)
    flat.data[5, 5] = 0.0  # 1/F not finite there
    sub = subtrahend(bias, dark, mode, 1.0 if mode == "unscaled" else 1.7)
    raw = (3000 + rng.normal(0, 40, shape)).astype(np.float32)
    one = Calibration(sub, flat, GAIN, READ_NOISE, threads=1)
    two = Calibration(sub, flat, GAIN, READ_NOISE, threads=2)
    for name in ("image", "signal_offset", "var_const", "inv_f", "mask"):
        a, b = getattr(one, name), getattr(two, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
    for x, y in zip(one.apply(raw.copy()), two.apply(raw.copy())):
        np.testing.assert_array_equal(x, y)
    assert one.mask[5, 5] & BADPIX == 0 and not np.isfinite(one.inv_f[5, 5])


def test_no_full_frame_variance_is_kept(scene):
    """The subtrahend's variance is squared from the masters' UNCERT rows as needed: a
    light job holds no full-frame variance plane of any master."""
    from ccdcal.calibrate import Calibration

    bias, dark, flat = masters(scene, 60.0)
    Calibration(subtrahend(bias, dark, "scaled", 2.0), flat, GAIN, READ_NOISE)
    for master in (bias, dark, flat):
        assert "variance" not in vars(master)  # the cached property was never computed
