"""A PixInsight master library (ANAWBPPS's layout) read as candidates next to ccdcal's own.

The library is only read, never written. ANAWBPPS files its masters as

    <root>/!!!<TYPE>S_LIB/<SETUP>/<TYPE>S_<YYYY_MM_DD>/<SETUP>_Master<Kind>_<EXP>_Gain<G>_Offset<O>_<X>x<Y>_<T>C.xisf

with TYPE one of BIASES, DARKS, DARKFLATS, FLATS; SETUP = TELESCOP_INSTRUME with spaces and
special characters made '_' (a telescope 'Edge HD 8 ' gives 'Edge_HD_8__QHY600M'); Kind one of
Bias, Dark, DarkFlat, Flat; EXP the exposure ('120s', '0.5s', '0s' for a bias) or, for a
flat, its filter; T the sensor temperature in C ('-10C', '+5C', '-7.5C', or 'NO_TEMP');
the date that of the first input's DATE-OBS. Masters are XISF (``ccdcal.xisf``) or FITS.

Each master's setup is read from its keywords (IMAGETYP 'Master Dark'..., INSTRUME, GAIN,
OFFSET, XBINNING/YBINNING, CCD-TEMP or SET-TEMP, EXPTIME, FILTER, DATE-OBS, NCOMBINE: the
camera profile's aliases) and, where a keyword is missing, from its file name, then its
folders; ``PixInsightMaster.sources`` says which for each value. It belongs to the camera
profile a raw frame with those keywords would get (``camera.profile_for``). A DarkFlat is a
dark (of the flats' short exposure) for the matching. The image shape is the master's own
(the data area: a PixInsight master has no overscan; one of another shape than the lights'
trimmed frames is rejected by the matching, 'shape ... != ...').

Its identity is the first 16 hex digits of the SHA-256 of its bytes (``FileCache``: read
once per size and mtime); ``problem`` says why a master cannot be used (unreadable or
damaged file, more than one channel, a name that cannot be parsed and no keywords, a dark
whose bias was subtracted), and such a master is listed with that reason, never dropped.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .camera import CameraProfile, HeaderView, binning, fold, profile_for, profiles_from_config, safe_name, to_float
from .file_cache import FileCache, file_digest

log = logging.getLogger("ccdcal")

#: File suffixes of masters (case-insensitive).
MASTER_SUFFIXES = (".xisf", ".fits", ".fit", ".fts")
#: PixInsight's kind of master -> ccdcal's master type (a darkflat is a short dark).
KINDS = {"Bias": "bias", "Dark": "dark", "DarkFlat": "dark", "Flat": "flat"}
#: The type folders and the date folders' prefixes of each kind.
FOLDER_KINDS = {"BIASES": "Bias", "DARKS": "Dark", "DARKFLATS": "DarkFlat", "FLATS": "Flat"}

_NAME = re.compile(
    r"(?P<setup>.+?)_Master(?P<kind>DarkFlat|Bias|Dark|Flat)"
    r"_(?P<first>.+?)"
    r"(?:_Gain(?P<gain>[^_]*))?(?:_Offset(?P<offset>[^_]*))?"
    r"_(?:Bin_?)?(?P<xbin>\d+)x(?P<ybin>\d+)"
    r"_(?P<temp>[+-]?\d+(?:\.\d+)?C|NO_?TEMP)"
)
_EXPOSURE = re.compile(r"(?P<seconds>\d+(?:\.\d*)?|\.\d+)s")
_TYPE_FOLDER = re.compile(r"!*(?P<kind>BIASES|DARKS|DARKFLATS|FLATS)_LIB")
_DATE_FOLDER = re.compile(r"(?P<kind>BIASES|DARKS|DARKFLATS|FLATS)_(?P<y>\d{4})_(?P<m>\d{2})_(?P<d>\d{2})")
#: PixInsight's ImageIntegration history: the number of frames combined.
_HISTORY_COUNT = re.compile(r"ImageIntegration\.numberOfImages:\s*(\d+)")


@dataclass(frozen=True)
class NameParts:
    """What a master's file name says (``parse_name``)."""

    setup: str  # TELESCOP_INSTRUME as ANAWBPPS wrote it
    kind: str  # Bias | Dark | DarkFlat | Flat
    exptime: float | None  # s (None for a flat: its name holds the filter)
    filter: str  # flats; '' otherwise
    gain: str  # the GAIN setting ('56'); '' when the name has none
    offset: str
    binning: str  # 'XxY'
    temperature_c: float | None  # None for NO_TEMP


