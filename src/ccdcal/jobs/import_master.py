"""The import job: one PixInsight master converted into a ccdcal master product."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..pixinsight_import import import_master
from ..products import read_products
from ..provenance import settings_digest
from . import failure_recorded, read_noise_record

log = logging.getLogger("ccdcal")


def import_master_job(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    settings: Mapping[str, Any],
    master_files: Iterable[str],
    output: str,
    config: Mapping[str, Any],
    noise: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Convert the PixInsight master of plan entry ``spec`` into a ccdcal product at
    ``output`` (``pixinsight_import``); ``settings``: the configuration's
    ``pixinsight_import``; ``master_files``: the bias master of a dark (none otherwise);
    ``noise``: the setup's noise record (JSON), when tonight has one; ``camera``: the
    settings of a master of its type (``provenance.settings_for``)."""
    with failure_recorded(config.get("output_dir"), "masters", spec["name"]):
        paths = list(master_files)
        bias = read_products(paths)[0] if paths else None
        summary = import_master(
            spec,
            camera,
            settings,
            output,
            bias=bias,
            noise=read_noise_record(noise),
            config_digest=settings_digest(camera),
            threads=threads,
        )
        log.info(
            "imported %s from %s: x%g to ADU, N = %d, flags %s",
            spec["name"],
            spec["file"],
            summary["scale"],
            summary["count"],
            ",".join(summary["flags"]) or "none",
        )
    return summary
