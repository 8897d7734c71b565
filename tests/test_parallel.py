"""ccdcal.parallel: work on a job's threads, and Python-bound work on processes."""

from __future__ import annotations

import filecmp
import os
from functools import partial

import pytest

from ccdcal.parallel import map_in_threads, run_side_by_side


def _pid_and(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def _fails(message: str) -> None:
    raise ValueError(message)


def test_map_in_threads_keeps_the_order_of_the_items():
    assert map_in_threads(lambda x: x * 2, range(7), threads=3) == [0, 2, 4, 6, 8, 10, 12]


def test_side_by_side_runs_the_first_task_here_and_the_others_in_other_processes():
    results = run_side_by_side([partial(_pid_and, i) for i in range(3)], processes=3)
    assert [value for _, value in results] == [0, 1, 4]
    assert results[0][0] == os.getpid()
    assert all(pid != os.getpid() for pid, _ in results[1:])


def test_side_by_side_with_one_process_runs_everything_here():
    results = run_side_by_side([partial(_pid_and, i) for i in range(3)], processes=1)
    assert results == [(os.getpid(), 0), (os.getpid(), 1), (os.getpid(), 4)]


def test_an_error_in_another_process_is_raised_here():
    with pytest.raises(ValueError, match="figure 2 failed"):
        run_side_by_side([partial(_pid_and, 1), partial(_fails, "figure 2 failed")], processes=2)


def test_report_pages_are_byte_identical_drawn_on_one_or_two_processes(demo_night, tmp_path):
    """The summary job draws the masters' figures beside the plots: the same files."""
    from ccdcal.jobs import library_headers, read_night, write_report_pages

    out = demo_night["out"]
    records, plan, state = read_night(str(out / "inventory.csv"), str(out / "plan.json"), str(out))
    for processes in (1, 2):
        pages = tmp_path / str(processes)
        folders = [str(pages / name) for name in ("masters", "histograms", "plots", "lights")]
        write_report_pages(
            records,
            plan,
            state,
            str(out),
            str(pages / "s.html"),
            str(pages / "q.html"),
            *folders,
            library=library_headers(None),
            processes=processes,
        )
    one, two = tmp_path / "1", tmp_path / "2"
    for folder in ("masters", "histograms", "plots"):
        names = sorted(p.name for p in (one / folder).iterdir())
        assert names and names == sorted(p.name for p in (two / folder).iterdir())
        match, mismatch, errors = filecmp.cmpfiles(one / folder, two / folder, names, shallow=False)
        assert mismatch == [] and errors == [], folder
