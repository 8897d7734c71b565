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


def test_a_job_run_in_snakemakes_process_has_its_log_and_leaves_the_process_as_it_was(tmp_path, capsys):
    """The bookkeeping jobs run in Snakemake's own process (joblog.run_logged): what they
    log goes to their log file (warnings to stderr too), an error that ends one is in its
    log with its traceback and raised, and nothing of it stays in the process's logging."""
    import logging

    import pytest

    from ccdcal.joblog import run_logged

    ccdcal = logging.getLogger("ccdcal")
    before = (list(ccdcal.handlers), ccdcal.level)

    def publish(n):
        logging.getLogger("ccdcal.publish").info("published %d calibrated frames", n)
        logging.getLogger("ccdcal.light_cache").warning("entry ab12 removed")
        return n

    log = tmp_path / "logs" / "publish.log"
    assert run_logged(log, publish, 3) == 3
    assert log.read_text().splitlines() == [
        "INFO ccdcal.publish: published 3 calibrated frames",
        "WARNING ccdcal.light_cache: entry ab12 removed",
    ]
    assert "entry ab12 removed" in capsys.readouterr().err
    assert (list(ccdcal.handlers), ccdcal.level) == before

    def summary():
        logging.getLogger("ccdcal.jobs").info("quality checks: 0 fail")
        raise OSError(28, "No space left on device")

    log = tmp_path / "logs" / "summary.log"
    with pytest.raises(OSError, match="No space left"):
        run_logged(log, summary)
    text = log.read_text()
    assert text.startswith("INFO ccdcal.jobs: quality checks: 0 fail\nCRITICAL ccdcal: the job failed: OSError:")
    assert "Traceback (most recent call last)" in text and 'raise OSError(28, "No space left on device")' in text
    assert (list(ccdcal.handlers), ccdcal.level) == before
    logging.getLogger("ccdcal.jobs").info("after the job")  # goes nowhere near its log
    assert log.read_text() == text