def parse_name(filename: str) -> tuple[NameParts | None, str]:
    """(parts, '') of an ANAWBPPS master's file name, with or without its suffix, e.g.
    'Edge_HD_8__QHY600M_MasterDark_120s_Gain56_Offset10_1x1_-10C.xisf'; (None, why) when
    it does not follow the scheme."""
    stem = filename
    for suffix in MASTER_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    match = _NAME.fullmatch(stem)
    if match is None:
        return None, (
            f"name {filename!r} is not <SETUP>_Master<Bias|Dark|DarkFlat|Flat>_<exposure or filter>"
            "_Gain<g>_Offset<o>_<X>x<Y>_<T>C"
        )
    kind, first = match["kind"], match["first"]
    exptime, filt = None, ""
    if kind == "Flat":
        filt = first
    else:
        exposure = _EXPOSURE.fullmatch(first)
        if exposure is None:
            return None, f"name {filename!r}: exposure {first!r} is not a number of seconds ('120s', '0.5s')"
        exptime = float(exposure["seconds"])
    temp = match["temp"]
    return (
        NameParts(
            setup=match["setup"],
            kind=kind,
            exptime=exptime,
            filter=filt,
            gain=match["gain"] or "",
            offset=match["offset"] or "",
            binning=f"{int(match['xbin'])}x{int(match['ybin'])}",
            temperature_c=None if temp.upper().startswith("NO") else float(temp[:-1]),
        ),
        "",
    )


@dataclass(frozen=True)
class FolderParts:
    """What a master's folders say (``parse_folders``): each '' when they do not say it."""

    kind: str  # Bias | Dark | DarkFlat | Flat
    setup: str
    date: str  # 'YYYY-MM-DD', from the date folder


def parse_folders(path: str | os.PathLike, root: str | os.PathLike) -> FolderParts:
    """The kind, setup and date of a master from its folders under ``root``
    ('!!!DARKS_LIB/Edge_HD_8__QHY600M/DARKS_2025_11_10/...'). A layout that differs gives
    what it can ('' for the rest)."""
    parts = Path(path).relative_to(root).parts[:-1]
    kind = setup = date = ""
    for i, part in enumerate(parts):
        typed = _TYPE_FOLDER.fullmatch(part)
        if typed:
            kind = FOLDER_KINDS[typed["kind"]]
            if i + 1 < len(parts) and not _DATE_FOLDER.fullmatch(parts[i + 1]):
                setup = parts[i + 1]
        dated = _DATE_FOLDER.fullmatch(part)
        if dated:
            kind = kind or FOLDER_KINDS[dated["kind"]]
            date = f"{dated['y']}-{dated['m']}-{dated['d']}"
    return FolderParts(kind, setup, date)


def kind_of_imagetyp(value: Any) -> str | None:
    """PixInsight's kind of an IMAGETYP value: 'Master Dark' -> 'Dark', 'MASTER FLAT' ->
    'Flat', 'Master DarkFlat'/'Master Flat Dark' -> 'DarkFlat', 'Bias Frame' -> 'Bias';
    None for a light or anything else."""
    word = fold(value).removeprefix("master").removesuffix("frame")
    return {
        "bias": "Bias",
        "zero": "Bias",
        "offset": "Bias",
        "dark": "Dark",
        "darkflat": "DarkFlat",
        "flatdark": "DarkFlat",
        "flat": "Flat",
        "flatfield": "Flat",
    }.get(word)


