"""The night's last job (bookkeeping, in Snakemake's process): its quality checks, its
summary and its report pages; and the summary after jobs failed."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astropy.io import fits

from ..inventory import FrameRecord, records_from_csv
from ..library import LibraryMaster, scan_library
from ..output_dir import FIGURE_CACHE_DIR, GROUPS_DIR, MASTER_PREVIEWS_DIR, QC_CSV, group_is_complete
from ..publish import publish_job
from ..qc import night_checks
from ..qc import qc_csv as qc_text
from ..report import NightState, summarize
from ..report_pages import FigureCache, copy_thumbnails, draw_master_figures, write_pages, write_plots
from ..writers import write_text_atomic

log = logging.getLogger("ccdcal")

#: The library's undamaged masters with their headers (``library_headers``).
LibraryHeaders = list[tuple[LibraryMaster, fits.Header]]


def read_night(
    inventory_csv: str, plan_json: str, output_dir: str
) -> tuple[list[FrameRecord], dict[str, Any], NightState]:
    """What the night's last jobs read once: the inventory's records, the plan, and what
    the night's jobs left in ``output_dir`` (``report.NightState``)."""
    with open(plan_json, encoding="utf-8") as handle:
        plan = json.load(handle)
    return records_from_csv(inventory_csv), plan, NightState.read(output_dir, plan)


def frame_times(records: Iterable[FrameRecord]) -> dict[str, float]:
    """Each raw frame's time (s, ``FrameRecord.time_s``) by its path, when it has one."""
    return {r.path: r.time_s for r in records if r.time_s is not None}


def write_quality_checks(
    records: list[FrameRecord],
    plan: Mapping[str, Any],
    state: NightState,
    config: Mapping[str, Any],
    qc_csv: str,
    library: LibraryHeaders,
) -> list:
    """The night's quality checks (``qc.night_checks``) written to ``qc_csv``, and put in
    ``state.quality`` (for the summary); returns them. ``library``: the library's masters
    and headers (``library_headers``)."""
    checks = night_checks(
        plan,
        config,
        state.noise_records,
        state.master_reports,
        state.light_rows.values(),
        state.failures,
        frame_times(records),
        library_darks(library),
    )
    text = qc_text(checks)
    write_text_atomic(text, qc_csv)
    state.quality = list(csv.DictReader(io.StringIO(text)))
    counts = {v: sum(c.verdict == v for c in checks) for v in ("fail", "warn", "pass")}
    log.info("quality checks: %d fail, %d warn, %d pass", counts["fail"], counts["warn"], counts["pass"])
    return checks


def library_headers(library_dir: str | None) -> LibraryHeaders:
    """The library's undamaged masters (``scan_library``) with their headers, read once
    for the night's trend check and trend plot."""
    return [(master, fits.getheader(master.file)) for master in scan_library(library_dir) if not master.damaged]


def library_darks(library: LibraryHeaders) -> list[dict[str, Any]]:
    """The library's dark masters with their dark current (DARKCUR, e-/s), for the
    night's dark-current trend check."""
    found = []
    for master, header in library:
        if master.type != "dark" or "DARKCUR" not in header:
            continue
        found.append(
            {
                "camera": master.camera,
                "master": Path(master.file).name,
                "setup": {k: master.setup.get(k) for k in ("binning", "gain_setting", "offset", "readout_mode")},
                "temperature_c": master.temperature_c,
                "date": str(header.get("DATE-BEG", "")),
                "dark_current": float(header["DARKCUR"]),
                "hot_pixels": int(header["NHOTPIX"]) if "NHOTPIX" in header else None,
            }
        )
    return found


def write_report_pages(
    records: list[FrameRecord],
    plan: Mapping[str, Any],
    state: NightState,
    output_dir: str,
    summary_page: str,
    qc_page: str,
    previews_dir: str,
    histograms_dir: str,
    plots_dir: str,
    lights_dir: str,
    library: LibraryHeaders,
    figures: FigureCache | None = None,
) -> None:
    """The night's report pages (``report_pages``): summary and QC tables, the masters'
    previews and histograms, plots, the lights' thumbnails, and with a library the
    camera's trends over its nights (``library``: as for ``write_quality_checks``).
    ``figures``: the figures drawn before (``report_pages.FigureCache``); None: all drawn."""
    write_pages(output_dir, summary_page, qc_page)
    write_plots(plan, state, frame_times(records), plots_dir, library_trends(library), figures)
    draw_master_figures(plan, state, Path(output_dir) / MASTER_PREVIEWS_DIR, previews_dir, histograms_dir, figures)
    copy_thumbnails(output_dir, plan, lights_dir)


