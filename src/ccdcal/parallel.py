"""The same work over many items on a job's threads (numpy, bottleneck, hashlib and file
reads release the GIL, so the threads share the cores), pieces of work that hold the GIL
(drawing figures) on processes, the blocks of rows that the work is usually cut into, and
each thread's work arrays, reused from item to item."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

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


_THREAD_BUFFERS = threading.local()


def thread_buffer(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """This thread's work array ``name`` (C-contiguous, contents left from its last use),
    reused from call to call and grown when too small: a fresh array for every block or
    frame would cost the page faults of its size every time. A pool's threads drop theirs
    when they end; the calling thread, which does the work when there is one thread, keeps
    them until :func:`release_thread_buffers`."""
    import numpy as np

    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = _THREAD_BUFFERS.__dict__.get((name, dtype))
    if buffer is None or buffer.size < size:
        buffer = _THREAD_BUFFERS.__dict__[(name, dtype)] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def release_thread_buffers() -> None:
    """Drop the calling thread's work arrays (after a phase that ran on it)."""
    _THREAD_BUFFERS.__dict__.clear()
