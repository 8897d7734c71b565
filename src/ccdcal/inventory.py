"""The inventory of a night: every file found under ``raw_dir``, read by its header only.

Each file gets one ``FrameRecord``: its frame type and how that was decided, its camera
and setup (binning, gain setting, offset, readout mode, temperature in C, exposure in s,
filter, date) and its trimmed shape, or ``status='excluded'`` with the reason. A file that
is not FITS, unreadable, truncated, of undecidable type, without a physical exposure time
or with a bad geometry in its own header is excluded; it never stops the night. What is
odd but usable (a repaired header card, a temperature or date that cannot be read) is
listed in ``warnings``. A camera profile whose own sections do not fit its frames stops
the inventory (``GeometryError``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import cfa
from .camera import CameraProfile, HeaderView, binning, profile_for, profiles_from_config, to_float
from .file_cache import FileCache
from .frames import FrameError, FrameHeader, RawFrame, XisfFrame, is_frame_name, open_header
from .overscan import check_overscan_apart, layout_for
from .sections import Section


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
    date_obs: str = ""  # UTC, 'YYYY-MM-DDTHH:MM:SS[.ffffff]' (see parse_date); '' when unknown
    time_s: float | None = None  # seconds since 2000-01-01T00:00:00 (from date_obs), for ordering/windows
    object: str = ""
    hdu: int | None = None
    raw_shape: str = ""  # numpy shape of the raw image, 'NYxNX'
    shape: str = ""  # numpy shape after trimming, 'NYxNX'
    bitpix: int | None = None
    warnings: str = ""  # what was wrong in the header but did not exclude the frame, '; '-joined
    dark_subtracted: str = ""  # the card saying the camera software already subtracted a dark
    cfa: str = ""  # a colour frame's Bayer colours of the trimmed array, numpy order (ccdcal.cfa); '' mono

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """Field -> value (``dataclasses.asdict`` without its deep copy: every field is a
        number, a string or None)."""
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS = [f.name for f in fields(FrameRecord)]

#: The inventory's rows by file, in output_dir/work (``take_inventory``'s cache).
INVENTORY_ROWS = "inventory_rows.json"
_EPOCH = datetime(2000, 1, 1)
_MJD_ZERO = datetime(1858, 11, 17)  # MJD 0; JD = MJD + 2400000.5

#: A date in a form FITS has used: ISO 8601 'YYYY-MM-DD' (since 1997), or 'DD/MM/YY' for
#: 19YY (the form of the FITS standard before 2000, only ever for 1900-1999); then an
#: optional time of day after a 'T' or a space.
_DATE = re.compile(
    r"(?:(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"|(?P<old_day>\d{1,2})/(?P<old_month>\d{1,2})/(?P<old_year>\d{2}))"
    r"(?:[T ]\s*(?P<time>.*))?"
)
#: A time of day 'HH:MM[:SS[.fff]]' with an optional UTC offset ('Z', '+00:00', '-0300').
_TIME = re.compile(
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d*)?)?"
    r"\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?"
)
_TIME_KEYWORDS = ("TIME-OBS", "UT", "UTSTART")


def _day(match: re.Match) -> datetime:
    """The date of a ``_DATE`` match (ValueError when it is not a calendar date)."""
    if match["year"]:
        return datetime(int(match["year"]), int(match["month"]), int(match["day"]))
    return datetime(1900 + int(match["old_year"]), int(match["old_month"]), int(match["old_day"]))


def _time_of_day(text: str) -> tuple[timedelta, bool] | None:
    """A ``_TIME`` text as (time since midnight UTC, whether it has a fraction of a second);
    None when it is not one."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        return None
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"] or 0)
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second (UTC)
        return None
    fraction = match["fraction"] or ""
    since_midnight = timedelta(
        hours=hour, minutes=minute, seconds=second, microseconds=int((fraction[1:] + "000000")[:6])
    )
    offset = match["offset"] or "Z"
    if offset != "Z":  # local time at that offset from UTC
        digits = offset[1:].replace(":", "")
        shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        since_midnight -= shift if offset[0] == "+" else -shift
    return since_midnight, bool(fraction)


