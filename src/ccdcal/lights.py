"""Calibrating a group of light frames that share their masters (one job, masters read once).

Each light is overscan-corrected and trimmed, bias/dark-subtracted and flat-divided
(see ``calibrate``), and written as float32 with UNCERT and MASK extensions. The header
keeps the raw header (less the layout cards) and says what produced the file: RAWFILE,
RAWSUM, the masters with their checksums, the dark mode and scale, the overscan method
and levels, CALFLAGS for missing steps, software versions and the config digest.
A light that fails is reported and the others go on.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from astropy.io import fits

from .calibrate import Calibration, subtrahend
from .camera import CameraProfile
from .frames import FrameError, RawFrame, copy_header_cards, file_digest
from .overscan import FrameCorrector, layout_for
from .products import Product, read_product, write_product
from .provenance import add_software_cards

log = logging.getLogger("ccdcal.lights")

REPORT_COLUMNS = ["path", "status", "output", "bias", "dark", "dark_mode", "dark_scale", "flat",
                  "flags", "notes", "error"]

#: Cards that described the raw layout and are wrong after trimming.
LAYOUT_KEYWORDS = ("BIASSEC", "DATASEC", "TRIMSEC", "CCDSEC", "AMPSEC", "DETSEC")


def output_name(rel_path: str) -> str:
    """Calibrated file path for a raw path: same folders and name, .fz/.gz dropped."""
    path = rel_path
    for suffix in (".fz", ".gz", ".FZ", ".GZ"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return path


def _read_noise_adu(profile: CameraProfile, header, gain: float, masters: list[Product]
                    ) -> tuple[float, str]:
    value, source = profile.value_or_keyword(header, "read_noise")
    if value is not None:
        return value / gain, source
    for master in masters:
        if master is not None and "RDNOISE" in master.header:
            return float(master.header["RDNOISE"]) / gain, f"master {master.path.name}"
    return 0.0, "unknown"


def light_header(raw: RawFrame, rel_path: str, raw_digest: str, entry: Mapping[str, Any],
                 masters: Mapping[str, Product | None], layout, levels: list[float], gain: float,
                 gain_source: str, read_noise_e: float, rn_source: str, config_digest: str | None
                 ) -> fits.Header:
    header = fits.Header()
    copy_header_cards(header, raw.primary_header if raw.hdu_index else None, raw.image_header)
    for key in LAYOUT_KEYWORDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    x0, y0 = layout.trim.x1 - 1, layout.trim.y1 - 1
    if x0 or y0:  # keep the WCS and IRAF physical coordinates right after trimming
        for axis, shift in (("1", x0), ("2", y0)):
            if f"CRPIX{axis}" in header:
                header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - shift
            header[f"LTV{axis}"] = (float(header.get(f"LTV{axis}", 0.0)) - shift, "offset to raw pixels")
    header["RAWFILE"] = (rel_path, "raw frame, relative to raw_dir")
    header["RAWSUM"] = (raw_digest, "sha256[:16] of the raw file")
    header["TRIMSEC0"] = (str(layout.trim), "raw section kept (FITS 1-based)")
    header["OVSCMETH"] = (layout.method, "overscan method")
    for i, level in enumerate(levels, start=1):
        header[f"OVSCLV{i}"] = (round(level, 3), f"[ADU] mean overscan level, amplifier {i}")
    for step, key in (("bias", "BIAS"), ("dark", "DARK"), ("flat", "FLAT")):
        master = masters.get(step)
        if master is not None:
            header[f"{key}FILE"] = (master.path.name, f"master {step}")
            header[f"{key}SUM"] = (master.digest, f"sha256[:16] of the master {step}")
    if masters.get("dark") is not None:
        header["DARKMODE"] = (entry["dark_mode"], "unscaled (bias included) or scaled")
        header["DARKSCAL"] = (float(entry["dark_scale"]), "factor applied to the (bias-subtracted) dark")
    header["CALFLAGS"] = (",".join(entry["flags"]) or "OK", "missing calibration steps")
    header["GAINUSED"] = (gain, f"[e-/ADU] from {gain_source}")
    header["RNUSED"] = (round(read_noise_e, 4), f"[e-] read noise from {rn_source}"[:47])
    header.add_history("ccdcal: overscan/trim, bias, dark, flat; UNCERT = 1 sigma; MASK bits MASKBn")
    add_software_cards(header, config_digest)
    return header


def expected_memory_mb(shape: tuple[int, int], n_masters: int, threads: int) -> int:
    """Peak memory (MB) of a light-group job: the job overhead, its masters (13 bytes/pixel each),
    the group's prepared calibration planes (25 bytes/pixel) and, per thread, one light being
    calibrated (raw bytes, image, UNCERT, MASK, scratch: 16 bytes/pixel)."""
    from .masters import JOB_OVERHEAD_MB, MASTER_BYTES_PER_PIXEL

    pixels = shape[0] * shape[1]
    per_pixel = MASTER_BYTES_PER_PIXEL * n_masters + 25 + 16 * threads
    return int(JOB_OVERHEAD_MB + pixels * per_pixel / 2**20) + 1


class GroupCalibrations:
    """The ``Calibration`` of each (masters, dark scale, gain, read noise) met in a group,
    built once and shared by the lights (and threads) that need it."""

    def __init__(self, masters: Mapping[str, Product], weak_threshold: float):
        self.masters = masters
        self.weak_threshold = weak_threshold
        self._built: dict[tuple, Calibration] = {}
        self._lock = threading.Lock()

    def get(self, entry: Mapping[str, Any], gain: float, read_noise_adu: float) -> Calibration:
        key = (entry.get("bias"), entry.get("dark"), entry.get("dark_mode"), entry.get("dark_scale"),
               entry.get("flat"), gain, read_noise_adu)
        with self._lock:
            if key not in self._built:
                step = {s: self.masters.get(entry.get(s)) if entry.get(s) else None
                        for s in ("bias", "dark", "flat")}
                sub = subtrahend(step["bias"], step["dark"], entry.get("dark_mode"), entry.get("dark_scale"))
                self._built[key] = Calibration(sub, step["flat"], gain, read_noise_adu, self.weak_threshold)
            return self._built[key]


def calibrate_light(raw_dir: Path, entry: Mapping[str, Any], profile: CameraProfile,
                    calibrations: GroupCalibrations, out_dir: Path, config_digest: str | None) -> str:
    """Calibrate one light; returns the output path relative to ``out_dir``."""
    rel = entry["path"]
    masters = {step: calibrations.masters.get(entry.get(step)) if entry.get(step) else None
               for step in ("bias", "dark", "flat")}
    with RawFrame(raw_dir / rel, label=rel) as raw:
        raw.check_complete()
        layout = layout_for(raw.header, raw.shape, profile.config)
        for step, master in masters.items():
            if master is not None and master.data.shape != layout.shape:
                raise FrameError(f"{rel}: trimmed shape {layout.shape} differs from master {step} "
                                 f"{master.path.name} {master.data.shape}")
        corrector = FrameCorrector(raw.read, layout)
        saturation, _ = profile.value_or_keyword(raw.header, "saturation")
        if saturation is None:
            saturation = raw.integer_max
        data, saturated = corrector.full(saturation)
        gain, gain_source = profile.value_or_keyword(raw.header, "gain")
        if gain is None:
            gain, gain_source = 1.0, "default (unknown)"
        rn_adu, rn_source = _read_noise_adu(profile, raw.header, gain,
                                            [masters.get("bias"), masters.get("dark")])
        image, uncert, mask = calibrations.get(entry, gain, rn_adu).apply(data, saturated)
        header = light_header(raw, rel, file_digest(raw_dir / rel), entry, masters, layout,
                              corrector.levels, gain, gain_source, rn_adu * gain, rn_source, config_digest)
    out_rel = output_name(rel)
    write_product(out_dir / out_rel, image, uncert, mask, header)
    return out_rel


def calibrate_group(group: Mapping[str, Any], camera: Mapping[str, Any], raw_dir: str | Path,
                    master_files: Mapping[str, str | Path], out_dir: str | Path,
                    config_digest: str | None = None, threads: int = 1) -> list[dict[str, Any]]:
    """Calibrate every light of a plan group into ``out_dir``; one report row per light.

    ``master_files`` maps master names to their files; masters are read once, and lights
    are calibrated ``threads`` at a time. Rows come back in the group's order.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    profile = CameraProfile(dict(camera))
    masters = {name: read_product(path) for name, path in master_files.items()}
    calibrations = GroupCalibrations(masters, profile.config["flat"]["weak_threshold"])

    def one(entry: Mapping[str, Any]) -> dict[str, Any]:
        row = {k: entry.get(k, "") for k in REPORT_COLUMNS}
        row.update(flags=",".join(entry["flags"]), notes="; ".join(entry.get("notes", [])), error="")
        try:
            row["output"] = calibrate_light(raw_dir, entry, profile, calibrations, out_dir, config_digest)
            row["status"] = "calibrated"
        except (FrameError, ValueError, OSError) as exc:
            log.error("light %s failed: %s", entry["path"], exc)
            row.update(status="failed", output="", error=str(exc))
        return row

    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one, group["lights"]))
    return [one(entry) for entry in group["lights"]]


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in REPORT_COLUMNS})
    return out.getvalue()

