"""The same work over many items on a job's threads (numpy, bottleneck, hashlib and file
reads release the GIL, so the threads share the cores), and the blocks of rows that the
work is usually cut into."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_in_threads(work: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    """``[work(item) for item in items]``, ``threads`` items at a time, results in order
    (the first error in that order is raised). One thread, or one item: no pool."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))


def row_blocks(ny: int, block_rows: int) -> list[slice]:
    """Slices of ``block_rows`` rows (the last shorter) covering ``ny`` rows."""
    return [slice(y0, min(ny, y0 + block_rows)) for y0 in range(0, ny, block_rows)]
