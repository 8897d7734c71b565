"""The master job: one master (bias, dark or flat) built from its raw frames, or copied
from the library, and its report."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from astropy.io import fits

from ..frames import FrameError
from ..library import verify_master
from ..masters import build_master, write_intermediates
from ..previews import write_figure_data
from ..products import read_products
from ..provenance import settings_digest
from ..qc import setup_checks, stop_if_failed
from ..writers import copy_atomic, write_text_atomic
from . import failure_recorded, read_noise_record

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
