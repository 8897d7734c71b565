"""The inventory job (bookkeeping, in Snakemake's process): every raw file's header read,
the master library scanned, the night's plan made and written."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..camera import MASTER_TYPES
from ..inventory import INVENTORY_ROWS, FrameRecord, records_to_csv, take_inventory
from ..library import CHECKSUMS, ChecksumCache, scan_library
from ..light_cache import holds_lights
from ..pixinsight_library import PixInsightMaster, as_library_masters, scan_pixinsight, unusable_rows
from ..plan import fringe_band_lights, make_plan
from ..writers import write_text_atomic

log = logging.getLogger("ccdcal")

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
        # keys of the light cache (light_cache), once it holds lights: a first run's light
        # jobs hash each light from the bytes they calibrate (RAWSUM), so the night's
        # gigabytes of lights are not read here, before any master can start; a rerun
        # reads only new or changed files
        kinds = (*MASTER_TYPES, "light") if holds_lights(work.parent) else MASTER_TYPES
        hashed = [r.path for r in records if r.ok and r.frame_type in kinds]
        # the lights a fringe frame is made from give it its identity too
        hashed += [r.path for r in fringe_band_lights(records, cameras) if r.frame_type not in kinds]
        checksums = cache.digests(config["raw_dir"], hashed, threads)
        cache.save(prune=True)
    library = scan_library(config.get("library_dir"), None if work is None else work / "library.json")
    for master in library:
        if master.damaged:
            log.warning("library master %s is damaged, not used: %s", master.file, master.damaged)
    pixinsight = scan_pixinsight(
        config.get("pixinsight_library"),
        config,
        None if work is None else work / PIXINSIGHT_CACHE,
        {r.instrument for r in records if r.ok},
    )
    log_pixinsight(pixinsight, cameras)
    plan = make_plan(records, config, cameras, [*library, *as_library_masters(pixinsight)], checksums)
    plan["matches"] += unusable_rows(pixinsight)
    return records, plan


#: The PixInsight masters' digests and verdicts, in output_dir/work (``scan_pixinsight``).
PIXINSIGHT_CACHE = "pixinsight.json"


def log_pixinsight(masters: list[PixInsightMaster], cameras: Mapping[str, Any]) -> None:
    """One line per PixInsight master: what it is and where each value came from, or why
    it cannot be used; a master of none of tonight's cameras is said to be one."""
    for m in masters:
        where = ", ".join(f"{k} from {v}" for k, v in sorted(m.sources.items()))
        if m.problem:
            log.warning("PixInsight master %s (%s) not used: %s", m.file, m.name, m.problem)
        elif m.camera not in cameras:
            log.info("PixInsight master %s (%s): camera %s, not tonight's; %s", m.file, m.name, m.camera, where)
        else:
            log.info("PixInsight master %s: %s %s (%s)", m.file, m.type, m.name, where)
        for note in m.notes:
            log.warning("PixInsight master %s: %s", m.name, note)


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
        "%d files, %d ok, %d masters (%d from a library), %d light groups",
        len(records),
        sum(r.ok for r in records),
        len(plan["masters"]),
        sum(m["source"] != "tonight" for m in plan["masters"].values()),
        len(plan["light_groups"]),
    )
    return plan


def csv_text(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
