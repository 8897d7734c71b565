"""The inventory of a night: every file found under ``raw_dir``, read by its header only.

Each file gets one ``FrameRecord``: its frame type and how that was decided, its camera
and setup (binning, gain setting, offset, readout mode, temperature in C, exposure in s,
filter, date) and its trimmed shape, or ``status='excluded'`` with the reason. A file that
is not FITS, unreadable, truncated, of undecidable type or with a bad geometry is
excluded; it never stops the night.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from .camera import CameraProfile, HeaderView, binning, profile_for, profiles_from_config
from .frames import FrameError, RawFrame, is_fits_name
from .overscan import layout_for


def parse_shape(text: str) -> tuple[int, int]:
    """(ny, nx) of a shape written 'NYxNX' (FrameRecord.shape and raw_shape, a plan's
    setup); ValueError when it is not one."""
    ny, nx = (int(v) for v in text.split("x"))
    return ny, nx


@dataclass
class FrameRecord:
    path: str  # POSIX path relative to raw_dir
    status: str = "excluded"  # ok | excluded
    reason: str = ""
    frame_type: str = ""
    type_source: str = ""
    camera: str = ""
    instrument: str = ""
    exptime: float | None = None  # seconds
    filter: str = ""
    binning: str = ""
    temperature_c: float | None = None  # measured sensor temperature, C
    set_temperature_c: float | None = None
    gain_setting: str = ""  # the camera's GAIN *setting* (not e-/ADU)
    offset: str = ""
    readout_mode: str = ""
    date_obs: str = ""  # ISO 8601 as written
    time_s: float | None = None  # seconds since 2000-01-01T00:00:00 (from date_obs), for ordering/windows
    object: str = ""
    hdu: int | None = None
    raw_shape: str = ""  # numpy shape of the raw image, 'NYxNX'
    shape: str = ""  # numpy shape after trimming, 'NYxNX'
    bitpix: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


COLUMNS = [f.name for f in fields(FrameRecord)]
_EPOCH = datetime(2000, 1, 1)


def parse_date(header: HeaderView, profile: CameraProfile) -> tuple[str, float | None]:
    """DATE-OBS (plus TIME-OBS/UT when the date has no time) as (text, seconds since 2000)."""
    text = profile.text(header, "date")
    if not text:
        return "", None
    if "T" not in text:
        time_part = header.get("TIME-OBS") or header.get("UT") or header.get("UTSTART")
        if time_part:
            text = f"{text}T{str(time_part).strip()}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", ""))
    except ValueError:
        return text, None
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    return text, round((moment - _EPOCH).total_seconds(), 3)


def list_raw_files(raw_dir: str | os.PathLike, exclude: Iterable[str | os.PathLike] = (),
                   unreadable: list[str] | None = None) -> list[str]:
    """Every regular file under ``raw_dir`` as sorted POSIX paths relative to it.

    Hidden files and folders (a leading '.') and the ``exclude`` folders (e.g. an
    output_dir inside raw_dir) are skipped. Folders that cannot be listed are appended to
    ``unreadable`` (relative POSIX paths, sorted), so that their frames do not vanish
    without a trace.
    """
    root = Path(raw_dir).resolve()
    skip = {Path(p).resolve() for p in exclude}
    found = []
    failed: list[str] = []

    def not_listed(error: OSError) -> None:
        failed.append(Path(error.filename).relative_to(root).as_posix())

    for folder, dirs, files in os.walk(root, onerror=not_listed):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip)
        for name in files:
            if not name.startswith(".") and (here / name).is_file():
                found.append((here / name).relative_to(root).as_posix())
    if unreadable is not None:
        unreadable.extend(sorted(failed))
    return sorted(found)


def inspect_frame(raw_dir: Path, rel_path: str, profiles: list[CameraProfile],
                  default_camera: Mapping[str, Any]) -> tuple[FrameRecord, CameraProfile | None]:
    """One inventory row for ``rel_path`` and the camera profile applied (None when the
    file could not be read); never raises for a bad file."""
    record = FrameRecord(path=rel_path)
    if not is_fits_name(rel_path):
        record.reason = "not a FITS file (name does not end in .fits/.fit/.fts, optionally .fz/.gz)"
        return record, None
    if not os.access(raw_dir / rel_path, os.R_OK):
        record.reason = "cannot be read (permission denied): give the user running ccdcal read access"
        return record, None
    try:
        with RawFrame(raw_dir / rel_path, label=rel_path) as frame:
            frame.check_complete()
            profile = profile_for(rel_path, frame.header, profiles, default_camera)
            return _describe(frame, rel_path, profile, record), profile
    except FrameError as exc:
        record.reason = str(exc).removeprefix(f"{rel_path}: ")
        return record, None


def _describe(frame: RawFrame, rel_path: str, profile: CameraProfile, record: FrameRecord) -> FrameRecord:
    header = frame.header
    decision = profile.frame_type(rel_path, header)
    record.camera = profile.name
    record.hdu = frame.hdu_index
    record.bitpix = frame.bitpix
    record.raw_shape = f"{frame.shape[0]}x{frame.shape[1]}"
    record.frame_type = decision.frame_type or ""
    record.type_source = decision.source
    record.instrument = profile.text(header, "instrument")
    record.exptime = profile.exptime(header)
    record.filter = profile.text(header, "filter")
    record.binning = binning(header)
    record.temperature_c = profile.temperature(header)
    record.set_temperature_c = profile.temperature(header, "set_temperature")
    record.gain_setting = profile.number_or_text(header, "gain_setting")
    record.offset = profile.number_or_text(header, "offset")
    record.readout_mode = profile.text(header, "readout_mode")
    record.date_obs, record.time_s = parse_date(header, profile)
    record.object = profile.text(header, "object")

    if decision.frame_type is None:
        record.reason = f"frame type undecided: {decision.source}"
        return record
    if decision.frame_type == "ignore":
        record.reason = f"ignored by the camera profile ({decision.source})"
        return record
    if record.exptime is None:
        if decision.frame_type != "bias":
            keys = "/".join(profile.config["keywords"]["exptime"])
            record.reason = f"no exposure time ({keys})"
            return record
        record.exptime = 0.0
    try:
        layout = layout_for(header, frame.shape, profile.config)
    except ValueError as exc:
        record.reason = f"geometry: {exc}"
        return record
    record.shape = f"{layout.shape[0]}x{layout.shape[1]}"
    record.status = "ok"
    return record


def take_inventory(raw_dir: str | os.PathLike, files: Iterable[str], config: Mapping[str, Any]
                   ) -> tuple[list[FrameRecord], dict[str, dict[str, Any]]]:
    """Inventory rows for ``files`` (relative to ``raw_dir``), sorted by path, and the
    profile of every camera found (name -> validated profile, with its name set)."""
    raw_dir = Path(raw_dir)
    profiles = profiles_from_config(config)
    default_camera = config["default_camera"]
    records, cameras = [], {}
    for rel in sorted(files):
        record, profile = inspect_frame(raw_dir, rel, profiles, default_camera)
        records.append(record)
        if profile is not None:
            cameras.setdefault(profile.name, {**profile.config, "name": profile.name})
    return records, cameras


def records_to_csv(records: list[FrameRecord]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(record).items()})
    return out.getvalue()


def records_from_csv(path: str | os.PathLike) -> list[FrameRecord]:
    """Read an inventory.csv back (types restored)."""
    numeric = {"exptime", "temperature_c", "set_temperature_c", "time_s"}
    integer = {"hdu", "bitpix"}
    records = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values: dict[str, Any] = {}
            for key, value in row.items():
                if key in numeric:
                    values[key] = float(value) if value != "" else None
                elif key in integer:
                    values[key] = int(value) if value != "" else None
                else:
                    values[key] = value
            records.append(FrameRecord(**values))
    return records
