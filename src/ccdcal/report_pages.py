"""The pages and plots of a night's report (``snakemake --report``): the summary and the
quality checks as HTML tables, the masters' histograms and the night's plots
(``ccdcal.previews``), from what the jobs left in output_dir (``report.NightState``).
Nothing here reads a FITS image: the figures come from the noise records, the masters'
reports and the light groups' rows; the masters' reduced images, the histograms' counts and
the lights' thumbnails were made by the jobs that had the images in memory.
"""

from __future__ import annotations

import csv
import hashlib
import html
import shutil
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from .file_cache import file_digest
from .lights import THUMBNAILS, thumbnail_name
from .output_dir import GROUPS_DIR, QC_CSV
from .previews import (
    PixelHistogram,
    draw_histogram,
    plot_dark_current,
    plot_flat_levels,
    plot_noise_vs_uncert,
    plot_overscan_levels,
    plot_photon_transfer,
    plot_trends,
    write_stretched,
)
from .qc import overscan_levels
from .report import NightState
from .writers import link_or_copy, write_text_atomic

VERDICT_COLOURS = {"fail": "#f8d0d0", "warn": "#fbe8c0", "pass": "#d8f0d8"}
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
pre {{ font-size: 12px; }}
</style></head><body>
<h1>{title}</h1>
{body}
</body></html>
"""


def table(rows: list[Mapping[str, Any]], columns: list[str], colour_by: str | None = None) -> str:
    """An HTML table of ``rows`` (every value escaped), each row coloured by its
    ``colour_by`` value (a verdict) when given."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        style = ""
        if colour_by and row.get(colour_by) in VERDICT_COLOURS:
            style = f' style="background: {VERDICT_COLOURS[row[colour_by]]}"'
        cells = "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns)
        body.append(f'<tr class="{html.escape(str(row.get(colour_by, "")))}"{style}>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_pages(output_dir: str | Path, summary_page: str | Path, qc_page: str | Path) -> None:
    """summary.html: summary.txt and every light's row of summary.csv; qc.html: qc.csv,
    fails first, rows coloured by verdict, with the counts."""
    out = Path(output_dir)
    text = (out / "summary.txt").read_text(encoding="utf-8")
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lights = [r for r in rows if r["frame_type"] == "light"]
    body = (
        f"<h2>Lights ({len(lights)})</h2>"
        + table(lights, ["path", "status", "bias", "dark", "dark_mode", "flat", "flags", "detail"])
        + f"<h2>summary.txt</h2><pre>{html.escape(text)}</pre>"
    )
    write_text_atomic(PAGE.format(title="ccdcal night summary", body=body), summary_page)
    with open(out / QC_CSV, newline="", encoding="utf-8") as handle:
        checks = list(csv.DictReader(handle))
    counts = {v: sum(r["verdict"] == v for r in checks) for v in ("fail", "warn", "pass")}
    body = (
        f"<p>{counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass "
        "(limits: <code>qc</code> in config/README.md)</p>"
        + table(checks, ["verdict", "subject", "check", "value", "limit", "note"], colour_by="verdict")
    )
    write_text_atomic(PAGE.format(title="Quality checks", body=body), qc_page)


@lru_cache(maxsize=1)
def figure_libraries() -> dict[str, str]:
    """The versions of the distributions whose code is in a figure's bytes."""
    from importlib import metadata

    return {name: metadata.version(name) for name in ("matplotlib", "numpy", "pillow", "astropy")}


class FigureCache:
    """Figures drawn before from the same data, kept in ``folder`` (output_dir/work/cache/
    figures; None: no cache), so that a rerun of the summary redraws only the figures
    whose data changed: a light added to the night changes its overscan and noise plots,
    not the masters' figures or the photon-transfer curves. A figure is known by the
    SHA-256 of its file name, its data, ccdcal's code and the versions of the libraries
    that draw it; its bytes are those a drawing gives (the figures are deterministic)."""

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)
        self.used: set[str] = set()
        self.drawn = 0

    def figure(self, path: Path, data: Any, draw: Callable[[], Any]) -> Path:
        """``path``: a copy of the figure drawn from ``data`` before, else ``draw()``
        (which writes ``path``), kept for the next time. A cache that cannot be written
        only costs the next run a drawing."""
        from .provenance import canonical_json, code_digest

        if self.folder is None:
            draw()
            self.drawn += 1
            return path
        identity = canonical_json(
            {"figure": path.name, "data": data, "code": code_digest(), "libraries": figure_libraries()}
        )
        key = hashlib.sha256(identity.encode()).hexdigest() + path.suffix
        self.used.add(key)
        kept = self.folder / key
        if kept.is_file():
            link_or_copy(kept, path)
            return path
        draw()
        self.drawn += 1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            link_or_copy(path, kept)
        except OSError:
            pass
        return path

    def prune(self) -> None:
        """Remove the kept figures this summary did not use."""
        if self.folder is None or not self.folder.is_dir():
            return
        for kept in self.folder.iterdir():
            if kept.name not in self.used:
                kept.unlink(missing_ok=True)


