"""A workflow job's log file (its rule's ``log:``, under ``logs/``): what the job did and,
when it failed, what ended it.

A job's script calls ``setup_logging`` first, before it imports the job's code (its
module of ``ccdcal.jobs``, and through it numpy, astropy and its stage's ccdcal), so that
the log holds:

- ccdcal's messages, INFO and above (WARNING and above also go to stderr, which Snakemake
  shows and a scheduler keeps in its own output file);
- an exception that ends the job, with its traceback, also one raised while the job's
  code is imported: ``sys.excepthook`` logs it, and Python then exits with status 1, so
  Snakemake sees the job fail;
- a fatal error in C code (a segmentation fault, an abort): the Python stack of every
  thread (``faulthandler``), written before the process dies of the signal.

A job killed with SIGKILL (the kernel's out-of-memory killer, a scheduler's limit) can
write nothing more: its log ends where the job was.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from . import platform_io

log = logging.getLogger("ccdcal")
T = TypeVar("T")


def setup_logging(log_file: str | os.PathLike | None) -> None:
    """Log INFO and above to ``log_file`` (made anew; UTF-8, a character it cannot hold
    as a backslash escape) and WARNING and above to stderr; an error that ends the job is
    written to both with its traceback (see the module docstring)."""
    handlers: list[logging.Handler] = []
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_file, "w", encoding="utf-8", errors="backslashreplace")
        handlers.append(logging.StreamHandler(stream))
        faulthandler.enable(stream, all_threads=True)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    handlers.append(stderr)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True, format="%(levelname)s %(name)s: %(message)s")
    sys.excepthook = _log_the_error
    if not platform_io.ALL_FAST:  # said only where the paths are not Linux's usual ones
        log.info("I/O paths: %s", platform_io.describe())


def _log_the_error(kind, value, traceback) -> None:
    log.critical("the job failed: %s: %s", kind.__name__, value, exc_info=(kind, value, traceback))


@contextlib.contextmanager
def job_log(log_file: str | os.PathLike) -> Iterator[None]:
    """The log of a job run inside Snakemake's own process (the night's bookkeeping: its
    inventory, publishing and summary, which read and write small files and would spend
    more starting an interpreter than working): ccdcal's messages, INFO and above, go to
    ``log_file`` (made anew) while the job runs, and an exception that ends it is written
    there with its traceback, then raised for Snakemake to report. Not the whole process's
    logging (Snakemake's own), nor a fatal error in C code (that ends Snakemake too)."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="w", encoding="utf-8", errors="backslashreplace")
    stderr = logging.StreamHandler(sys.stderr)  # as a job's own process does: Snakemake shows it
    stderr.setLevel(logging.WARNING)
    for each in (handler, stderr):
        each.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(each)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        yield
    except BaseException as exc:  # to the file only, with its traceback: Snakemake reports it
        handler.handle(
            log.makeRecord(
                log.name,
                logging.CRITICAL,
                __file__,
                0,
                "the job failed: %s: %s",
                (type(exc).__name__, exc),
                (type(exc), exc, exc.__traceback__),
            )
        )
        raise
    finally:
        log.removeHandler(handler)
        log.removeHandler(stderr)
        log.setLevel(level)
        handler.close()


def run_logged(log_file: str | os.PathLike, job: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``job(*args, **kwargs)`` inside ``job_log(log_file)``: a rule's `run:` block in one
    line (Snakemake's linter asks `run:` blocks to be short)."""
    with job_log(log_file):
        return job(*args, **kwargs)
