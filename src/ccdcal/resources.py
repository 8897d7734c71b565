"""What the workflow's jobs take: the memory (MB, 2**20 bytes) and wall time (minutes)
the workflow asks the scheduler for (a rule's ``mem_mb`` and ``runtime``, times the
attempt), and the blocks of rows a master job combines its frames in to stay within
``memory_limit_mb``.

A job's peak memory is modelled as JOB_OVERHEAD_MB plus the arrays it holds, counted in
bytes per pixel of its frames' trimmed shape (numpy (ny, nx)); tests/test_resources.py
checks, for each kind of master and for lights, that a request covers the peak measured
on real jobs and is less than twice it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .writers import BackgroundWriter

#: Memory of a job beyond its arrays: the Snakemake process that runs it on the node
#: (~170 MB with the workflow parsed) and the job's interpreter with numpy, astropy and
#: ccdcal (~100 MB).
JOB_OVERHEAD_MB = 300

# ------------------------------------------------------------------ master jobs
#: Bytes per pixel of a master a master job holds: image, UNCERT (float32), MASK, and the
#: variance plane a bias made from darks caches (float32; counted for every master).
MASTER_BYTES_PER_PIXEL = 13
#: Bytes per pixel of the master's own planes while it is combined: image, variance
#: (float32), number of values used (uint16), MASK.
MASTER_PLANES_BYTES_PER_PIXEL = 11
#: Bytes per pixel a master job needs after the combine, beyond the masters it holds: its
#: image, variance and MASK (9) plus, for a dark or flat, the background mesh that finds
#: hot or dead pixels (about 20); fitted to peaks measured at 2048^2 and 4096^2 when the
#: mesh was photutils' (ccdcal's own takes less: 2048^2 dark 388 of 657 MB, flat 407 of 725).
FINISH_BYTES_PER_PIXEL = {"bias": 12, "dark": 24, "flat": 28}
#: Bytes per pixel per thread while a flat's level is measured (one calibrated frame).
FLAT_LEVEL_BYTES_PER_PIXEL = 7
#: MB per thread of the background mesh's sigma clipping (a row of cells in float64 and its
#: temporaries, ~6 MB at 4096 columns; kept from when photutils clipped larger chunks).
CLIP_WORK_MB_PER_THREAD = 40
#: A stack larger than this per thread makes nothing faster (the kernel works on much
#: smaller chunks); the engine stays well below ``memory_limit_mb`` when it can.
BLOCK_STACK_BYTES = 32 * 1024 * 1024


def rows_per_block(n_frames: int, nx: int, memory_limit_mb: float, threads: int, reserved_bytes: int = 0) -> int:
    """Rows per block so that ``threads`` blocks in flight, each a stack plus about two
    stack-sized temporaries, fit in what the limit leaves after ``reserved_bytes`` (the
    output planes and masters), and no stack exceeds BLOCK_STACK_BYTES."""
    budget = memory_limit_mb * 1024 * 1024 - reserved_bytes
    row_bytes = max(n_frames, 1) * nx * 4  # a bias fitted from darks has no frames of its own
    by_limit = budget // (row_bytes * 3 * max(threads, 1))
    by_speed = BLOCK_STACK_BYTES // row_bytes
    return max(1, int(min(by_limit, by_speed)))


def master_memory_mb(
    kind: str, n_frames: int, shape: tuple[int, int], n_masters: int, threads: int, memory_limit_mb: float
) -> int:
    """Peak memory (MB) of a master job of ``kind`` (bias, dark, flat): the job overhead,
    the masters its inputs are calibrated with, the stacks of rows (``threads`` of them
    with their temporaries, bounded by ``memory_limit_mb``; the allocator keeps part of
    them after the combine, so they are counted in full), and the larger of what the
    flat-level pass and the finishing steps add per pixel (for a dark or flat, with the
    background mesh's clipping work per thread)."""
    pixels = shape[0] * shape[1]
    if kind == "fringe":
        return fringe_memory_mb(n_frames, shape, n_masters)
    fixed = pixels * (MASTER_BYTES_PER_PIXEL * n_masters + MASTER_PLANES_BYTES_PER_PIXEL)
    rows = min(rows_per_block(n_frames, shape[1], memory_limit_mb, threads, fixed), shape[0])
    stacks = 2 * threads * rows * n_frames * shape[1] * 4  # a stack and its work chunks
    phase = FINISH_BYTES_PER_PIXEL[kind]
    if kind == "flat":
        phase = max(phase, FLAT_LEVEL_BYTES_PER_PIXEL * threads)
    held = pixels * (MASTER_BYTES_PER_PIXEL * n_masters + phase)
    clip_mb = CLIP_WORK_MB_PER_THREAD * threads if kind in ("dark", "flat") else 0
    return int(JOB_OVERHEAD_MB + clip_mb + (held + stacks) / 2**20) + 1


#: Bytes per pixel a fringe-frame job holds besides its masters: one light calibrated
#: (its planes, the calibration, the row scratch), its sky plane and source map, the
#: fringe frame's planes (data, UNCERT, count, MASK) and the fill's Gaussian scratch.
FRINGE_BYTES_PER_PIXEL = 70
#: Bytes per pixel per input of a block of the fringe frame's combine (values, sigma,
#: weights, sums; ``fringe._combine``), on ``FRINGE_BLOCK_ROWS`` rows.
FRINGE_COMBINE_BYTES = 30
FRINGE_BLOCK_ROWS = 256


def fringe_memory_mb(n_frames: int, shape: tuple[int, int], n_masters: int) -> int:
    """Peak memory (MB) of a fringe-frame job: the masters its lights are calibrated with,
    one light and the frame's planes (``FRINGE_BYTES_PER_PIXEL``), and one block of the
    combine (the lights' residuals wait on disk, ``fringe.build_fringe_frame``)."""
    pixels = shape[0] * shape[1]
    block = FRINGE_BLOCK_ROWS * shape[1] * n_frames * FRINGE_COMBINE_BYTES
    held = pixels * (MASTER_BYTES_PER_PIXEL * n_masters + FRINGE_BYTES_PER_PIXEL)
    return int(JOB_OVERHEAD_MB + (held + block) / 2**20) + 1


# ------------------------------------------------------------------ light-group jobs
#: Bytes per pixel of a master a light job holds: image and UNCERT (float32), MASK.
HELD_MASTER_BYTES_PER_PIXEL = 9
#: Bytes per pixel of one prepared calibration (ccdcal.calibrate.Calibration), at most:
#: the subtrahend of a scaled dark, the dark signal, r^2 + its variance, 1/F (float32), MASK.
CALIBRATION_BYTES_PER_PIXEL = 17
#: Bytes per pixel per thread of the light being calibrated: its raw file (read buffer),
#: image, UNCERT, MASK and the row scratch.
LIGHT_BYTES_PER_PIXEL = 16


def calibrations_needed(group: Mapping[str, Any]) -> int:
    """How many prepared calibrations a group's job holds at once: one per dark mode and
    scale among its lights, at most as many as a Calibrator keeps."""
    kinds = {(light.get("dark_mode"), light.get("dark_scale")) for light in group["lights"]}
    from .calibrator import Calibrator  # here: a master job (masters imports this module) needs no light code

    return max(1, min(len(kinds), Calibrator.CALIBRATIONS_KEPT))


def light_group_memory_mb(shape: tuple[int, int], n_masters: int, threads: int, n_calibrations: int = 1) -> int:
    """Peak memory (MB) of a light-group job: the job overhead, its masters, its prepared
    calibrations (``calibrations_needed``), per thread one light being calibrated (see
    the constants above), and the staging chunks of the thread that writes the files
    (``BackgroundWriter.POOL_MB``)."""
    pixels = shape[0] * shape[1]
    per_pixel = (
        HELD_MASTER_BYTES_PER_PIXEL * n_masters
        + CALIBRATION_BYTES_PER_PIXEL * n_calibrations
        + LIGHT_BYTES_PER_PIXEL * threads
    )
    return int(JOB_OVERHEAD_MB + BackgroundWriter.POOL_MB + pixels * per_pixel / 2**20) + 1


# ------------------------------------------------------------------ wall time
def job_runtime_min(n_frames: int, shape: tuple[int, int]) -> int:
    """A generous wall-time request (minutes) for a job reading ``n_frames`` frames of
    ``shape``: 10 minutes plus 3 s per frame-megapixel, about 100 times what the engine
    takes on one core."""
    return int(10 + n_frames * shape[0] * shape[1] / 1e6 * 3 / 60)
