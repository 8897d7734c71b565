"""The noise job: one setup's gain and read noise measured and decided."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..night_noise import measure_setup
from ..writers import write_text_atomic
from . import failure_recorded

log = logging.getLogger("ccdcal")


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