def parse_date(
    header: HeaderView, profile: CameraProfile, problems: list[str] | None = None
) -> tuple[str, float | None]:
    """When the frame was taken, UTC, as (text, seconds since 2000-01-01T00:00:00).

    The text is always 'YYYY-MM-DDTHH:MM:SS', plus '.ffffff' when the header gives a
    fraction of a second (master and library folder names are built from it). Read from
    the profile's date keywords (DATE-OBS...) in any form ``_DATE`` takes: ISO 8601 with a
    'T' or a space, or the pre-2000 'DD/MM/YY'; a date alone takes its time from
    TIME-OBS/UT/UTSTART. Without a date keyword, from MJD-OBS, else JD. A trailing 'Z' or
    UTC offset is applied. What cannot be read gives ('', None) and a line in ``problems``,
    e.g. "DATE-OBS 'yesterday' is not a date".
    """
    problems = [] if problems is None else problems
    key, value = profile.keyword_value_or_unparsable(header, "date")
    text = "" if value is None else str(value).strip()
    if not text:
        return _date_from_julian_days(header, problems)
    match = _DATE.fullmatch(text)
    try:
        day = _day(match) if match else None
    except ValueError:  # no such day, e.g. 2024-02-30
        day = None
    if day is None:
        problems.append(f"{key} {text!r} is not a date")
        return "", None
    time_text, time_key = match["time"], key
    if time_text is None:
        time_key, time_text = header.first(list(_TIME_KEYWORDS))
        time_text = None if time_text is None else str(time_text)
    time = None if time_text is None else _time_of_day(time_text)
    if time is None:
        if time_text is None:
            problems.append(f"{key} {text!r} has no time of day ({'/'.join(_TIME_KEYWORDS)}): 00:00:00 assumed")
        elif time_key == key:
            problems.append(f"{key} {text!r} is not a date")
            return "", None
        else:
            problems.append(f"{time_key} {time_text!r} is not a time of day: 00:00:00 assumed")
        time = timedelta(0), False
    return _date_text(day + time[0], time[1])


def _date_from_julian_days(header: HeaderView, problems: list[str]) -> tuple[str, float | None]:
    """(text, seconds) from MJD-OBS, else JD (days), to the millisecond (a JD in a double
    holds ~40 us); ('', None) without either."""
    for key, to_mjd in (("MJD-OBS", 0.0), ("JD", -2400000.5)):
        value = header.get(key)
        if value is None:
            continue
        days = to_float(value)
        try:
            moment = _MJD_ZERO + timedelta(milliseconds=round((days + to_mjd) * 86_400_000))
        except (TypeError, OverflowError):  # not a number, or beyond year 1 to 9999
            problems.append(f"{key} {value!r} is not a date")
            continue
        return _date_text(moment, moment.microsecond != 0)
    return "", None


def _date_text(moment: datetime, fraction: bool) -> tuple[str, float]:
    text = moment.isoformat(timespec="microseconds" if fraction else "seconds")
    return text, round((moment - _EPOCH).total_seconds(), 3)


def list_raw_files(
    raw_dir: str | os.PathLike, exclude: Iterable[str | os.PathLike] = (), unreadable: list[str] | None = None
) -> list[str]:
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


def no_fits_message(raw_dir: str | os.PathLike, files: Iterable[str], unreadable: Iterable[str] = ()) -> str | None:
    """One line saying that ``raw_dir`` holds no FITS or XISF file (None when it holds one):
    nothing to calibrate, which a night should not report as a success. ``files`` are
    those ``list_raw_files`` found; when there are some, it says how many and their
    extensions, so that a wrong folder or an unexpected naming is seen at once."""
    files = list(files)
    if any(is_frame_name(f) for f in files):
        return None
    unreadable = list(unreadable)
    blocked = (
        f"; {len(unreadable)} folder(s) in it could not be read: {', '.join(unreadable[:3])}" if unreadable else ""
    )
    if not files:
        return (
            f"raw_dir {raw_dir} holds no files (hidden ones aside){blocked}: give the folder of the night's raw frames"
        )
    counts: dict[str, int] = {}
    for name in files:
        suffix = Path(name).suffix.lower() or "(none)"
        counts[suffix] = counts.get(suffix, 0) + 1
    common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    seen = ", ".join(f"{s} ({n})" for s, n in common[:8]) + (", ..." if len(common) > 8 else "")
    return (
        f"raw_dir {raw_dir} holds {len(files)} file(s) but no FITS file (.fits/.fit/.fts, optionally .fz/.gz)"
        " or XISF file (.xisf)"
        f"{blocked}; extensions seen: {seen}"
    )


def inspect_frame(
    raw_dir: Path, rel_path: str, profiles: list[CameraProfile], default_camera: Mapping[str, Any]
) -> tuple[FrameRecord, CameraProfile | None]:
    """One inventory row for ``rel_path`` and the camera profile applied (None when the
    file could not be read); never raises for a bad file."""
    record = FrameRecord(path=rel_path)
    if not is_frame_name(rel_path):
        record.reason = (
            "not a FITS file (name does not end in .fits/.fit/.fts, optionally .fz/.gz) nor an XISF file (.xisf)"
        )
        return record, None
    if not os.access(raw_dir / rel_path, os.R_OK):
        record.reason = "cannot be read (permission denied): give the user running ccdcal read access"
        return record, None
    try:
        with open_header(raw_dir / rel_path, label=rel_path) as frame:
            frame.check_complete()
            profile = profile_for(rel_path, frame.header, profiles, default_camera)
            return _describe(frame, rel_path, profile, record), profile
    except FrameError as exc:
        record.reason = str(exc).removeprefix(f"{rel_path}: ")
        return record, None


