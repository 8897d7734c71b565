"""The library of masters kept across nights.

Every master the workflow makes is filed under ``library_dir`` as

    <type>/<camera>/<YYYY-MM-DD of its first input>/<name>_<MASTERID[:16]>.fits

with every setup value in its header (CAMERA, INSTRUME, XBINNING/YBINNING, GAIN, OFFSET,
READOUTM, CCD-TEMP, SET-TEMP, EXPTIME, FILTER, DATE-BEG/DATE-END, NCOMBINE, MASTERID).
Those headers are the index: ``scan_library`` rebuilds the list of masters by reading
them, so there is no other state to drift. Each master is verified (``verify_master``:
whole, FITS checksums right) before it may be used; a damaged one is listed with the
reason and rejected by the matching. A master's identity (MASTERID, ``plan.master_identity``)
is a digest of its inputs' checksums, its parameters, the identities of the masters its
inputs were calibrated with and the software version: an identical master is found, not rebuilt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .camera import LIGHT_MASTERS, safe_name
from .file_cache import FileCache, file_digest
from .parallel import map_in_threads

_EPOCH = datetime(2000, 1, 1)


def iso_to_seconds(text: str) -> float | None:
    try:
        return round(
            (datetime.fromisoformat(str(text).replace("Z", "")).replace(tzinfo=None) - _EPOCH).total_seconds(), 3
        )
    except ValueError:
        return None


def library_path(library_dir: str | os.PathLike, master: Mapping[str, Any]) -> Path:
    """Where a master (a plan entry with its identity) is filed."""
    day = (master.get("date_begin") or "")[:10] or "undated"
    return (
        Path(library_dir)
        / master["type"]
        / safe_name(master["camera"])
        / day
        / f"{master['name']}_{master['identity']}.fits"
    )


def library_cards(spec: Mapping[str, Any], set_temperature: float | None = None) -> dict[str, Any]:
    """The header cards a master (a plan entry, ``spec``) is filed and found by
    (``scan_library`` reads them back): its type, camera, setup, temperature (C; the
    first input's set point ``set_temperature``), MASTERID, exposure (s; a flat's and a
    fringe frame's: the mean of their inputs'), filter and the dates of its first and
    last input."""
    setup, kind = spec["setup"], spec["type"]
    cards: dict[str, Any] = {
        "IMAGETYP": (f"MASTER {kind.upper()}", "ccdcal master calibration"),
        "CCDCALTY": (kind, "master type"),
        "CAMERA": (spec["camera"], "ccdcal camera profile"),
    }
    if setup.get("instrument"):
        cards["INSTRUME"] = setup["instrument"]  # a value alone: the raw card's comment stays
    xb, yb = setup["binning"].split("x")
    cards["XBINNING"] = (int(xb), "binning of the inputs")
    cards["YBINNING"] = (int(yb), "binning of the inputs")
    if setup.get("gain_setting"):
        cards["GAIN"] = (setup["gain_setting"], "camera gain setting of the inputs")
    if setup.get("offset"):
        cards["OFFSET"] = (setup["offset"], "camera offset setting of the inputs")
    if setup.get("readout_mode"):
        cards["READOUTM"] = (setup["readout_mode"], "readout mode of the inputs")
    if spec.get("temperature_c") is not None:
        cards["CCD-TEMP"] = (spec["temperature_c"], "[C] mean sensor temperature of the inputs")
    if set_temperature is not None:
        cards["SET-TEMP"] = (set_temperature, "[C] set point of the first input")
    if spec.get("identity"):
        cards["MASTERID"] = (spec["identity"], "digest of inputs, parameters, masters, version")
    exposures = [float(f.get("exptime") or 0.0) for f in spec["frames"]]
    exptime = spec.get("exptime") if kind not in ("flat", "fringe") else sum(exposures) / len(exposures)
    cards["EXPTIME"] = (round(float(exptime or 0.0), 6), "[s] exposure of the inputs (mean)")
    if kind in ("flat", "fringe"):
        cards["FILTER"] = spec.get("filter", "")
    dates = sorted(f["date_obs"] for f in spec["frames"] if f.get("date_obs"))
    if dates:
        cards["DATE-BEG"] = (dates[0], "DATE-OBS of the first input")
        cards["DATE-END"] = (dates[-1], "DATE-OBS of the last input")
    return cards


def verify_master(path: str | os.PathLike) -> str | None:
    """None when the master file is whole: its size is what its HDUs' headers need and
    the FITS CHECKSUM of every HDU (header and data: ccdcal writes CHECKSUM and DATASUM on
    every master) verifies; else the reason ('truncated: ... bytes, the headers need ...',
    'checksum mismatch in HDU UNCERT', 'no checksum in HDU MASK', 'not a readable FITS
    file (...)')."""
    from astropy.io import fits

    from .products import fits_size_problem

    path = Path(path)
    try:
        with warnings.catch_warnings():  # a truncated file is reported below
            warnings.filterwarnings("ignore", message="File may have been truncated")
            warnings.filterwarnings("ignore", message="Error validating header")
            with fits.open(path, memmap=True) as hdul:  # memory-mapped: summed without a copy
                problem = fits_size_problem(hdul, path.stat().st_size)
                if problem:
                    return problem
                for hdu in hdul:
                    if "CHECKSUM" not in hdu.header or "DATASUM" not in hdu.header:
                        return f"no checksum in HDU {hdu.name}"
                    if hdu.verify_checksum() != 1:
                        return f"checksum mismatch in HDU {hdu.name}"
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
        return f"not a readable FITS file ({exc})"
    return None


@dataclass(frozen=True)
class LibraryMaster:
    """A master filed in the library, as its header describes it (``scan_library``)."""

    name: str  # the file's stem
    file: str  # absolute path
    type: str  # bias | dark | flat (CCDCALTY)
    camera: str
    setup: dict[str, str]  # camera, instrument, binning, shape ('NYxNX'), gain_setting, offset, readout_mode
    temperature_c: float | None  # CCD-TEMP, C
    exptime: float  # EXPTIME, s
    filter: str
    count: int  # NCOMBINE: frames combined
    identity: str  # MASTERID
    date_begin: str  # DATE-BEG, UTC ISO 8601 ('' when unknown)
    time_begin: float | None  # DATE-BEG and DATE-END in seconds since 2000 (None when unknown)
    time_end: float | None
    flags: list[str]  # CALFLAGS: steps its inputs were calibrated without
    damaged: str | None  # why the file cannot be used (``verify_master``); None when whole
    source: str = "library"  # library | pixinsight (``pixinsight_library``: read, converted when used)
    details: dict[str, Any] = field(default_factory=dict)  # pixinsight: ``PixInsightMaster.details``


def scan_library(
    library_dir: str | os.PathLike | None, verified_cache: str | os.PathLike | None = None
) -> list[LibraryMaster]:
    """Every ccdcal master under ``library_dir``, read from its header, each verified
    (``verify_master``; the reason in ``LibraryMaster.damaged``). ``verified_cache``: a
    JSON file where the verdicts are kept (``FileCache``), so that a file is verified
    again only once it has changed."""
    if not library_dir or not Path(library_dir).is_dir():
        return []
    from astropy.io import fits

    verdicts = FileCache(verified_cache, verify_master) if verified_cache else None
    found = []
    for path in sorted(Path(library_dir).rglob("*.fits")):
        try:
            header = fits.getheader(path)
        except (OSError, ValueError):
            continue
        kind = header.get("CCDCALTY")
        if kind not in LIGHT_MASTERS or "MASTERID" not in header:
            continue
        gain, offset = header.get("GAIN", ""), header.get("OFFSET", "")
        setup = {
            "camera": header.get("CAMERA", ""),
            "instrument": header.get("INSTRUME", ""),
            "binning": f"{header.get('XBINNING', 1)}x{header.get('YBINNING', 1)}",
            "shape": f"{header['NAXIS2']}x{header['NAXIS1']}",
            "gain_setting": str(gain),
            "offset": str(offset),
            "readout_mode": str(header.get("READOUTM", "")),
        }
        date_begin = header.get("DATE-BEG", "")
        flags = str(header.get("CALFLAGS", "OK"))
        found.append(
            LibraryMaster(
                name=path.stem,
                file=str(path.resolve()),
                type=kind,
                camera=setup["camera"],
                setup=setup,
                temperature_c=header.get("CCD-TEMP"),
                exptime=float(header.get("EXPTIME", 0.0)),
                filter=str(header.get("FILTER", "")).strip(),
                count=int(header.get("NCOMBINE", 0)),
                identity=header["MASTERID"],
                date_begin=date_begin,
                time_begin=iso_to_seconds(date_begin),
                time_end=iso_to_seconds(header.get("DATE-END", date_begin)),
                flags=[] if flags == "OK" else flags.split(","),
                damaged=verdicts.value(path, str(path.resolve())) if verdicts else verify_master(path),
            )
        )
    if verdicts:
        verdicts.save(prune=True)
    return found


#: The inventory's checksums of raw files, in output_dir/work (``ChecksumCache``).
CHECKSUMS = "checksums.json"


class ChecksumCache(FileCache):
    """sha256 of raw files, remembered by (path, size, mtime) in a JSON file, so a rerun
    of the inventory reads each calibration frame's bytes only once."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, lambda file: file_digest(file, length=64))

    def digest(self, raw_dir: Path, rel: str) -> str:
        return self.value(Path(raw_dir) / rel, rel)

    def digests(self, raw_dir: str | os.PathLike, paths: Iterable[str], threads: int = 1) -> dict[str, str]:
        """{path: sha256} of ``paths`` (relative to ``raw_dir``), ``threads`` files at a
        time (hashlib and file reads release the GIL)."""
        paths = list(paths)
        return dict(zip(paths, map_in_threads(lambda rel: self.digest(Path(raw_dir), rel), paths, threads)))
