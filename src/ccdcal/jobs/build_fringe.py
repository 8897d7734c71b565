"""The fringe-frame job: one fringe frame made from tonight's lights of a band, and its report."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..fringe_master import build_fringe_master
from ..provenance import settings_digest
from ..writers import copy_atomic, write_text_atomic
from . import failure_recorded, read_noise_record

log = logging.getLogger("ccdcal")


def fringe_job(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    master_files: Iterable[str],
    output: str,
    config: Mapping[str, Any],
    threads: int = 1,
    report: str | None = None,
    noise: str | None = None,
    preview: str | None = None,
) -> dict[str, Any]:
    """Make the fringe frame ``spec`` (``fringe_master.build_fringe_master``) at ``output``,
    or copy the identical library frame (same MASTERID), and write its ``report`` (JSON:
    the lights used and dropped, with why; its figures' data in ``preview``).
    ``master_files``: the masters its lights are calibrated with (file stems are their
    names); ``noise``: the setup's noise record (JSON)."""
    with failure_recorded(config.get("output_dir"), "masters", spec["name"]):
        if spec.get("library_file"):
            copy_atomic(spec["library_file"], output)
            log.info("fringe frame %s: identical to library frame %s, copied", spec["name"], spec["library_file"])
            summary = {
                "name": spec["name"],
                "type": "fringe",
                "reused": spec["library_file"],
                "used": [],
                "dropped": {},
            }
            summary["qc"] = {}
        else:
            files = {Path(p).stem: str(p) for p in master_files}
            summary = build_fringe_master(
                spec,
                camera,
                config["raw_dir"],
                files,
                output,
                threads=threads,
                config_digest=settings_digest(camera),
                noise=read_noise_record(noise),
                preview=preview,
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
