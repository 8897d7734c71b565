"""Entry points of the workflow's jobs, with plain arguments (paths, dicts).

Each function is one job of the DAG; the scripts in ``workflow/scripts`` only unpack
Snakemake's inputs, outputs and params and call one of these. Nothing here imports
Snakemake, so every job can be run and tested on its own.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from astropy.io import fits

from .camera import MASTER_TYPES
from .frames import FrameError
from .inventory import INVENTORY_ROWS, FrameRecord, records_from_csv, records_to_csv, take_inventory
from .library import CHECKSUMS, ChecksumCache, LibraryMaster, scan_library, verify_master
from .light_cache import WARNED, LightCache
from .lights import calibrate_group, report_csv
from .masters import build_master, write_figure_data, write_intermediates
from .night_noise import measure_setup
from .output_dir import (
    FIGURE_CACHE_DIR,
    GROUP_REPORT,
    GROUPS_DIR,
    MASTER_PREVIEWS_DIR,
    MASTER_REPORTS_DIR,
    QC_CSV,
    failure_record,
    group_is_complete,
)
from .plan import make_plan
from .products import read_products
from .provenance import settings_digest
from .publish import publish_job
from .qc import master_checks, night_checks, setup_checks, stop_if_failed
from .qc import qc_csv as qc_text
from .report import NightState, summarize
from .report_pages import FigureCache, copy_thumbnails, draw_master_figures, write_pages, write_plots
from .writers import copy_atomic, write_text_atomic

log = logging.getLogger("ccdcal")


@contextlib.contextmanager
def failure_recorded(output_dir: str | os.PathLike | None, kind: str, name: str) -> Iterator[None]:
    """Run a job of ``kind`` ('masters' or 'lights'): its error, if it fails, is kept in
    output_dir (``output_dir.failure_record``) for the night's summary, which is written
    even when jobs fail; a job that succeeds removes the record of an earlier failure.
    Without an output_dir (a job run on its own), nothing is kept."""
    if output_dir is None:
        yield
        return
    record = failure_record(output_dir, kind, name)
    record.unlink(missing_ok=True)
    try:
        yield
    except Exception as exc:
        with contextlib.suppress(OSError):  # the disk may be full: the log still has it
            write_text_atomic(f"{type(exc).__name__}: {exc}\n", record)
        raise


#: The library's undamaged masters with their headers (``library_headers``).
LibraryHeaders = list[tuple[LibraryMaster, fits.Header]]

MATCH_COLUMNS = ["frame", "frame_type", "step", "candidate", "source", "result"]


def plan_night(
    config: Mapping[str, Any],
    files: Iterable[str],
    unreadable_folders: Iterable[str] = (),
    work: Path | None = None,
    threads: int = 1,
) -> tuple[list[FrameRecord], dict[str, Any]]:
    """(inventory records, plan) of the night: every file's header read (paths relative
    to ``config['raw_dir']``; folders that could not be listed inventoried too, excluded
    with the reason), the master library scanned, the plan made. ``work``: the folder of
    the caches (output_dir/work: each file's inventory row, the checksums of the
    calibration frames, which give tonight's masters their identity, and the library's
    verdicts); None: no checksums (no master identities) and no cache, nothing written. ``threads``: files hashed at a
    time."""
    records, cameras = take_inventory(config["raw_dir"], files, config, None if work is None else work / INVENTORY_ROWS)
    records += [
        FrameRecord(f"{folder}/", reason="folder cannot be read (permission denied): the frames in it were not seen")
        for folder in unreadable_folders
    ]
    for record in records:
        if not record.ok:
            log.warning("excluded %s: %s", record.path, record.reason)
    checksums = None
    if work is not None:
        cache = ChecksumCache(work / CHECKSUMS)
        # the calibration frames' give tonight's masters their identity; the lights', the
        # keys of the light cache (light_cache): a rerun reads only new or changed files
        hashed = [r.path for r in records if r.ok and r.frame_type in (*MASTER_TYPES, "light")]
        checksums = cache.digests(config["raw_dir"], hashed, threads)
        cache.save(prune=True)
    library = scan_library(config.get("library_dir"), None if work is None else work / "library.json")
    for master in library:
        if master.damaged:
            log.warning("library master %s is damaged, not used: %s", master.file, master.damaged)
    return records, make_plan(records, config, cameras, library, checksums)


def inventory_job(
    files: Iterable[str],
    config: Mapping[str, Any],
    inventory_csv: str,
    plan_json: str,
    matches_csv: str,
    unreadable_folders: Iterable[str] = (),
    threads: int = 1,
) -> dict[str, Any]:
    """The night's plan (``plan_night``, caches in output_dir/work, files hashed on
    ``threads``) written as inventory.csv, plan.json and matches.csv."""
    records, plan = plan_night(config, files, unreadable_folders, Path(config["output_dir"]) / "work", threads)
    write_text_atomic(records_to_csv(records), inventory_csv)
    write_text_atomic(json.dumps(plan, indent=1, sort_keys=True) + "\n", plan_json)
    write_text_atomic(csv_text(plan["matches"], MATCH_COLUMNS), matches_csv)
    log.info(
        "%d files, %d ok, %d masters (%d from the library), %d light groups",
        len(records),
        sum(r.ok for r in records),
        len(plan["masters"]),
        sum(m["source"] == "library" for m in plan["masters"].values()),
        len(plan["light_groups"]),
    )
    return plan


def csv_text(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def master_job(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    master_files: Iterable[str],
    output: str,
    config: Mapping[str, Any],
    threads: int = 1,
    report: str | None = None,
    noise: str | None = None,
    quality_stop: Mapping[str, Any] | None = None,
    preview: str | None = None,
) -> dict[str, Any]:
    """Build one master, and its ``report`` when given (JSON: the raw frames used and
    those dropped, with why, and the library file it was copied from); ``noise`` the
    setup's noise record (JSON, ``noise_job``): the gain and read noise of its inputs;
    ``quality_stop``: the camera's QC limits when ``qc.on_fail`` is 'stop' (the master is
    not made when its setup's checks fail: ``qc.QualityStop``); ``preview``: the PNG
    path of its preview for the night's report (its histogram goes in the report);
    ``master_files`` are the masters its inputs need; ``camera``
    the settings that make it (``provenance.settings_for``; a whole profile does too). A
    master identical to one in the library (same MASTERID) is copied from it instead, and
    the copy verified (FrameError naming the library file when it is damaged)."""
    with failure_recorded(config.get("output_dir"), "masters", spec["name"]):
        if quality_stop and noise:
            stop_if_failed(setup_checks(read_noise_record(noise), quality_stop), f"master {spec['name']}")
        if spec.get("library_file"):
            copy_atomic(spec["library_file"], output)
            damage = verify_master(output)
            if damage:
                Path(output).unlink(missing_ok=True)
                raise FrameError(
                    f"library master {spec['library_file']} is damaged ({damage}); remove it "
                    "and run the same command again with --forcerun inventory, to build "
                    f"{spec['name']} from tonight's frames"
                )
            log.info("master %s: identical to library master %s, copied", spec["name"], spec["library_file"])
            summary = {
                "name": spec["name"],
                "type": spec["type"],
                "reused": spec["library_file"],
                **_inputs_of_library_master(output, spec),
            }
        else:
            paths = list(master_files)
            masters = {Path(p).stem: product for p, product in zip(paths, read_products(paths, threads))}
            summary = build_master(
                spec,
                camera,
                config["raw_dir"],
                masters,
                output,
                memory_limit_mb=config["memory_limit_mb"],
                threads=threads,
                config_digest=settings_digest(camera),
                noise=read_noise_record(noise),
                preview=preview,
            )
            if config.get("keep_intermediates") and spec.get("frames"):
                kept = write_intermediates(
                    spec, camera, config["raw_dir"], Path(config["output_dir"]) / "work" / "frames"
                )
                log.info("kept %d overscan-corrected frames", len(kept))
            log.info(
                "master %s: %d frames combined, median %.4g", summary["name"], summary["n_used"], summary["median"]
            )
        if preview and spec.get("library_file"):  # a library master's figures, from the copy
            product = read_products([output])[0]
            summary["histogram"] = write_figure_data(
                str(product.header.get("CCDCALTY", "master")), product.data, product.mask, preview
            )
        if report:
            record = {
                "used": summary["used"],
                "dropped": summary["dropped"],
                "copied_from": spec.get("library_file"),
                "qc": summary.get("qc") or {},
                "histogram": summary.get("histogram"),
            }
            write_text_atomic(json.dumps(record, indent=1, sort_keys=True) + "\n", report)
    return summary


def _inputs_of_library_master(path: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The raw frames a library master was made from (IMCMBnnn, %-decoded), and tonight's
    frames it does not hold (dropped when it was made: same inputs, same outcome)."""
    header = fits.getheader(path)
    used = [unquote(str(header[k])) for k in header if k.startswith("IMCMB")]
    dropped = {
        f["path"]: "dropped when the identical library master was made (see its HISTORY)"
        for f in spec.get("frames", [])
        if f["path"] not in used
    }
    return {"used": used, "dropped": dropped}