def _describe(
    frame: FrameHeader | RawFrame | XisfFrame, rel_path: str, profile: CameraProfile, record: FrameRecord
) -> FrameRecord:
    header = frame.header
    decision = profile.frame_type(rel_path, header)
    problems = list(frame.header_problems)  # -> record.warnings; none of them excludes the frame
    exposure_problems: list[str] = []  # these do (as does a broken binning)
    record.camera = profile.name
    record.hdu = frame.hdu_index
    record.bitpix = frame.bitpix
    record.raw_shape = f"{frame.shape[0]}x{frame.shape[1]}"
    record.frame_type = decision.frame_type or ""
    record.type_source = decision.source
    record.instrument = profile.text(header, "instrument")
    record.exptime = profile.exptime(header, exposure_problems)
    record.filter = profile.text(header, "filter")
    try:
        record.binning = binning(header)
    except ValueError as exc:
        exposure_problems.append(str(exc))  # excludes the frame, as a bad exposure does
    record.temperature_c = profile.temperature(header, problems=problems)
    record.set_temperature_c = profile.temperature(header, "set_temperature", problems)
    record.gain_setting = profile.number_or_text(header, "gain_setting")
    record.offset = profile.number_or_text(header, "offset")
    record.readout_mode = profile.text(header, "readout_mode")
    record.date_obs, record.time_s = parse_date(header, profile, problems)
    record.object = profile.text(header, "object")
    record.dark_subtracted = subtracted_by_camera(frame, profile.config["dark"]["subtracted_by_camera"])
    for what in ("gain", "read_noise", "saturation"):
        value, source = profile.value_or_keyword(header, what)
        if value is None and source != "unknown":  # a header value that is not usable
            problems.append(source)
    record.warnings = "; ".join(problems)

    if decision.frame_type is None:
        record.reason = f"frame type undecided: {decision.source}"
        return record
    if decision.frame_type == "ignore":
        record.reason = f"ignored by the camera profile ({decision.source})"
        return record
    if exposure_problems:  # there, but not a number or not a physical exposure
        record.reason = exposure_problems[0]
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
    try:
        colours, _ = cfa.trimmed(header, frame.shape, layout.trim.slices, profile.config.get("bayer_pattern", "header"))
    except cfa.CfaError as exc:
        record.reason = f"colour filter array: {exc}"
        return record
    problem = cfa.binning_problem(colours, record.binning)
    if problem:
        record.reason = problem
        return record
    record.cfa = colours.colours if colours else ""
    record.status = "ok"
    return record


class GeometryError(ValueError):
    """A camera profile's own sections (overscan regions, trim) do not fit its frames: a
    mistake in the configuration, which would exclude every frame of the camera."""


def check_camera_geometry(records: list[FrameRecord], cameras: Mapping[str, Mapping[str, Any]]) -> None:
    """Check the sections each camera profile gives itself (``overscan.regions`` and
    ``trim`` when they are FITS sections, not 'header') on the camera's first frame by path:
    each inside the frame, no overscan overlapping its data region or the trim section.

    Raises GeometryError naming the camera, the section, the frame and its size, and what
    to fix. Sections read from a frame's header (BIASSEC...) are not checked here: a bad
    one excludes that frame alone (``inspect_frame``).
    """
    for name in sorted(cameras):
        profile = cameras[name]
        regions, trim_text = profile["overscan"]["regions"], profile["trim"]
        if regions == "header" and trim_text in ("header", "none"):
            continue
        first = min((r for r in records if r.camera == name and r.raw_shape), key=lambda r: r.path, default=None)
        if first is None:
            continue
        raw_shape = parse_shape(first.raw_shape)

        def fail(problem: Exception, key: str, name=name, path=first.path, raw_shape=raw_shape) -> GeometryError:
            return GeometryError(
                f"camera '{name}': {problem}; its first frame {path} is {raw_shape[1]}x"
                f"{raw_shape[0]} (NAXIS1xNAXIS2); fix {key} in its profile"
            )

        trim = None
        if trim_text not in ("header", "none"):
            try:
                trim = Section.parse(trim_text)
                trim.check_inside(raw_shape, "trim section")
            except ValueError as exc:
                raise fail(exc, "'trim'") from None
        for region in regions if regions != "header" else []:
            given = {role: region[role] for role in ("overscan", "data") if region[role] != "header"}
            try:
                sections = {role: Section.parse(text) for role, text in given.items()}
                for role, section in sections.items():
                    section.check_inside(raw_shape, f"{role} section")
                if "overscan" in sections:
                    check_overscan_apart(sections["overscan"], sections.get("data"), None)
            except ValueError as exc:
                raise fail(exc, "'overscan.regions'") from None
            if "overscan" in sections:
                try:
                    check_overscan_apart(sections["overscan"], None, trim)
                except ValueError as exc:
                    raise fail(exc, "'overscan.regions' or 'trim'") from None