@dataclass
class PixInsightMaster:
    """One file of a PixInsight library as ccdcal reads it (``scan_pixinsight``).

    Units: exposure in s, temperature in C; ``setup`` as a plan master's (camera,
    instrument, binning 'XxY', shape 'NYxNX', gain_setting, offset, readout_mode)."""

    file: str  # absolute path
    root: str  # the library folder it was found under
    name: str = ""  # its name in the plan: 'pi_<YYYYMMDD>_<stem>'
    kind: str = ""  # Bias | Dark | DarkFlat | Flat
    type: str = ""  # bias | dark | flat
    camera: str = ""
    setup: dict[str, str] = field(default_factory=dict)
    telescope: str = ""
    temperature_c: float | None = None
    exptime: float = 0.0
    filter: str = ""
    count: int | None = None  # frames combined (NCOMBINE, or PixInsight's HISTORY); None when unknown
    date_begin: str = ""  # 'YYYY-MM-DDTHH:MM:SS' (DATE-OBS, else the folder's date at 00:00)
    time_begin: float | None = None  # seconds since 2000
    format: str = ""  # xisf | fits
    sha256: str = ""
    sample_format: str = ""  # UInt16, Float32... (XISF) or the FITS BITPIX as 'BITPIX=-32'
    bounds: str = ""  # XISF bounds ('0:1'); '' when not given
    data_max: float | None = None  # the image's largest finite value
    sources: dict[str, str] = field(default_factory=dict)  # value -> 'keyword K' | 'name' | 'folder' | 'unknown'
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why it cannot be used; None when it can

    @property
    def identity(self) -> str:
        return self.sha256[:16]

    def details(self) -> dict[str, Any]:
        """What the import job needs beyond a plan master's fields (``plan.Master.imported``)."""
        return {
            "kind": self.kind,
            "count": self.count,
            "sha256": self.sha256,
            "format": self.format,
            "sample_format": self.sample_format,
            "bounds": self.bounds,
            "data_max": self.data_max,
            "telescope": self.telescope,
            "sources": dict(self.sources),
            "notes": list(self.notes),
        }


def library_roots(setting: str | Iterable[str] | None) -> list[Path]:
    """The folders of ``pixinsight_library`` (a path, a list of paths or null)."""
    if not setting:
        return []
    return [Path(p) for p in ([setting] if isinstance(setting, (str, os.PathLike)) else setting)]


def master_files(root: Path) -> list[Path]:
    """Every master file under ``root`` (``MASTER_SUFFIXES``; hidden files and folders
    skipped), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if not f.startswith(".") and f.lower().endswith(MASTER_SUFFIXES)]
    return sorted(found)


class MasterReadError(Exception):
    """A PixInsight master file that cannot be used (the message says why)."""


@dataclass
class MasterImage:
    """A master file's image, header and what it says of its samples (``read_master``)."""

    image: Any  # numpy (ny, nx), the file's sample type, as stored
    header: Any  # astropy fits.Header: the keywords (XISF: FITSKeyword elements and mapped properties)
    format: str  # xisf | fits
    sample_format: str  # XISF sampleFormat ('Float32', 'UInt16') or 'BITPIX=<n>'
    bounds: str  # XISF bounds ('0:1'); '' when not given