def light_group_job(
    group: Mapping[str, Any],
    camera: Mapping[str, Any],
    master_files: Iterable[str],
    out_dir: str,
    config: Mapping[str, Any],
    threads: int = 1,
    noise: str | None = None,
    quality_stop: Mapping[str, Any] | None = None,
    light_cache: str | os.PathLike | None = None,
) -> None:
    """Calibrate one group of lights into ``out_dir`` with a lights.csv report; ``noise``
    the setup's noise record (JSON, ``noise_job``); ``quality_stop``: the camera's QC
    limits when ``qc.on_fail`` is 'stop' (nothing is calibrated when the setup's checks
    or those of a master the lights need fail: ``qc.QualityStop``); ``light_cache``: the
    folder of the cache of calibrated lights (``light_cache``; the raw files' checksums
    are the inventory's, in output_dir/work): the lights it holds are taken from it, the
    others calibrated and filed into it. Without it, every light is calibrated."""
    out = Path(out_dir)
    with failure_recorded(config.get("output_dir"), "lights", out.name):
        if quality_stop:
            checks = setup_checks(read_noise_record(noise), quality_stop) if noise else []
            for path in master_files:
                report = Path(config["output_dir"]) / MASTER_REPORTS_DIR / f"{Path(path).stem}.json"
                if report.is_file():
                    kind = fits.getheader(path).get("CCDCALTY", "")
                    checks += master_checks(Path(path).stem, kind, json.loads(report.read_text()), quality_stop)
            stop_if_failed(checks, f"lights of {out.name}")
        out.mkdir(parents=True, exist_ok=True)
        files = {Path(p).stem: p for p in master_files}
        start = time.perf_counter()
        cache = None
        if light_cache is not None:
            cache = LightCache(light_cache, Path(config["output_dir"]) / "work" / CHECKSUMS)
        rows = calibrate_group(
            group,
            camera,
            config["raw_dir"],
            files,
            out,
            settings_digest(camera),
            threads,
            noise=read_noise_record(noise),
            cache=cache,
        )
        write_text_atomic(report_csv(rows), out / GROUP_REPORT)
    failed = [r for r in rows if r["status"] != "calibrated"]
    seconds = time.perf_counter() - start
    log.info(
        "%d lights calibrated, %d failed, in %.1f s (%.0f ms per light, %d threads)",
        len(rows) - len(failed),
        len(failed),
        seconds,
        1000 * seconds / max(len(rows), 1),
        threads,
    )
    if cache is not None:
        log.info(
            "light cache: %d lights reused, %d calibrated now (%d filed into the cache)",
            cache.reused,
            len(rows) - cache.reused,
            cache.filed,
        )
        if len(cache.problems) > WARNED:
            log.warning("light cache: %d problems in all (the first %d above)", len(cache.problems), WARNED)


