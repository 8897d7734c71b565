"""The exact fast median against numpy."""

import numpy as np
import pytest

from ccdcal.stats import median


@pytest.mark.parametrize("n", [1, 2, 7, 10, 199_999, 200_000, 200_001, 1_000_000, 1_000_001])
def test_median_equals_numpy_exactly(n):
    rng = np.random.default_rng(n)
    x = rng.normal(1000, 5, n).astype(np.float32)
    assert median(x) == float(np.median(x))


def test_median_ignores_nan_and_inf_and_handles_ties_and_outliers():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(100, 2, (1200, 1000))).astype(np.float32)  # integer values: ties
    x[::7, ::3] = np.nan
    x[0, :50] = np.inf
    x[1, :10] = 1e30
    finite = x[np.isfinite(x)]
    assert median(x) == float(np.median(finite))
    assert np.isnan(median(np.full(10, np.nan)))


def test_skewed_data_takes_the_exact_fallback():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.exponential(1, 600_000), np.full(600_000, 5.0)]).astype(np.float32)
    assert median(x) == float(np.median(x))