def read_master(path: str | os.PathLike) -> MasterImage:
    """The image and header of a master (XISF through ``ccdcal.xisf``, else FITS: the
    first HDU with data, the primary header's cards under its own); MasterReadError
    saying why when the file cannot be read, is damaged or holds more than one channel."""
    import numpy as np
    from astropy.io import fits

    path = Path(path)
    fmt = "xisf" if path.suffix.lower() == ".xisf" else "fits"
    try:
        if fmt == "xisf":
            from . import xisf

            info = xisf.read_header(path)
            if info.channels != 1:
                raise MasterReadError(f"multi-channel image ({info.channels} channels); ccdcal masters are one channel")
            image = np.asarray(xisf.read_image(path, info))
            found = MasterImage(image, info.keywords, fmt, str(info.sample_format), _bounds_text(info.bounds))
        else:
            from .products import fits_size_problem

            with fits.open(path, memmap=False) as hdul:
                problem = fits_size_problem(hdul, path.stat().st_size)
                if problem:
                    raise MasterReadError(f"damaged FITS file ({problem})")
                index = next((i for i, h in enumerate(hdul) if getattr(h, "data", None) is not None), 0)
                header = hdul[0].header.copy()
                if index:
                    header.extend(hdul[index].header, unique=True, update=True)
                bitpix = hdul[index].header.get("BITPIX")
                found = MasterImage(np.asarray(hdul[index].data), header, fmt, f"BITPIX={bitpix}", "")
    except MasterReadError:
        raise
    except Exception as exc:  # the readers raise OSError, ValueError, KeyError...
        raise MasterReadError(f"not a readable {fmt.upper()} file ({type(exc).__name__}: {exc})") from None
    image = found.image
    if image is None:
        raise MasterReadError("no image in the file")
    if image.ndim == 3 and 1 in (image.shape[0], image.shape[-1]):
        image = image.reshape([n for n in image.shape if n != 1] or [1, 1])
    if image.ndim != 2:
        kind = "multi-channel" if image.ndim == 3 else "not 2-D"
        raise MasterReadError(f"image of shape {tuple(image.shape)} ({kind}); ccdcal masters are one channel")
    if image.dtype.kind == "f" and not np.isfinite(image).any():
        raise MasterReadError("no finite pixel")
    found.image = image
    return found


def read_facts(path: Path) -> dict[str, Any]:
    """What the scan keeps of a master file, read once per size and mtime: its SHA-256,
    header (FITS text), image shape, sample format, bounds, largest finite value and
    ``problem`` (why it cannot be used, None when it can). The whole image is read
    (``read_master``): a damaged data block is found here, not in a later job."""
    import numpy as np

    facts: dict[str, Any] = {
        "format": "xisf" if path.suffix.lower() == ".xisf" else "fits",
        "sha256": file_digest(path, length=64),
        "header": "",
        "shape": None,
        "sample_format": "",
        "bounds": "",
        "data_max": None,
        "problem": None,
    }
    try:
        found = read_master(path)
    except MasterReadError as exc:
        facts["problem"] = str(exc)
        return facts
    image = found.image
    facts.update(header=found.header.tostring(), sample_format=found.sample_format, bounds=found.bounds)
    facts["shape"] = [int(image.shape[0]), int(image.shape[1])]
    facts["data_max"] = float(np.nanmax(image)) if image.dtype.kind == "f" else float(np.max(image))
    return facts


def _bounds_text(bounds: Any) -> str:
    if bounds is None:
        return ""
    if isinstance(bounds, (tuple, list)):
        return ":".join(f"{float(b):g}" for b in bounds)
    return str(bounds)


def _fill(
    header: Any, profile: CameraProfile, what: str, value: Any, source: str, sources: dict[str, str], label: str
) -> None:
    """Put ``value`` (from the name or the folders) under the profile's first keyword of
    ``what`` when the header has none of them; say where ``label`` came from."""
    view = HeaderView(header)
    key, _ = profile.keyword_value(view, what)
    if key is not None:
        sources[label] = f"keyword {key}"
    elif value not in (None, ""):
        header[profile.config["keywords"][what][0]] = value
        sources[label] = source
    else:
        sources[label] = "unknown"