def noise_job(
    plan: Mapping[str, Any], camera: Mapping[str, Any], output: str, config: Mapping[str, Any], threads: int = 1
) -> dict[str, Any]:
    """Measure one setup's gain and read noise and decide the values its masters and
    lights use (``night_noise``); the record is written to ``output`` (JSON)."""
    with failure_recorded(config.get("output_dir"), "noise", plan["name"]):
        record = measure_setup(plan, camera, Path(config["raw_dir"]), threads)
        log.info(
            "setup %s: gain %.4g e-/ADU (%s), read noise %.4g e- (%s)",
            plan["name"],
            record["gain"],
            record["gain_source"],
            record["read_noise_e"],
            record["read_noise_source"],
        )
        for warning in record["warnings"]:
            log.warning("setup %s: %s", plan["name"], warning)
        for problem in record["problems"]:
            log.warning("setup %s: %s", plan["name"], problem)
        write_text_atomic(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n", output)
    return record


def read_noise_record(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """A setup's noise record (``noise_job``), None without a path."""
    return None if not path else json.loads(Path(path).read_text(encoding="utf-8"))


def file_in_library_job(master: str, destination: str) -> None:
    """File a master into the library (see ccdcal.library for the layout)."""
    copy_atomic(master, destination)
    log.info("filed %s as %s", master, destination)


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
