"""The light-group job: one group of lights that share their masters calibrated."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astropy.io import fits

from ..library import CHECKSUMS
from ..light_cache import WARNED, LightCache
from ..lights import calibrate_group, report_csv
from ..output_dir import GROUP_REPORT, MASTER_REPORTS_DIR
from ..provenance import settings_digest
from ..qc import master_checks, setup_checks, stop_if_failed
from ..writers import write_text_atomic
from . import failure_recorded, read_noise_record

log = logging.getLogger("ccdcal")


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
    the setup's noise record (JSON, ``measure_noise.noise_job``); ``quality_stop``: the
    camera's QC limits when ``qc.on_fail`` is 'stop' (nothing is calibrated when the
    setup's checks or those of a master the lights need fail: ``qc.QualityStop``);
    ``light_cache``: the folder of the cache of calibrated lights (``light_cache``; the
    raw files' checksums are the inventory's, in output_dir/work): the lights it holds
    are taken from it, the others calibrated and filed into it. Without it, every light
    is calibrated."""
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
