"""A fringe frame made as a master: tonight's lights of a fringing band, each calibrated
with the masters it gets itself (up to the flat), combined by ``ccdcal.fringe``.

The plan (``plan.build_fringe_masters``) lists the lights and each one's bias, dark and
flat; ``build_fringe_master`` calibrates them one at a time with the light engine
(``Calibrator``: the same arithmetic and UNCERT as the light jobs, the image steps left
out), hands their planes to ``fringe.build_fringe_frame`` and writes the frame as a
ccdcal product (data: fraction of the sky; UNCERT; MASK with FRINGEFILL) whose header has
the library's cards (``library.library_cards``), its inputs (IMCMBnnn: a light job tells
from them whether its light is one) and how it was made. A light that cannot be
calibrated is left out, with the reason, as a master's dropped input is.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .calibrator import Calibrator
from .camera import MASTER_TYPES
from .frames import FrameError
from .fringe import FringeSettings, build_fringe_frame
from .library import library_cards
from .lights import noise_settings
from .previews import write_figure_data
from .products import ascii_header_text, read_product, write_product
from .provenance import add_software_cards
from .qc import master_statistics
from .steps import light_steps

log = logging.getLogger("ccdcal")


def build_fringe_master(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    raw_dir: str | Path,
    master_files: Mapping[str, str],
    output: str | Path,
    threads: int = 1,
    config_digest: str | None = None,
    noise: Mapping[str, Any] | None = None,
    preview: str | None = None,
) -> dict[str, Any]:
    """Make the fringe frame of plan entry ``spec`` (type 'fringe') at ``output``.
    ``camera``: the settings that make it (``provenance.settings_for(profile, 'fringe')``);
    ``master_files``: master name -> file of the masters its lights are calibrated with;
    ``noise``: the setup's noise record (the light jobs' gain and read noise). Returns a
    summary as ``masters.build_master``'s. FrameError when fewer lights than
    ``fringe.min_frames`` could be calibrated."""
    settings = FringeSettings.from_dict(camera.get("fringe"))
    arithmetic = [s.name for s in light_steps(camera.get("steps")) if s.stage != "image"]
    calibrator = Calibrator.for_camera(camera, threads=threads)
    noise_values, noise_flags = noise_settings(noise)
    used: list[str] = []
    dropped: dict[str, str] = {}
    output = Path(output)

    def calibrated(scratch: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for n, frame in enumerate(spec["frames"]):
            rel, chosen = frame["path"], frame.get("calibration") or {}
            masters = {
                f"master_{step}": master_files[chosen[step]] if chosen.get(step) else None for step in MASTER_TYPES
            }
            try:
                path = calibrator.calibrate(
                    Path(raw_dir) / rel,
                    scratch / f"{n}.fits",
                    raw_label=rel,
                    steps=arithmetic,
                    dark_mode=chosen.get("dark_mode") or "auto",
                    dark_scale=chosen.get("dark_scale"),
                    checksum=False,
                    **masters,
                    **noise_values,
                )
                product = read_product(path)
                path.unlink()
            except (FrameError, ValueError, OSError) as exc:
                dropped[rel] = str(exc).removeprefix(f"{rel}: ")
                log.warning("fringe frame %s: dropped %s: %s", spec["name"], rel, dropped[rel])
                continue
            used.append(rel)
            yield product.data, product.uncert, product.mask

    # beside the output, named as a killed writer's file is (``.*.tmp``): a job killed here
    # leaves it to the next run, which removes it (``output_dir.find_incomplete``)
    with tempfile.TemporaryDirectory(prefix=f".{output.stem}-", suffix=".tmp", dir=output.parent) as scratch:
        try:
            frame = build_fringe_frame(calibrated(Path(scratch)), settings, workdir=scratch)
        except ValueError as exc:
            reasons = "; ".join(f"{rel}: {why}" for rel, why in dropped.items())
            raise FrameError(
                f"fringe frame {spec['name']}: {exc}" + (f" (dropped: {reasons})" if reasons else "")
            ) from None
    header = fits.Header()
    for key, card in library_cards(spec).items():
        header[key] = card
    header["NCOMBINE"] = (len(used), "lights combined")
    flags = sorted({*(spec.get("flags") or []), *noise_flags})
    header["CALFLAGS"] = (",".join(flags) or "OK", "steps its inputs were calibrated without")
    for key, card in frame.cards.items():
        header[key] = card
    for i, rel in enumerate(used, start=1):
        header[f"IMCMB{i:03d}"] = ascii_header_text(rel)
    for rel, reason in dropped.items():
        header.add_history(ascii_header_text(f"dropped {rel}: {reason}"))
    header.add_history("ccdcal fringe frame: (light - sky plane) / sky, sources masked, clipped weighted mean")
    add_software_cards(header, config_digest)
    write_product(output, frame.data, frame.uncert, frame.mask, header, unit="")
    histogram = write_figure_data("fringe", frame.data, frame.mask, preview) if preview else None
    log.info(
        "fringe frame %s: %d lights, rms %.4g of the sky, %d pixels filled",
        spec["name"],
        len(used),
        frame.cards["FRNGRMS"][0],
        frame.cards["FRNGFILL"][0],
    )
    return {
        "name": spec["name"],
        "type": "fringe",
        "n_used": len(used),
        "used": used,
        "dropped": dropped,
        "median": float(np.median(frame.data)),
        "read_noise_e": None,
        "qc": {**master_statistics("fringe", frame.data, frame.uncert, frame.mask), "skies": frame.skies},
        "histogram": histogram,
    }
