"""The master job: one master (bias, dark or flat) built from its raw frames, or copied
from the library, and its report."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..masters import build_master, write_intermediates
from ..products import read_products
from ..provenance import settings_digest
from ..qc import setup_checks, stop_if_failed
from . import copy_library_master, failure_recorded, read_noise_record, write_master_report

log = logging.getLogger("ccdcal")


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
    setup's noise record (JSON, ``measure_noise.noise_job``): the gain and read noise of
    its inputs; ``quality_stop``: the camera's QC limits when ``qc.on_fail`` is 'stop'
    (the master is not made when its setup's checks fail: ``qc.QualityStop``);
    ``preview``: the PNG path of its preview for the night's report (its histogram goes
    in the report); ``master_files`` are the masters its inputs need; ``camera`` the
    settings that make it (``provenance.settings_for``; a whole profile does too). A
    master identical to one in the library (same MASTERID) is copied from it instead, and
    the copy verified (FrameError naming the library file when it is damaged)."""
    with failure_recorded(config.get("output_dir"), "masters", spec["name"]):
        if quality_stop and noise:
            stop_if_failed(setup_checks(read_noise_record(noise), quality_stop), f"master {spec['name']}")
        if spec.get("library_file"):
            summary = copy_library_master(spec, output, preview)
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
        if report:
            write_master_report(report, summary, spec)
    return summary