def instrument_of_setup(setup: str, instruments: Iterable[str]) -> str:
    """The camera of an ANAWBPPS setup ('Edge_HD_8__QHY600M'): the longest of tonight's
    ``instruments`` (sanitized as ANAWBPPS does) that ends it after a '_'; else what
    follows its last '__' (a telescope name ending in a space or a special character);
    else what follows its last '_' ('' when it has none)."""
    endings = sorted({re.sub(r"[^A-Za-z0-9.\-]", "_", str(i).strip()) for i in instruments if str(i).strip()}, key=len)
    for ending in reversed(endings):
        if setup == ending or setup.endswith("_" + ending):
            return ending
    if "__" in setup:
        return setup.rsplit("__", 1)[1]
    return setup.rsplit("_", 1)[1] if "_" in setup else ""


#: Longest plan name of a master's file stem (a file name has 255 bytes).
NAME_MAX = 160


def plan_name(stem: str) -> str:
    """A file stem as a master's name in the plan: [A-Za-z0-9._+-] kept (so ANAWBPPS's
    'Edge_HD_8__QHY600M' stays as it is), any other character '_'; longer than NAME_MAX,
    cut with ``safe_name``'s digest."""
    text = re.sub(r"[^A-Za-z0-9._+\-]", "_", stem).strip("._") or "master"
    return text if len(text) <= NAME_MAX else safe_name(text, limit=NAME_MAX)


