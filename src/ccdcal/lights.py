"""Calibrating a group of light frames that share their masters: one job, masters read
once, lights ``threads`` at a time, each through ``Calibrator`` (the one implementation of
light calibration; see ccdcal.calibrator for what a calibrated frame holds). A light that
fails is reported and the others go on, whatever the error; only errors that are not the
frame's (disk full, out of memory) stop the job, so that it fails and can be run again.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .calibrator import Calibrator
from .camera import LIGHT_MASTERS
from .frames import FrameError
from .light_cache import LightCache, write_group_keys
from .parallel import map_in_threads
from .products import COMPRESSED_SUFFIX
from .writers import BackgroundWriter, disk_full

log = logging.getLogger("ccdcal.lights")

#: The calibrated light's quality figures (``qc.light_statistics``; ADU, fractions) and its
#: overscan levels (ADU, ';'-joined per amplifier), for the night's quality checks.
QC_COLUMNS = [
    "sky",
    "noise_ratio",
    "masked",
    "saturated",
    "gradient",
    "flatness",
    "overscan_levels",
    "fringe_amplitude",
    "fringe_before",
    "fringe_after",
]
REPORT_COLUMNS = [
    "path",
    "status",
    "output",
    "bias",
    "dark",
    "dark_mode",
    "dark_scale",
    "flat",
    "fringe",
    "flags",
    "notes",
    "error",
    *QC_COLUMNS,
]


#: Sub-folder of a light group's folder holding its lights' thumbnails (JPEG; not published).
THUMBNAILS = ".thumbnails"


def thumbnail_name(output: str) -> str:
    """The thumbnail file of a calibrated light ('ccd/lights/a.fits' -> 'ccd/lights/a.jpg',
    compressed 'ccd/lights/a.fits.fz' too)."""
    if output.endswith(COMPRESSED_SUFFIX):
        output = output[: -len(COMPRESSED_SUFFIX)]
    return output.rsplit(".", 1)[0] + ".jpg"


def stops_the_job(exc: BaseException) -> bool:
    """True for errors that are not one frame's: no space or quota left on the disk, or
    no memory (also when another exception masks them, as astropy's clean-up does)."""
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes and contexts
        if seen is None:
            break
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return disk_full(exc, ".") is not None


def noise_settings(noise: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """(Calibrator parameters, flags) of a setup's noise record (``night_noise.measure_setup``):
    gain (e-/ADU), read noise (e-), their sources, the dark variance rate (ADU²/s); none
    without a record."""
    if noise is None:
        return {}, []
    values = {
        "gain": noise["gain"],
        "gain_source": noise["gain_source"],
        "read_noise": noise["read_noise_e"],
        "read_noise_source": noise["read_noise_source"],
        "dark_variance_rate": noise.get("dark_variance_rate") or None,
    }
    return values, list(noise["flags"])


def report_row(entry: Mapping[str, Any], noise_flags: list[str]) -> dict[str, Any]:
    """A light's lights.csv row from its plan entry, before it is calibrated."""
    row = {k: entry.get(k, "") for k in REPORT_COLUMNS}
    row.update(flags=",".join([*entry["flags"], *noise_flags]), notes="; ".join(entry.get("notes", [])), error="")
    return row


def calibrate_group(
    group: Mapping[str, Any],
    camera: Mapping[str, Any],
    raw_dir: str | Path,
    master_files: Mapping[str, str | Path],
    out_dir: str | Path,
    config_digest: str | None = None,
    threads: int = 1,
    noise: Mapping[str, Any] | None = None,
    cache: LightCache | None = None,
    calibrator: Calibrator | None = None,
) -> list[dict[str, Any]]:
    """Calibrate every light of a plan group into ``out_dir``; one report row per light,
    in the group's order. ``master_files`` maps master names to their files; ``noise``
    the setup's gain, read noise, their sources and flags (``night_noise.measure_setup``),
    used for every light (without it, each light's from the profile or its header).

    ``threads`` lights are calibrated at a time; their files are written to the disk by
    one more thread (``BackgroundWriter``), so the calibrating threads do not wait for it.

    With a ``cache`` (``light_cache.LightCache``), a light whose calibrated file would be
    the one filed there (same key) is linked from it, not calibrated; every light
    calibrated is filed into it once its file is in place, and the group's keys are
    recorded in ``out_dir`` (``light_cache.GROUP_KEYS``). ``calibrator``: one made for
    ``camera`` before, whose masters stay in memory from call to call (``ccdcal watch``);
    by default a new one."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    noise_values, noise_flags = noise_settings(noise)
    keys: dict[str, tuple[str, dict[str, Any]]] = {}
    key_for = None
    restored: dict[str, dict[str, Any]] = {}
    if cache is not None:
        noise_inputs = None if noise is None else {**noise_values, "flags": noise_flags}
        keys, key_for = cache.keys(group["lights"], raw_dir, master_files, camera, noise_inputs, threads)
        for entry in group["lights"]:
            if entry["path"] not in keys:
                continue
            statistics = cache.restore(
                keys[entry["path"]][0],
                out_dir / entry["output"],
                out_dir / THUMBNAILS / thumbnail_name(entry["output"]),
            )
            if statistics is not None:
                restored[entry["path"]] = {**report_row(entry, noise_flags), **statistics, "status": "calibrated"}
    todo = [entry for entry in group["lights"] if entry["path"] not in restored]
    calibrated = {
        row["path"]: row
        for row in _calibrate(
            todo,
            camera,
            raw_dir,
            master_files,
            out_dir,
            config_digest,
            threads,
            noise_values,
            noise_flags,
            cache,
            keys,
            key_for,
            calibrator,
        )
    }
    rows = [restored.get(entry["path"]) or calibrated[entry["path"]] for entry in group["lights"]]
    if cache is not None:
        write_group_keys(
            out_dir,
            {r["output"]: keys[r["path"]][0] for r in rows if r["status"] == "calibrated" and r["path"] in keys},
        )
    return rows


def _calibrate(
    lights: list[Mapping[str, Any]],
    camera: Mapping[str, Any],
    raw_dir: Path,
    master_files: Mapping[str, str | Path],
    out_dir: Path,
    config_digest: str | None,
    threads: int,
    noise_values: Mapping[str, Any],
    noise_flags: list[str],
    cache: LightCache | None,
    keys: dict[str, tuple[str, dict[str, Any]]],
    key_for: Callable[[Mapping[str, Any], str], tuple[str, dict[str, Any]]] | None,
    calibrator: Calibrator | None = None,
) -> list[dict[str, Any]]:
    """``calibrate_group``'s calibration of ``lights`` (all of the group's, or those the
    cache did not hold), each filed into ``cache`` under its key once in place: its key in
    ``keys``, else ``key_for``'s from the bytes its calibration read (added to ``keys``)."""
    if not lights:
        return []
    calibrator = calibrator or Calibrator.for_camera(camera, threads=threads)
    used = {entry[s] for entry in lights for s in LIGHT_MASTERS if entry.get(s)}
    calibrator.load_masters(master_files[name] for name in sorted(used))

    def failed(row: dict[str, Any], exc: Exception) -> dict[str, Any]:
        if stops_the_job(exc):
            full = disk_full(exc, out_dir / row["output"])
            if full is None:
                raise exc
            raise full
        expected = isinstance(exc, (FrameError, ValueError, OSError))
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        log.error("light %s failed: %s", row["path"], message, exc_info=exc if not expected else None)
        if row["output"]:  # no thumbnail of a light that is not there
            (out_dir / THUMBNAILS / thumbnail_name(row["output"])).unlink(missing_ok=True)
        row.update(status="failed", output="", error=message)
        return row

    def file_into_cache(row: dict[str, Any], written: Future) -> None:
        """Once the light's file is in place (the writer's thread, or at once)."""
        if written.exception() is not None:
            return
        key, inputs = keys[row["path"]]
        output = out_dir / row["output"]
        statistics = {k: row[k] for k in QC_COLUMNS if k in row}
        try:
            cache.store(key, inputs, output, out_dir / THUMBNAILS / thumbnail_name(row["output"]), statistics)
        except Exception as exc:  # never the night's failure
            log.warning("light cache: could not file %s (%s: %s)", row["path"], type(exc).__name__, exc)

    def start(entry: Mapping[str, Any]) -> tuple[dict[str, Any], Future | None]:
        """The light calibrated and its file handed to the writer (or its failed row)."""
        row = report_row(entry, noise_flags)
        rel = entry["path"]
        masters = {f"master_{s}": master_files[entry[s]] if entry.get(s) else None for s in LIGHT_MASTERS}
        statistics: dict[str, Any] = {}
        try:
            written = calibrator.calibrate(
                raw_dir / rel,
                out_dir / entry["output"],
                raw_label=rel,
                statistics=statistics,
                thumbnail=out_dir / THUMBNAILS / thumbnail_name(entry["output"]),
                config_digest=config_digest,
                flags=[*entry["flags"], *noise_flags],
                dark_mode=entry.get("dark_mode") or "auto",
                dark_scale=entry.get("dark_scale"),
                writer=writer,
                **masters,
                **noise_values,
            )
        except Exception as exc:
            return failed(row, exc), None
        row.update({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in statistics.items() if k in QC_COLUMNS})
        if cache is not None and rel not in keys and key_for is not None:
            keys[rel] = key_for(entry, statistics["raw_sha256"])  # one thread per light: no race
        if cache is not None and rel in keys:
            written.add_done_callback(lambda done: file_into_cache(row, done))
        return row, written

    def finish(row: dict[str, Any], written: Future | None) -> dict[str, Any]:
        """The row once the light's file is in place (or has failed to be)."""
        if written is None:
            return row
        try:
            written.result()
        except Exception as exc:
            return failed(row, exc)
        row["status"] = "calibrated"
        return row

    with BackgroundWriter() as writer:
        started = map_in_threads(start, lights, threads)
    return [finish(row, written) for row, written in started]


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in REPORT_COLUMNS})
    return out.getvalue()
