"""Statistics on large images."""

from __future__ import annotations

import numpy as np


def median(values: np.ndarray) -> float:
    """The exact median of the finite values (NaN when there are none), as ``np.nanmedian``
    gives it, several times faster on large images: the median of a subsample brackets the
    answer, the values below the bracket are counted, and only those inside it are
    partitioned. Falls back to a full partition when the bracket misses."""
    x = np.asarray(values).ravel()
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return float("nan")
    if n < 200_000:
        return float(np.median(x))
    sample = np.sort(x[:: max(1, n // 20_000)])
    k_lo, k_hi = (n - 1) // 2, n // 2  # the one or two order statistics wanted
    spread = max(1, sample.size // 50)
    lo = sample[max(0, sample.size // 2 - spread)]
    hi = sample[min(sample.size - 1, sample.size // 2 + spread)]
    below = int(np.count_nonzero(x < lo))
    inside = x[(x >= lo) & (x <= hi)]
    if not (below <= k_lo and k_hi < below + inside.size):
        return float(np.median(x))
    a, b = k_lo - below, k_hi - below
    part = np.partition(inside, [a, b])
    return float((np.float64(part[a]) + np.float64(part[b])) / 2)
