"""Entry points of the workflow's jobs, with plain arguments (paths, dicts), one module
per job so that a job's process imports only what its stage needs.

Each function is one job of the DAG; the scripts in ``workflow/scripts`` only unpack
Snakemake's inputs, outputs and params and call one function of the module of the same
name (``build_master``, ``calibrate_lights``, ``measure_noise``, ``file_in_library``);
the bookkeeping rules, run in Snakemake's own process, call theirs in ``run:``
(``inventory``, ``summary``; ``ccdcal.publish`` for the publishing). Nothing here
imports Snakemake, so every job can be run and tested on its own.

Each pixel job starts an interpreter of its own (benchmarks/job_startup.py): this
package's ``__init__`` holds only what every job shares and imports neither numpy nor
astropy; a job module imports its stage's code and no other stage's (a light job no
masters, report or figure code: tests/test_workflow_style.py checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..output_dir import failure_record
from ..writers import write_text_atomic


@contextlib.contextmanager
def failure_recorded(output_dir: str | os.PathLike | None, kind: str, name: str) -> Iterator[None]:
    """Run a job of ``kind`` ('masters' or 'lights'): its error, if it fails, is kept in
    output_dir (``output_dir.failure_record``) for the night's summary, which is written
    even when jobs fail; a job that succeeds removes the record of an earlier failure.
    Without an output_dir (a job run on its own), nothing is kept."""
    if output_dir is None:
        yield
        return
    record = failure_record(output_dir, kind, name)
    record.unlink(missing_ok=True)
    try:
        yield
    except Exception as exc:
        with contextlib.suppress(OSError):  # the disk may be full: the log still has it
            write_text_atomic(f"{type(exc).__name__}: {exc}\n", record)
        raise


def read_noise_record(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """A setup's noise record (``measure_noise.noise_job``), None without a path."""
    return None if not path else json.loads(Path(path).read_text(encoding="utf-8"))
