"""A job's log holds what it logged and, when it fails, the error that ended it with its
traceback (ccdcal.joblog). Each case runs in a process of its own, as a job does."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap


def run_job(code: str, log, cwd) -> subprocess.CompletedProcess:
    """``code`` run after ``setup_logging(log)`` in a new interpreter."""
    setup = f"from ccdcal.joblog import setup_logging\nsetup_logging({str(log)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", setup + textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd
    )


def test_an_error_that_ends_a_job_is_in_its_log_after_what_it_logged(tmp_path):
    log = tmp_path / "logs" / "masters" / "bias.log"
    result = run_job(
        """
        import logging
        logging.getLogger("ccdcal.masters").info("combining 3 frames")
        logging.getLogger("ccdcal.inventory").warning("excluded ccd/\\udcff.fits")  # not UTF-8
        raise FileNotFoundError("ccd/bias/b1.fits: no such file")
    """,
        log,
        tmp_path,
    )
    assert result.returncode == 1  # Snakemake sees the job fail
    text = log.read_text(encoding="utf-8")
    assert text.startswith(
        "INFO ccdcal.masters: combining 3 frames\nWARNING ccdcal.inventory: excluded ccd/\\udcff.fits\n"
    ), text
    assert "Traceback (most recent call last)" in text
    assert text.rstrip().endswith("FileNotFoundError: ccd/bias/b1.fits: no such file"), text
    assert "Traceback" in result.stderr and "ccd/bias/b1.fits: no such file" in result.stderr
    assert "combining 3 frames" not in result.stderr  # INFO is the log's only


def test_a_fatal_error_in_c_code_leaves_the_stack_in_the_log(tmp_path):
    log = tmp_path / "job.log"
    result = run_job(
        """
        import ctypes, logging
        logging.getLogger("ccdcal.lights").info("calibrating 3 lights")
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    """,
        log,
        tmp_path,
    )
    assert result.returncode == -signal.SIGSEGV
    text = log.read_text()
    assert text.startswith("INFO ccdcal.lights: calibrating 3 lights\n"), text
    assert "Fatal Python error: Segmentation fault" in text and 'File "<string>", line 6' in text, text