def subtracted_by_camera(frame: FrameHeader | RawFrame | XisfFrame, rule: Mapping[str, Any]) -> str:
    """The card that says the camera software already dark-subtracted this frame (its
    HISTORY/COMMENT holds one of ``rule['history']``, case-insensitive, or its
    ``rule['keyword']`` is true), as text; '' when none does."""
    words = [w.lower() for w in rule["history"]]
    for header in (frame.image_header, frame.primary_header):
        for key in ("HISTORY", "COMMENT"):
            for text in header.get(key, []) if key in header else []:
                if any(word in str(text).lower() for word in words):
                    return f"{key} {str(text).strip()}"[:68]
    keyword = rule["keyword"]
    value = frame.header.get(keyword) if keyword else None
    if value is not None and str(value).strip().lower() in ("t", "true", "1", "yes", "y"):
        return f"{keyword} = {value}"
    return ""


def take_inventory(
    raw_dir: str | os.PathLike,
    files: Iterable[str],
    config: Mapping[str, Any],
    cache: str | os.PathLike | None = None,
) -> tuple[list[FrameRecord], dict[str, dict[str, Any]]]:
    """Inventory rows for ``files`` (relative to ``raw_dir``), sorted by path, and the
    profile of every camera found (name -> validated profile, with its name set).
    ``cache``: a JSON file (``file_cache.FileCache``) keeping each file's row by its size
    and time, the camera settings and ccdcal's code: a rerun reads only the headers of new
    or changed files (and forgets files gone from ``files``).

    Raises GeometryError when a camera profile's own sections do not fit the camera's
    frames (``check_camera_geometry``)."""
    raw_dir = Path(raw_dir)
    profiles = profiles_from_config(config)
    default_camera = config["default_camera"]

    def inspected(rel: str) -> tuple[FrameRecord, CameraProfile | None]:
        return inspect_frame(raw_dir, rel, profiles, default_camera)

    rows = None if cache is None else FileCache(cache, tag=inventory_settings_tag(config))
    records, cameras = [], {}
    for rel in sorted(files):
        if rows is None:
            record, profile = inspected(rel)
        else:
            record, profile = _cached_inspection(rows, raw_dir, rel, inspected, profiles, default_camera)
        records.append(record)
        if profile is not None:
            cameras.setdefault(profile.name, {**profile.config, "name": profile.name})
    check_camera_geometry(records, cameras)
    if rows is not None:
        rows.save(prune=True)
    return records, cameras


def inventory_settings_tag(config: Mapping[str, Any]) -> str:
    """What an inventory row depends on besides the file: the camera profiles, the
    default camera and ccdcal's code."""
    from .provenance import code_digest, settings_digest

    settings = {"cameras": config.get("cameras", []), "default_camera": config["default_camera"]}
    return f"{settings_digest(settings)}-{code_digest()[:16]}"


def _cached_inspection(
    rows: FileCache,
    raw_dir: Path,
    rel: str,
    inspected: Callable[[str], tuple[FrameRecord, CameraProfile | None]],
    profiles: list[CameraProfile],
    default_camera: Mapping[str, Any],
) -> tuple[FrameRecord, CameraProfile | None]:
    """``inspected(rel)``, or its row and profile from ``rows`` when the file has not
    changed. A file that cannot be looked at (gone, a broken link) is inspected, and says
    why, uncached."""

    def compute(_file: Path) -> dict[str, Any]:
        record, profile = inspected(rel)
        configured = next((i for i, p in enumerate(profiles) if p is profile), None)
        return {"record": record.row(), "profile": configured, "camera": None if profile is None else profile.name}

    try:
        row = rows.value(raw_dir / rel, rel, compute)
    except OSError:
        return inspected(rel)
    record = FrameRecord(**row["record"])
    if row["camera"] is None:
        return record, None
    if row["profile"] is not None:
        return record, profiles[row["profile"]]
    profile = CameraProfile(dict(default_camera))  # the default profile, named as profile_for names it
    profile.name = row["camera"]
    return record, profile


def records_to_csv(records: list[FrameRecord]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.row().items()})
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
