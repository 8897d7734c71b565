"""ccdcal.parallel: work on a job's threads; the report's figure cache."""

from __future__ import annotations

import filecmp
from pathlib import Path

from ccdcal.parallel import map_in_threads


def test_map_in_threads_keeps_the_order_of_the_items():
    assert map_in_threads(lambda x: x * 2, range(7), threads=3) == [0, 2, 4, 6, 8, 10, 12]


def test_report_figures_from_the_cache_are_byte_identical_to_drawn_ones(demo_night, tmp_path):
    """The summary job takes a figure whose data did not change from the figure cache:
    the same bytes as a drawing, and only figures whose data changed are drawn again."""
    from ccdcal.jobs.summary import library_headers, read_night, write_report_pages
    from ccdcal.report_pages import FigureCache

    out = demo_night["out"]
    records, plan, state = read_night(str(out / "inventory.csv"), str(out / "plan.json"), str(out))

    def pages_of(run: str, cache: Path | None) -> FigureCache:
        """The report pages into tmp_path/run, with the figure cache ``cache`` (None: none)."""
        pages, figures = tmp_path / run, FigureCache(cache)
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
            figures=figures,
        )
        return figures

    caches = {
        run: pages_of(run, None if run == "drawn" else tmp_path / "figures")
        for run in ("drawn", "cached", "cached again")
    }
    assert caches["cached"].drawn == caches["drawn"].drawn > 5  # the first use fills it
    assert caches["cached again"].drawn == 0 and caches["cached again"].used == caches["cached"].used
    for folder in ("masters", "histograms", "plots"):
        names = sorted(p.name for p in (tmp_path / "drawn" / folder).iterdir())
        for run in ("cached", "cached again"):
            assert names == sorted(p.name for p in (tmp_path / run / folder).iterdir())
            _, mismatch, errors = filecmp.cmpfiles(
                tmp_path / "drawn" / folder, tmp_path / run / folder, names, shallow=False
            )
            assert mismatch == [] and errors == [], (run, folder)

    # a light's noise ratio changes: its plot is drawn again, nothing else
    light = next(iter(state.light_rows))
    state.light_rows[light] = {**state.light_rows[light], "noise_ratio": "1.2345"}
    changed = pages_of("changed", tmp_path / "figures")
    assert changed.drawn == 1
    assert not filecmp.cmp(
        tmp_path / "changed" / "plots" / "noise_vs_uncert.png",
        tmp_path / "drawn" / "plots" / "noise_vs_uncert.png",
        shallow=False,
    )
    changed.prune()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(changed.used)