def describe(
    path: Path,
    root: Path,
    facts: Mapping[str, Any],
    profiles: list[CameraProfile],
    default_camera: Mapping[str, Any],
    instruments: Iterable[str] = (),
) -> PixInsightMaster:
    """A master as ccdcal reads it (module docstring), from its ``read_facts``."""
    from astropy.io import fits

    from .inventory import parse_date

    master = PixInsightMaster(
        file=str(path.resolve()),
        root=str(root),
        format=facts["format"],
        sha256=facts["sha256"],
        sample_format=facts["sample_format"],
        bounds=facts["bounds"],
        data_max=facts["data_max"],
    )
    folders = parse_folders(path, root)
    day = folders.date.replace("-", "")
    master.name = "pi_" + (f"{day}_" if day else "") + plan_name(path.stem)
    if facts["problem"]:
        master.problem = facts["problem"]
    header = fits.Header.fromstring(facts["header"]) if facts["header"] else fits.Header()
    parts, name_problem = parse_name(path.name)
    sources = master.sources
    # the kind: IMAGETYP, else the name, else the folders
    keyword_kind = next((kind_of_imagetyp(header[k]) for k in ("IMAGETYP", "FRAME", "FRAMETYP") if k in header), None)
    if keyword_kind == "Dark" and parts is not None and parts.kind == "DarkFlat":
        keyword_kind = "DarkFlat"  # a darkflat is a dark to PixInsight too; its name says which
    if keyword_kind:
        master.kind, sources["type"] = keyword_kind, "keyword IMAGETYP"
    elif parts is not None:
        master.kind, sources["type"] = parts.kind, "name"
    elif folders.kind:
        master.kind, sources["type"] = folders.kind, "folder"
    if not master.kind:
        master.problem = master.problem or (
            f"{name_problem}, and no IMAGETYP keyword saying Master Bias/Dark/DarkFlat/Flat"
        )
        return master
    master.type = KINDS[master.kind]
    if parts is None:
        master.notes.append(f"{name_problem}: values from the keywords alone")
    setup_text = (parts.setup if parts else "") or folders.setup
    # which camera profile, as a raw frame with these keywords would get
    instrument_guess = instrument_of_setup(setup_text, instruments) if setup_text else ""
    if "INSTRUME" not in header and instrument_guess:
        header["INSTRUME"] = instrument_guess
        sources["instrument"] = "name" if parts else "folder"
    rel = path.relative_to(root).as_posix()
    profile = profile_for(rel, HeaderView(header), profiles, default_camera)
    sources.setdefault("instrument", "keyword INSTRUME" if "INSTRUME" in header else "unknown")
    if parts is not None:
        _fill(header, profile, "gain_setting", parts.gain, "name", sources, "gain_setting")
        _fill(header, profile, "offset", parts.offset, "name", sources, "offset")
        _fill(header, profile, "temperature", parts.temperature_c, "name", sources, "temperature")
        if master.kind == "Flat":
            _fill(header, profile, "filter", parts.filter, "name", sources, "filter")
        else:
            _fill(header, profile, "exptime", parts.exptime, "name", sources, "exptime")
        if not any(k in header for k in ("XBINNING", "YBINNING", "CCDSUM")):
            x, y = parts.binning.split("x")
            header["XBINNING"], header["YBINNING"] = int(x), int(y)
            sources["binning"] = "name"
    else:
        for what in ("gain_setting", "offset", "temperature", "exptime", "filter"):
            _fill(header, profile, what, None, "", sources, what)
    sources.setdefault("binning", "keyword XBINNING" if "XBINNING" in header else "unknown (1x1 taken)")
    view = HeaderView(header)
    problems: list[str] = []
    master.camera = profile.name
    master.temperature_c = profile.temperature(view, problems=problems)
    if master.temperature_c is None:  # the set point, as ANAWBPPS falls back to it
        set_point = profile.temperature(view, "set_temperature", problems)
        if set_point is not None:
            master.temperature_c = set_point
            key, _ = profile.keyword_value(view, "set_temperature")
            sources["temperature"] = f"keyword {key}"
    exptime = profile.exptime(view, problems)
    if master.type == "bias":
        exptime = 0.0 if exptime is None else exptime
    master.exptime = exptime if exptime is not None else 0.0
    if exptime is None and master.type == "dark":
        master.problem = master.problem or "no exposure time: neither a keyword nor the name gives one"
    master.filter = profile.text(view, "filter") if master.type == "flat" else ""
    master.telescope = str(header.get("TELESCOP", "")).strip()
    try:
        bin_text = binning(view)
    except ValueError as exc:
        bin_text, master.problem = "", master.problem or str(exc)
    shape = facts.get("shape")
    master.setup = {
        "camera": profile.name,
        "instrument": profile.text(view, "instrument"),
        "binning": bin_text,
        "shape": f"{shape[0]}x{shape[1]}" if shape else "",
        "gain_setting": profile.number_or_text(view, "gain_setting"),
        "offset": profile.number_or_text(view, "offset"),
        "readout_mode": profile.text(view, "readout_mode"),
    }
    master.count, sources["count"] = frames_combined(header)
    date_problems: list[str] = []
    master.date_begin, master.time_begin = parse_date(view, profile, date_problems)
    sources["date"] = "keyword DATE-OBS"
    if not master.date_begin and folders.date:
        master.date_begin, master.time_begin = parse_date(
            HeaderView({"DATE-OBS": folders.date + "T00:00:00"}), profile, date_problems
        )
        sources["date"] = "folder (00:00 UTC)"
    elif not master.date_begin:
        sources["date"] = "unknown"
    master.notes += problems
    if master.type == "dark" and bias_subtracted(header):
        master.problem = master.problem or (
            "the bias was subtracted from this dark (" + bias_subtracted(header) + "); ccdcal's darks hold it"
        )
    return master


def frames_combined(header: Any) -> tuple[int | None, str]:
    """(N, where from) of a master: NCOMBINE, else PixInsight's HISTORY
    'ImageIntegration.numberOfImages: N'; (None, 'unknown') when neither says."""
    value = to_float(header.get("NCOMBINE"))
    if value is not None and value >= 1 and value.is_integer():
        return int(value), "keyword NCOMBINE"
    for key in ("HISTORY", "COMMENT"):
        for text in header.get(key, []) if key in header else []:
            found = _HISTORY_COUNT.search(str(text))
            if found and int(found[1]) >= 1:
                return int(found[1]), "HISTORY ImageIntegration.numberOfImages"
    return None, "unknown"


