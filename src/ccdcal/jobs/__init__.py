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
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..output_dir import failure_record
from ..writers import write_text_atomic

log = logging.getLogger("ccdcal")


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


def copy_library_master(spec: Mapping[str, Any], output: str, preview: str | None = None) -> dict[str, Any]:
    """Copy the library master identical to tonight's ``spec`` (its ``library_file``, same
    MASTERID) to ``output``, verified (FrameError naming the library file when it is
    damaged: the copy is removed), and its figures' data to ``preview``; the summary a
    master job returns (the raw frames it was made from, tonight's it does not hold)."""
    from urllib.parse import unquote

    from astropy.io import fits

    from ..frames import FrameError
    from ..library import verify_master
    from ..previews import write_figure_data
    from ..products import read_product
    from ..writers import copy_atomic

    copy_atomic(spec["library_file"], output)
    damage = verify_master(output)
    if damage:
        Path(output).unlink(missing_ok=True)
        raise FrameError(
            f"library master {spec['library_file']} is damaged ({damage}); remove it "
            "and run the same command again with --forcerun inventory, to build "
            f"{spec['name']} from tonight's frames"
        )
    log.info("master %s: identical to library master %s, copied", spec["name"], spec["library_file"])
    header = fits.getheader(output)
    used = [unquote(str(header[k])) for k in header if k.startswith("IMCMB")]
    dropped = {
        f["path"]: "dropped when the identical library master was made (see its HISTORY)"
        for f in spec.get("frames", [])
        if f["path"] not in used
    }
    summary = {"name": spec["name"], "type": spec["type"], "reused": spec["library_file"], "used": used}
    summary["dropped"] = dropped
    if preview:
        product = read_product(output)
        summary["histogram"] = write_figure_data(spec["type"], product.data, product.mask, preview)
    return summary


def write_master_report(report: str, summary: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """A master job's report (JSON): the raw frames used and those dropped, with why, the
    library file it was copied from, its quality figures and its histogram."""
    record = {
        "used": summary["used"],
        "dropped": summary["dropped"],
        "copied_from": spec.get("library_file"),
        "qc": summary.get("qc") or {},
        "histogram": summary.get("histogram"),
    }
    write_text_atomic(json.dumps(record, indent=1, sort_keys=True) + "\n", report)