def library_trends(library: LibraryHeaders) -> dict[str, list[tuple[str, float]]]:
    """Per camera, the library masters' bias level (MEDLEVEL, ADU), dark current
    (DARKCUR, e-/s) and hot pixels (NHOTPIX) against their date (DATE-BEG)."""
    series: dict[str, list[tuple[str, float]]] = {}
    for master, header in library:
        date = str(header.get("DATE-BEG", ""))[:10]
        for kind, key, label in (
            ("bias", "MEDLEVEL", "bias level (ADU)"),
            ("dark", "DARKCUR", "dark current (e-/s)"),
            ("dark", "NHOTPIX", "hot pixels"),
        ):
            if master.type == kind and key in header and date:
                series.setdefault(f"{master.camera}: {label}", []).append((date, float(header[key])))
    return {k: sorted(v) for k, v in sorted(series.items())}


def night_summary_job(
    inventory_csv: str,
    plan_json: str,
    output_dir: str,
    config: Mapping[str, Any],
    qc_csv: str,
    summary_csv: str,
    summary_txt: str,
    pages: tuple[str, str, str, str, str, str] | None = None,
) -> str:
    """The night's last job: its quality checks (``write_quality_checks``), then its
    summary (which lists the fails first), then the report pages (``write_report_pages``:
    summary and QC pages, previews, histograms, plots and thumbnails directories; a figure
    whose data did not change since the last run is taken from output_dir's figure cache,
    ``output_dir.FIGURE_CACHE_DIR``). Reads the night once. Returns the summary text."""
    records, plan, state = read_night(inventory_csv, plan_json, output_dir)
    library = library_headers(config.get("library_dir"))
    write_quality_checks(records, plan, state, config, qc_csv, library)
    text = write_summary(records, plan, state, summary_csv, summary_txt)
    if pages:
        figures = FigureCache(Path(output_dir) / FIGURE_CACHE_DIR)
        write_report_pages(records, plan, state, output_dir, *pages, library=library, figures=figures)
        figures.prune()
        log.info(
            "report: %d figures drawn, %d unchanged since the last run",
            figures.drawn,
            len(figures.used) - figures.drawn,
        )
    return text


def write_summary(
    records: list[FrameRecord], plan: Mapping[str, Any], state: NightState, summary_csv: str, summary_txt: str
) -> str:
    """Write summary.csv and summary.txt (``report.summarize``); returns the text."""
    table, text = summarize(records, plan, state)
    write_text_atomic(table, summary_csv)
    write_text_atomic(text, summary_txt)
    return text


def after_failure(output_dir: str, config: Mapping[str, Any] | None = None) -> str | None:
    """When jobs failed (the workflow's ``onerror``): publish what the light groups that
    finished made, write the quality checks of what there is (with ``config``) and the
    summary, which says what failed and why. Returns the summary text, or None when there
    is no plan yet (the inventory itself failed)."""
    out = Path(output_dir)
    if not (out / "plan.json").is_file() or not (out / "inventory.csv").is_file():
        return None
    with open(out / "plan.json", encoding="utf-8") as handle:
        plan = json.load(handle)
    finished = [out / GROUPS_DIR / g for g in sorted(plan["light_groups"]) if group_is_complete(out / GROUPS_DIR / g)]
    shutil.rmtree(out / "calibrated", ignore_errors=True)
    publish_job(finished, str(out / "calibrated"), partial=True)
    records, plan, state = read_night(str(out / "inventory.csv"), str(out / "plan.json"), str(out))
    if config is not None:
        write_quality_checks(
            records, plan, state, config, str(out / QC_CSV), library_headers(config.get("library_dir"))
        )
    return write_summary(records, plan, state, str(out / "summary.csv"), str(out / "summary.txt"))
