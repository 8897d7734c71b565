"""The demo night's report (``snakemake --report``), opened in a real browser (Debian's
headless chromium driven by playwright): its summary and quality-check tables and every
master's preview render, with no console error. Skipped, saying what to install, where no
browser is installed; under CI (CI=true) that fails instead."""

from __future__ import annotations

import csv

import pytest
from browser import (
    listed_categories,
    listed_results,
    open_result,
    report_page,
    report_results,
    require_chromium,
    shown_image_size,
    shown_table,
)
from conftest import run_snakemake


@pytest.fixture(scope="module")
def demo_report(demo_night, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    run_snakemake(demo_night["raw"], demo_night["out"], "--report", str(path))
    return path


def test_the_report_holds_the_nights_results_in_order(demo_report, demo_night):
    """Without a browser: the embedded index holds the summary, the QC table, a preview
    and a histogram of every master of tonight, the plots and a thumbnail of every light."""
    require_chromium()
    with report_page(demo_report) as report:
        assert listed_categories(report) == ["1. Night", "2. Quality checks", "3. Masters", "4. Plots", "5. Lights"]
        results = report_results(report)
        names = {r["name"] for r in results.values()}
        masters = sorted(p.stem for p in (demo_night["out"] / "masters").glob("*.fits"))
        assert {"summary.html", "qc.html"} <= names
        assert {f"{m}.png" for m in masters} | {f"{m}_histogram.png" for m in masters} <= names
        assert {"overscan_levels.png", "noise_vs_uncert.png", "dark_current.png", "flat_levels.png"} <= names
        lights = demo_night["manifest"]["lights"]
        assert sum(r["name"].endswith(".jpg") and "__lights__" in r["name"] for r in results.values()) == len(lights)
        assert report.errors == []


def test_summary_and_quality_tables_render(demo_report, demo_night):
    require_chromium()
    with open(demo_night["out"] / "qc.csv", newline="", encoding="utf-8") as handle:
        checks = list(csv.DictReader(handle))
    with report_page(demo_report) as report:
        open_result(report, "summary.html")
        lights = shown_table(report)
        assert lights[0][:2] == ["path", "status"]
        assert len(lights) - 1 == len(demo_night["manifest"]["lights"])
        assert all(row[1] == "calibrated" for row in lights[1:])
        open_result(report, "qc.html")
        shown = shown_table(report)
        assert shown[0] == ["verdict", "subject", "check", "value", "limit", "note"]
        assert len(shown) - 1 == len(checks)
        assert "fail" not in {row[0] for row in shown[1:]}
        assert report.errors == []


def test_every_master_preview_and_plot_is_decoded(demo_report, demo_night):
    require_chromium()
    masters = sorted(p.stem for p in (demo_night["out"] / "masters").glob("*.fits"))
    with report_page(demo_report) as report:
        listed = listed_results(report, "3. Masters")
        assert sorted(row["figure"] for row in listed) == sorted(
            f"{m} {figure}" for m in masters for figure in ("image", "histogram")
        )
        for master in masters:
            for figure in (f"{master}.png", f"{master}_histogram.png"):
                open_result(report, figure)
                width, height = shown_image_size(report)
                assert width > 0 and height > 0, figure
        for plot in ("overscan_levels.png", "photon_transfer_demo-ccd_1x1_512x512_Normal.png"):
            open_result(report, plot)
            assert shown_image_size(report) == (640, 400)
        assert report.errors == []
