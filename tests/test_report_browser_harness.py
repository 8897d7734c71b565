"""The browser harness (tests/browser.py) on a toy workflow's Snakemake report.

A two-rule workflow (a PNG per night in category 'Previews', one subcategory per night;
an HTML table in 'Summary') is run and its report built with ``snakemake --report``; the
harness lists the categories and results and opens each result in headless Chromium as
a reader would. Without Chromium the module is skipped, saying what to install; in CI
(CI=true) it fails instead.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from browser import (
    CONTENT,
    listed_categories,
    listed_results,
    listed_subcategories,
    open_result,
    report_categories,
    report_page,
    report_results,
    require_chromium,
    result_path,
    shown_image_size,
    shown_table,
)
from conftest import SNAKEMAKE

NIGHTS = {"2026-01-01": (64, 32), "2026-01-02": (48, 24)}  # night: its preview's (width, height) px
SUMMARY_ROWS = [["night", "lights", "median sky (ADU)"], ["2026-01-01", "12", "1021.5"], ["2026-01-02", "9", "998.0"]]

SNAKEFILE = f"""
NIGHTS = {NIGHTS!r}
SUMMARY_ROWS = {SUMMARY_ROWS!r}


report: "report/workflow.rst"


rule all:
    input:
        expand("results/{{night}}/preview.png", night=NIGHTS),
        "results/summary.html",


rule preview:
    output:
        report(
            "results/{{night}}/preview.png",
            caption="report/preview.rst",
            category="Previews",
            subcategory="{{night}}",
            labels={{"figure": "preview {{night}}", "night": "{{night}}"}},
        ),
    run:
        import numpy as np
        from PIL import Image

        width, height = NIGHTS[wildcards.night]
        ramp = np.linspace(0, 255, width * height).reshape(height, width).astype(np.uint8)
        Image.fromarray(ramp).save(output[0])


rule summary:
    output:
        report(
            "results/summary.html",
            caption="report/summary.rst",
            category="Summary",
            labels={{"table": "night summary"}},
        ),
    run:
        head, *body = SUMMARY_ROWS
        cells = lambda row, tag: "".join(f"<{{tag}}>{{cell}}</{{tag}}>" for cell in row)
        rows = [f"<tr>{{cells(head, 'th')}}</tr>"] + [f"<tr>{{cells(row, 'td')}}</tr>" for row in body]
        with open(output[0], "w") as handle:
            handle.write("<!doctype html><html><body><table>" + "".join(rows) + "</table></body></html>")
"""

CAPTIONS = {
    "workflow.rst": "Toy night\n=========\n\nA workflow to test the report harness.\n",
    "preview.rst": "Preview of night {{ snakemake.wildcards.night }}.\n",
    "summary.rst": "The nights at a glance.\n",
}


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory) -> Path:
    """report.html of the toy workflow, run in a fresh folder."""
    require_chromium()  # before spending time on the workflow
    folder = tmp_path_factory.mktemp("toy_workflow")
    (folder / "Snakefile").write_text(SNAKEFILE)
    (folder / "report").mkdir()
    for name, text in CAPTIONS.items():
        (folder / "report" / name).write_text(text)
    for command in ([str(SNAKEMAKE), "--cores", "2"], [str(SNAKEMAKE), "--report", "report.html"]):
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(command[1:])} failed:\n{result.stderr[-4000:]}"
    return folder / "report.html"


def test_categories_subcategories_and_results_are_listed(toy_report):
    with report_page(toy_report) as report:
        assert report_categories(report) == {
            "Previews": {night: [f"results/{night}/preview.png"] for night in NIGHTS},
            "Summary": {"Other": ["results/summary.html"]},
        }
        assert listed_categories(report) == ["Previews", "Summary"]
        assert listed_subcategories(report, "Previews") == list(NIGHTS)
        assert listed_subcategories(report, "Summary") == ["Other"]  # shown at once, no list
        assert listed_results(report, "Previews", "2026-01-02") == [
            {"figure": "preview 2026-01-02", "night": "2026-01-02"}
        ]
        assert listed_results(report, "Summary") == [{"table": "night summary"}]
        results = report_results(report)
        assert "Preview of night 2026-01-02." in results["results/2026-01-02/preview.png"]["caption"]
        assert results["results/summary.html"]["mime_type"] == "text/html"
        assert result_path(report, "summary.html") == result_path(report, "night summary")
        assert report.errors == []


def test_png_results_are_shown_decoded(toy_report):
    with report_page(toy_report) as report:
        for night, size in NIGHTS.items():
            assert open_result(report, f"preview {night}") == f"results/{night}/preview.png"
            assert shown_image_size(report) == size
        assert report.errors == []


def test_html_result_shows_its_table(toy_report):
    with report_page(toy_report) as report:
        assert open_result(report, "summary.html") == "results/summary.html"
        assert shown_table(report) == SUMMARY_ROWS
        assert report.errors == []


def test_the_harness_sees_what_does_not_render(toy_report):
    """Each check fails when what it checks is broken: an undecodable image, a frame
    without a table, a console error, an exception, a request to the network, a name the
    report does not have."""
    with report_page(toy_report) as report:
        page = report.page
        open_result(report, "preview 2026-01-01")
        shown_image = f"document.querySelector('{CONTENT} img')"
        page.evaluate(f"{shown_image}.src = 'data:image/png;base64,iVBORw0KGgoAAAA='")
        with pytest.raises(AssertionError, match="not decoded"):
            shown_image_size(report)

        open_result(report, "night summary")
        no_table = "data:text/html;base64," + base64.b64encode(b"<p>no table here</p>").decode()
        page.locator(f"{CONTENT} iframe").evaluate("(frame, source) => { frame.src = source; }", no_table)
        page.locator(f"{CONTENT} iframe").element_handle().content_frame().wait_for_url(no_table)
        with pytest.raises(AssertionError, match="has no table"):
            shown_table(report)

        with pytest.raises(ValueError, match="0 results are called 'nothing'"):
            open_result(report, "nothing")

        assert report.errors == []
        page.evaluate("console.error('drawn wrong')")
        page.evaluate("setTimeout(() => { throw new Error('broken script'); }, 0)")
        page.evaluate("fetch('https://example.invalid/x.js').catch(() => null)")
        page.wait_for_timeout(300)
        assert any("drawn wrong" in error for error in report.errors)
        assert any("broken script" in error for error in report.errors)
        assert any("request to the network: https://example.invalid/x.js" in error for error in report.errors)
