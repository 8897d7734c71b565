"""Reading Snakemake's HTML report (``snakemake --report report.html``) in headless Chromium.

How the report (snakemake 9) is made: one self-contained HTML file, a React app. Every
result is embedded in a script as ``var results = {path: {name, labels, caption,
mime_type, data_uri, ...}}`` and ``var categories = {category: {subcategory: [path]}}``
(a result without a category is in 'Other', without a subcategory in 'Other'). The page
is a left navbar and a content pane:

- ``#app > div > nav`` (NAVBAR): a breadcrumb bar (``NAVBAR > div > nav``, its first link
  is 'home') above a list (``NAVBAR > div > div.p-3``, NAV_LIST) that is, in turn,
  the menu: ``ul > li`` items, headings (``li.uppercase``: 'General', 'Results') and links
  (``li > a > span``: Workflow, Statistics, About, then one per category after the
  'Results' heading; with a single category just one link, 'Results');
  a category: ``ul > li > a`` one per subcategory; a category with a single subcategory
  skips this and shows its results at once;
  a subcategory's results: a ``table``: ``thead th`` one column per label (the first
  result's label order; 'File' with the path when the results have no labels) and an
  empty last one; ``tbody tr`` one row per result, the last cell holding the 'eye'
  button ``a[iconname=eye]`` that shows the result and an 'i' button for its caption.
- ``#app > div > div.grow`` (CONTENT): the shown result. A PNG, JPEG or SVG is an
  ``img`` whose src is the result's data: URI; an HTML (or PDF) result is an ``iframe``
  whose src is its data: URI, so the document lives in a frame of its own (an opaque
  origin). Chromium does not load a data: URI longer than 2 MiB into a frame (it shows
  about:blank#blocked, with no console message): an HTML result over about 1.5 MB
  (base64 makes it 4/3 longer) is not shown. Other types are only offered for download.

Labels are written in CSS upper case: texts are read with textContent, not innerText.
A console warning from the embedded Tailwind ('should not be used in production') is
normal; console errors and uncaught exceptions are collected, from the frames too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_MISSING = "chromium not found: install Debian's chromium package to run the report tests"

NAVBAR = "#app > div > nav"
HOME_LINK = f"{NAVBAR} > div > nav li a"
NAV_LIST = f"{NAVBAR} > div > div.p-3"
RESULTS_TABLE = f"{NAV_LIST} > table"
CONTENT = "#app > div > div.grow"
#: The types the report shows (an img for images, an iframe for the others); others are downloads.
SHOWN_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "text/html", "application/pdf")
#: Chromium's longest URL (url::kMaxURLChars); a longer data: URI is not loaded into a frame.
MAX_FRAME_URL_CHARS = 2 * 1024 * 1024


def chromium_path() -> str | None:
    """The Chromium executable on PATH (Debian's 'chromium', or 'chromium-browser'), or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium executable; without it (or without playwright) the calling test is
    skipped, saying what to install, except in CI (CI=true), where it fails."""
    problem = None
    executable = chromium_path()
    if executable is None:
        problem = CHROMIUM_MISSING
    elif importlib.util.find_spec("playwright") is None:
        problem = "playwright not installed: pip install playwright (its browsers are not needed)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return executable


@dataclass
class ReportPage:
    """A report loaded in Chromium: the playwright ``page``, and ``errors``, every console
    error, uncaught exception (of the report or of a result's frame) and request to the
    network (the report must be self-contained) since it was loaded, as text."""

    page: Any
    html_path: Path
    errors: list[str] = field(default_factory=list)


@contextmanager
def report_page(html_path: str | os.PathLike, timeout_ms: float = 10_000) -> Iterator[ReportPage]:
    """Open ``html_path`` in headless Chromium (the system's, see ``chromium_path``) and
    yield a ``ReportPage`` once the report's navbar is drawn; the browser is closed after.
    ``timeout_ms`` bounds every wait (page load, a click, an image or a frame loading)."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    html_path = Path(html_path).resolve()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            report = ReportPage(page=page, html_path=html_path)

            def on_console(message) -> None:
                if message.type == "error":
                    where = message.location.get("url") or "inline"
                    report.errors.append(f"console error: {message.text} ({where[:80]})")

            def on_network(route) -> None:
                report.errors.append(f"request to the network: {route.request.url}")
                route.abort()

            page.on("console", on_console)
            page.on("pageerror", lambda exc: report.errors.append(f"uncaught exception: {exc}"))
            page.route(re.compile(r"^(https?|wss?|ftp)://"), on_network)
            page.set_default_timeout(timeout_ms)
            page.goto(html_path.as_uri())
            page.locator(NAVBAR).wait_for()
            yield report
        finally:
            browser.close()


# ------------------------------------------------------------------ what the report holds
def report_categories(report: ReportPage) -> dict[str, dict[str, list[str]]]:
    """The embedded index: {category: {subcategory: [result path, ...]}} ('Other' for none)."""
    return report.page.evaluate("categories")


def report_results(report: ReportPage) -> dict[str, dict[str, Any]]:
    """The embedded results without their data: {path: {name, labels, caption (HTML),
    mime_type, size, data_uri_chars}}."""
    return report.page.evaluate(
        """Object.fromEntries(Object.entries(results).map(([path, r]) => [path, {
            name: r.name, labels: r.labels || null, caption: r.caption, mime_type: r.mime_type,
            size: r.size, data_uri_chars: r.data_uri.length}]))"""
    )


# ------------------------------------------------------------------ navigating like a reader
def _text_of(locator) -> list[str]:
    return [" ".join(text.split()) for text in locator.all_text_contents()]


def go_home(report: ReportPage) -> None:
    """Back to the menu (the breadcrumb bar's first link)."""
    report.page.locator(HOME_LINK).first.click()
    report.page.locator(f"{NAV_LIST} > ul").wait_for()


def _menu(report: ReportPage) -> tuple[list[str], list[bool]]:
    """The menu's items (text) and whether each is a heading."""
    go_home(report)
    items = report.page.locator(f"{NAV_LIST} > ul > li")
    texts = _text_of(items)
    headings = items.evaluate_all("items => items.map(li => li.classList.contains('uppercase'))")
    return texts, headings


def listed_categories(report: ReportPage) -> list[str]:
    """The categories the menu offers, in its order (after its 'Results' heading). With a
    single category the menu has one 'Results' link instead: that category is returned."""
    texts, headings = _menu(report)
    if "Results" in [text for text, heading in zip(texts, headings) if heading]:
        start = texts.index("Results") + 1
        return [text for text, heading in zip(texts[start:], headings[start:]) if not heading]
    if "Results" in texts:
        return list(report_categories(report))
    return []


def _click_nav_link(report: ReportPage, text: str) -> None:
    link = report.page.locator(f"{NAV_LIST} > ul > li > a").filter(
        has=report.page.locator("span", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))
    )
    if link.count() != 1:
        raise AssertionError(
            f"the report's navbar has {link.count()} links '{text}' "
            f"(it lists {_text_of(report.page.locator(f'{NAV_LIST} > ul > li'))})"
        )
    link.click()


def open_category(report: ReportPage, category: str) -> None:
    """From the menu, open ``category`` (by its menu link, or 'Results' when it is the only one)."""
    categories = report_categories(report)
    if category not in categories:
        raise ValueError(f"no category '{category}' in the report (it has {sorted(categories)})")
    go_home(report)
    _click_nav_link(report, "Results" if len(categories) == 1 else category)


def listed_subcategories(report: ReportPage, category: str) -> list[str]:
    """The subcategories the category's page lists; a category with a single subcategory
    shows its results at once: that subcategory is returned."""
    open_category(report, category)
    subcategories = report_categories(report)[category]
    if len(subcategories) == 1:
        report.page.locator(RESULTS_TABLE).wait_for()
        return list(subcategories)
    return _text_of(report.page.locator(f"{NAV_LIST} > ul > li"))


def _open_results_table(report: ReportPage, category: str, subcategory: str | None) -> None:
    subcategories = report_categories(report).get(category, {})
    if subcategory is None:
        if len(subcategories) != 1:
            raise ValueError(f"category '{category}' has subcategories {sorted(subcategories)}: name one")
        subcategory = next(iter(subcategories))
    elif subcategory not in subcategories:
        raise ValueError(f"no subcategory '{subcategory}' in '{category}' (it has {sorted(subcategories)})")
    open_category(report, category)
    if len(subcategories) > 1:
        _click_nav_link(report, subcategory)
    report.page.locator(RESULTS_TABLE).wait_for()


def listed_results(report: ReportPage, category: str, subcategory: str | None = None) -> list[dict[str, str]]:
    """The rows of a subcategory's results table, each as {column: text}: the columns are
    the label names ('File', the path, for unlabelled results). ``subcategory`` may be
    left out when the category has only one."""
    _open_results_table(report, category, subcategory)
    columns = _text_of(report.page.locator(f"{RESULTS_TABLE} > thead th"))[:-1]  # the last: buttons
    rows = report.page.locator(f"{RESULTS_TABLE} > tbody > tr")
    return [dict(zip(columns, _text_of(rows.nth(i).locator("td")))) for i in range(rows.count())]


def result_path(report: ReportPage, name: str) -> str:
    """The result called ``name``: its path in the report, its file name, or the value of
    its first label; it must be the only one."""
    results = report_results(report)
    found = [
        path
        for path, r in results.items()
        if name in (path, r["name"]) or (r["labels"] and next(iter(r["labels"].values())) == name)
    ]
    if len(found) != 1:
        raise ValueError(f"{len(found)} results are called '{name}' (the report has {sorted(results)})")
    return found[0]


def open_result(report: ReportPage, name: str) -> str:
    """Show the result called ``name`` (see ``result_path``) as a reader does: menu ->
    category -> subcategory -> the row's eye button; waits until the content pane shows
    it. Returns its path. (A result behind a label toggle, which the report makes of a
    label with two values shared half and half, is found only when the toggle shows it.)"""
    path = result_path(report, name)
    category, subcategory = next(
        (c, s) for c, subs in report_categories(report).items() for s, paths in subs.items() if path in paths
    )
    entry = report_results(report)[path]
    if entry["mime_type"] not in SHOWN_TYPES:
        raise ValueError(f"{path} ({entry['mime_type']}) is not shown by the report, only offered for download")
    _open_results_table(report, category, subcategory)
    columns = _text_of(report.page.locator(f"{RESULTS_TABLE} > thead th"))[:-1]
    labels = entry["labels"] or {}
    wanted = [path if column == "File" and not labels else str(labels.get(column, "")) for column in columns]
    rows = report.page.locator(f"{RESULTS_TABLE} > tbody > tr")
    matching = [i for i in range(rows.count()) if _text_of(rows.nth(i).locator("td"))[:-1] == wanted]
    if len(matching) != 1:
        raise AssertionError(f"{len(matching)} rows of {category}/{subcategory} show {dict(zip(columns, wanted))}")
    rows.nth(matching[0]).locator("td").last.locator("a[iconname=eye]").click()
    tag = "img" if entry["mime_type"].startswith("image/") else "iframe"
    report.page.wait_for_function(
        "([selector, path]) => { const shown = document.querySelector(selector);"
        " return shown !== null && shown.getAttribute('src') === results[path].data_uri; }",
        arg=[f"{CONTENT} {tag}", path],
    )
    return path


# ------------------------------------------------------------------ what is shown
def shown_image_size(report: ReportPage) -> tuple[int, int]:
    """(width, height) in px of the image in the content pane, once loaded; AssertionError
    when the browser could not decode it (naturalWidth 0)."""
    selector = f"{CONTENT} img"
    report.page.wait_for_function("selector => document.querySelector(selector)?.complete === true", arg=selector)
    image = report.page.locator(selector)
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    if width == 0:
        raise AssertionError(f"the image shown ({image.get_attribute('src')[:60]}...) was not decoded by the browser")
    return width, height


def shown_table(report: ReportPage, index: int = 0) -> list[list[str]]:
    """The cells' text of the ``index``-th table of the HTML result in the content pane's
    iframe, row by row (header rows included); AssertionError when the frame is blocked
    (a data: URI over Chromium's 2 MiB), has no such table or the table has no rows."""
    frame_element = report.page.locator(f"{CONTENT} iframe")
    frame_element.wait_for(state="attached")
    source_chars = len(frame_element.get_attribute("src") or "")
    frame = frame_element.element_handle().content_frame()
    if frame is None:
        raise AssertionError("the content pane's iframe has no document")
    # a new frame starts as about:blank, then loads the data: URI or is blocked (about:blank#blocked)
    frame.wait_for_url(lambda url: not url == "about:blank")
    frame.wait_for_load_state("load")
    if frame.url.startswith("about:blank"):
        too_long = f", over Chromium's {MAX_FRAME_URL_CHARS}" if source_chars > MAX_FRAME_URL_CHARS else ""
        raise AssertionError(
            f"the browser did not load the HTML result ({frame.url}): its data: URI "
            f"has {source_chars} characters{too_long}"
        )
    rows = frame.evaluate(
        """index => { const table = document.querySelectorAll('table')[index];
            return table === undefined ? null : Array.from(table.rows, row =>
                Array.from(row.cells, cell => cell.textContent.trim())); }""",
        index,
    )
    if rows is None:
        raise AssertionError(f"the HTML result shown has no table number {index}")
    if not rows:
        raise AssertionError(f"table number {index} of the HTML result shown has no rows")
    return rows