def draw_master_figures(
    plan: Mapping[str, Any],
    state: NightState,
    previews: str | Path,
    previews_dir: str | Path,
    histograms_dir: str | Path,
    figures: FigureCache | None = None,
) -> list[Path]:
    """Each master's preview (its reduced image ``previews/<master>.npy`` stretched by
    ZScale: ``previews.write_stretched``) as ``previews_dir/<master>.png``, and its pixel
    histogram (the counts in its report) as ``histograms_dir/<master>_histogram.png``;
    both computed by the master's job (``masters.write_figure_data``); ``figures``: the
    figures drawn before (``FigureCache``). Returns the files written."""
    figures = figures or FigureCache(None)
    images, histograms = Path(previews_dir), Path(histograms_dir)
    images.mkdir(parents=True, exist_ok=True)
    histograms.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(plan["masters"]):
        reduced = Path(previews) / f"{name}.npy"
        if reduced.is_file():
            path = images / f"{name}.png"
            figures.figure(path, file_digest(reduced, 64), partial(_draw_preview, reduced, path))
            written.append(path)
        record = state.master_reports.get(name, {}).get("histogram")
        if record:
            path = histograms / f"{name}_histogram.png"
            histogram = PixelHistogram.from_json(record)
            figures.figure(path, record, partial(draw_histogram, histogram, path, name, record["unit"]))
            written.append(path)
    return written


def _draw_preview(reduced: Path, path: Path) -> None:
    write_stretched(np.load(reduced, allow_pickle=False), path)


def write_plots(
    plan: Mapping[str, Any],
    state: NightState,
    times: Mapping[str, float],
    plots_dir: str | Path,
    library_trends: Mapping[str, list] | None = None,
    figures: FigureCache | None = None,
) -> list[Path]:
    """The night's plots in ``plots_dir``: overscan level over the night per amplifier,
    noise against UNCERT per light, dark current against exposure and temperature, flat
    levels per filter, each setup's photon-transfer curve, and (with a library) the
    camera's trends over the library's nights; ``figures``: the figures drawn before
    (``FigureCache``). Returns the files written."""
    figures = figures or FigureCache(None)
    plots = Path(plots_dir)
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    start = min(times.values()) if times else 0.0

    levels: dict[str, list[tuple[float, float]]] = {}
    by_setup = overscan_levels(plan, state.master_reports, state.light_rows.values())
    for setup, frames in by_setup.items():
        camera = plan["noise"][setup]["setup"]["camera"]
        for rel, values in frames.items():
            for i, value in enumerate(values, start=1):
                if rel in times:
                    levels.setdefault(f"{camera} amp {i}", []).append(((times[rel] - start) / 3600, value))
    path = plots / "overscan_levels.png"
    series = {k: sorted(v) for k, v in sorted(levels.items())}
    figures.figure(path, series, lambda: plot_overscan_levels(series, path))
    written.append(path)

    ratios = [
        (Path(rel).name, float(row["noise_ratio"]))
        for rel, row in sorted(state.light_rows.items())
        if row.get("noise_ratio")
    ]
    path = plots / "noise_vs_uncert.png"
    figures.figure(path, ratios, lambda: plot_noise_vs_uncert(ratios, path))
    written.append(path)

    darks = []
    for name, master in sorted(plan["masters"].items()):
        current = (state.master_reports.get(name, {}).get("qc") or {}).get("dark_current")
        if master["type"] == "dark" and current is not None:
            darks.append((master["exptime"] or 0.0, master["temperature_c"], current, name))
    path = plots / "dark_current.png"
    figures.figure(path, darks, lambda: plot_dark_current(darks, path))
    written.append(path)

    flats: dict[str, list[float]] = {}
    saturation = None
    for name, master in sorted(plan["masters"].items()):
        qc = state.master_reports.get(name, {}).get("qc") or {}
        if master["type"] == "flat":
            flats.setdefault(f"{master['camera']} {master['filter'] or '-'}", []).extend(
                entry["level"] for entry in qc.get("inputs", [])
            )
            saturation = qc.get("saturation") or saturation
    path = plots / "flat_levels.png"
    figures.figure(path, [flats, saturation], lambda: plot_flat_levels(flats, path, saturation))
    written.append(path)

    for name, record in sorted(state.noise_records.items()):
        gain = record["measured"].get("gain")
        points = [
            (p["signal_adu"], p["signal_adu"] / p["gain"], p["signal_adu"] * p["gain_error"] / p["gain"] ** 2)
            for p in (gain or {}).get("points", [])
        ]
        path = plots / f"photon_transfer_{name}.png"
        value = gain["value"] if gain else None
        figures.figure(path, [points, value], partial(plot_photon_transfer, points, value, path))
        written.append(path)

    if library_trends:
        path = plots / "library_trends.png"
        figures.figure(path, library_trends, lambda: plot_trends(library_trends, path))
        written.append(path)
    return written


def copy_thumbnails(output_dir: str | Path, plan: Mapping[str, Any], lights_dir: str | Path) -> list[Path]:
    """Each calibrated light's thumbnail (made by its light job) as ``lights_dir/<name>.jpg``,
    the raw path's folders joined by '__' so one folder holds them all."""
    out, target = Path(output_dir), Path(lights_dir)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for _, light in sorted(plan["lights"].items()):
        group = light.get("group")
        if not group:
            continue
        source = out / GROUPS_DIR / group / THUMBNAILS / thumbnail_name(light["output"])
        if source.is_file():
            dest = target / thumbnail_name(light["output"]).replace("/", "__")
            shutil.copyfile(source, dest)
            copied.append(dest)
    return copied
