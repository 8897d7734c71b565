"""ccdcal.parallel: work on a job's threads; the report's figure cache."""

from __future__ import annotations

import filecmp

from ccdcal.parallel import map_in_threads


def test_map_in_threads_keeps_the_order_of_the_items():
    assert map_in_threads(lambda x: x * 2, range(7), threads=3) == [0, 2, 4, 6, 8, 10, 12]


def test_report_figures_from_the_cache_are_byte_identical_to_drawn_ones(demo_night, tmp_path):
    """The summary job takes a figure whose data did not change from the figure cache:
    the same bytes as a drawing, and only figures whose data changed are drawn again."""
    from ccdcal.jobs import library_headers, read_night, write_report_pages
    from ccdcal.report_pages import FigureCache

    out = demo_night["out"]
    records, plan, state = read_night(str(out / "inventory.csv"), str(out / "plan.json"), str(out))
    caches = {}
    for run in ("drawn", "cached", "cached again"):
        pages = tmp_path / run
        folders = [str(pages / name) for name in ("masters", "histograms", "plots", "lights")]
        caches[run] = FigureCache(None if run == "drawn" else tmp_path / "figures")
        write_report_pages(
            records,
            plan,
            state,
            str(out),
            str(pages / "s.html"),
            str(pages / "q.html"),
            *folders,
            library=library_headers(None),
            figures=caches[run],
        )
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
    changed = FigureCache(tmp_path / "figures")
    pages = tmp_path / "changed"
    write_report_pages(
        records,
        plan,
        state,
        str(out),
        str(pages / "s.html"),
        str(pages / "q.html"),
        *[str(pages / n) for n in ("masters", "histograms", "plots", "lights")],
        library=library_headers(None),
        figures=changed,
    )
    assert changed.drawn == 1
    assert not filecmp.cmp(
        pages / "plots" / "noise_vs_uncert.png", tmp_path / "drawn" / "plots" / "noise_vs_uncert.png", shallow=False
    )
    changed.prune()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(changed.used)