def bias_subtracted(header: Any) -> str:
    """What says a master dark had the bias subtracted (PixInsight's HISTORY
    'ImageCalibration.masterBias.enabled: true', or CALSTAT holding 'B'), as text; ''."""
    for text in header.get("HISTORY", []) if "HISTORY" in header else []:
        if re.search(r"ImageCalibration\.masterBias\.enabled:\s*true", str(text), re.IGNORECASE):
            return "HISTORY ImageCalibration.masterBias.enabled: true"
    calstat = str(header.get("CALSTAT", ""))
    return f"CALSTAT = {calstat}" if "B" in calstat.upper() else ""


def scan_pixinsight(
    setting: str | Iterable[str] | None,
    config: Mapping[str, Any],
    cache: str | os.PathLike | None = None,
    instruments: Iterable[str] = (),
) -> list[PixInsightMaster]:
    """Every master file under the ``pixinsight_library`` folders, described
    (``describe``), usable or not (``problem``), in a deterministic order with unique
    names. ``config``: the validated configuration (camera profiles); ``cache``: a JSON
    file (``FileCache``) keeping each file's ``read_facts`` by size and mtime;
    ``instruments``: tonight's INSTRUME values, to split a setup name without keywords."""
    from .provenance import code_digest

    roots = library_roots(setting)
    if not roots:
        return []
    facts_cache = FileCache(cache, read_facts, tag=code_digest()[:16]) if cache else None
    profiles, default = profiles_from_config(config), config["default_camera"]
    instruments = sorted(set(instruments))
    found: list[PixInsightMaster] = []
    taken: set[str] = set()
    for root in roots:
        if not root.is_dir():
            log.warning("pixinsight_library %s is not a folder: no masters from it", root)
            continue
        for path in master_files(root):
            try:
                facts = facts_cache.value(path, str(path.resolve())) if facts_cache else read_facts(path)
            except OSError as exc:
                facts = {"format": "", "sha256": "", "header": "", "shape": None, "sample_format": ""}
                facts.update(bounds="", data_max=None, problem=f"cannot be read ({exc.strerror or exc})")
            master = describe(path, root, facts, profiles, default, instruments)
            name, n = master.name, 2
            while master.name in taken:
                master.name, n = f"{name}-{n}", n + 1
            taken.add(master.name)
            found.append(master)
    if facts_cache:
        facts_cache.save(prune=True)
    return found


def as_library_masters(masters: Iterable[PixInsightMaster]) -> list:
    """The usable-or-rejectable masters (those whose type and camera are known) as
    ``library.LibraryMaster`` candidates (source 'pixinsight', ``damaged`` their problem)."""
    from .library import LibraryMaster

    return [
        LibraryMaster(
            name=m.name,
            file=m.file,
            type=m.type,
            camera=m.camera,
            setup=dict(m.setup),
            temperature_c=m.temperature_c,
            exptime=m.exptime,
            filter=m.filter,
            count=m.count or 1,
            identity=m.identity,
            date_begin=m.date_begin,
            time_begin=m.time_begin,
            time_end=m.time_begin,
            flags=[],
            damaged=m.problem,
            source="pixinsight",
            details=m.details(),
        )
        for m in masters
        if m.type and m.camera
    ]


def unusable_rows(masters: Iterable[PixInsightMaster]) -> list[dict[str, str]]:
    """matches.csv rows of the masters that cannot even be a candidate (no type or camera
    known): frame '', the reason in ``result``."""
    return [
        {
            "frame": "",
            "frame_type": "",
            "step": m.type,
            "candidate": m.name,
            "source": f"pixinsight:{m.file}",
            "result": f"unusable: {m.problem}",
        }
        for m in masters
        if not (m.type and m.camera)
    ]
