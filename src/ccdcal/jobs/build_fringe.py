"""The fringe-frame job: one fringe frame made from tonight's lights of a band, and its report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..fringe_master import build_fringe_master
from ..provenance import settings_digest
from . import copy_library_master, failure_recorded, read_noise_record, write_master_report


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
    or copy the identical library frame (same MASTERID, verified: ``copy_library_master``),
    and write its ``report`` (JSON: the lights used and dropped, with why; its figures'
    data in ``preview``).
    ``master_files``: the masters its lights are calibrated with (file stems are their
    names); ``noise``: the setup's noise record (JSON)."""
    with failure_recorded(config.get("output_dir"), "masters", spec["name"]):
        if spec.get("library_file"):
            summary = copy_library_master(spec, output, preview)
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
            write_master_report(report, summary, spec)
    return summary
