"""Calibrated lights kept across reruns: a light group's job that runs again (a light
added to the group, a job killed, a group folder deleted) calibrates only the lights
whose calibrated file would be different, and takes the others from here.

Where
    ``output_dir/work/cache/lights/<key>/`` (``output_dir.LIGHT_CACHE_DIR``), outside the
    folders Snakemake deletes before it reruns a job. An entry holds the calibrated file
    (``calibrated.fits``), its thumbnail (``thumbnail.jpg``) and its record
    (``entry.json``: the inputs its key was made of, the light's quality figures for
    lights.csv, and each file's size and modification time). The files are hard links to
    the group's own, which ``calibrated/`` links too: the cache of the current outputs
    costs no disk space beyond its records (copies where the file system refuses links).
The key
    The SHA-256 of everything the entry's bytes depend on (``light_key``): the raw file's
    path (it is RAWFILE) and SHA-256, the light's plan entry (output name, flags, masters,
    dark mode and scale; not its notes), each master's file name and SHA-256, the camera's
    light settings (those CFGDIGST digests, output compression included), the gain, read
    noise, their sources, the dark variance rate and flags of the setup, and the software:
    ccdcal's version and a digest of its code, and the versions of the libraries that
    compute pixels or write files (``PIXEL_LIBRARIES``). A raw file's SHA-256 is the
    inventory's (``work/checksums.json``), trusted while the file keeps the size and
    modification time it was computed at, as Snakemake trusts modification times. The
    inventory takes the lights' only once the cache holds lights: on a first run nothing
    can be found here, and each light's key is made from the bytes its calibration read
    (the night's lights are not read once more before any master starts).
Committed last
    An entry is filled in a hidden temporary folder beside it, then renamed into place:
    a job killed at any moment leaves a whole entry or a temporary folder, which the next
    run removes (``output_dir.find_incomplete``). A light is filed only once its file is
    in place, whole (its size is what its headers need) and made of the raw bytes its key
    names (RAWSUM). An entry is used only when its record reads, names its key, and each
    of its files has the size and modification time recorded: an entry truncated,
    rewritten or half-removed is removed, with a warning, and the light calibrated again.
Pruned
    When ``calibrated/`` is published from every group (``publish.publish_job``; not after a
    failed run), entries no current light uses are removed, with leftover temporary
    folders: each group's folder names its lights' keys (``GROUP_KEYS``). The cache then
    holds the night's current lights and no more. Deleting ``work/cache`` clears it
    (the next run of a group calibrates all its lights again).
Never in the way
    A cache that cannot be read or written (read-only, full, not a folder) is warned about
    in the job's log; its lights are then calibrated as without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .camera import LIGHT_MASTERS
from .file_cache import file_digest
from .output_dir import LIGHT_CACHE_DIR
from .parallel import map_in_threads
from .writers import link_or_copy, write_text_atomic

log = logging.getLogger("ccdcal.light_cache")

#: The layout of an entry and of its key's inputs (a change of either bumps it).
CACHE_FORMAT = 1
RECORD = "entry.json"
LIGHT_FILE = "calibrated.fits"
THUMBNAIL_FILE = "thumbnail.jpg"
#: In each light group's folder: the cache key of each of its calibrated lights, by output
#: name (JSON), which the pruning keeps. Hidden: not published.
GROUP_KEYS = ".light-cache.json"
#: The distributions whose results are in a calibrated light's bytes (pixels, headers,
#: compression, thumbnail): their versions are part of its key.
PIXEL_LIBRARIES = ("numpy", "astropy", "scipy", "bottleneck", "astroscrappy", "pillow")
#: Problems warned about one by one in a job's log; the rest are counted (``problems``).
WARNED = 3

_KEY = re.compile(r"[0-9a-f]{64}")


@lru_cache(maxsize=1)
def software_identity() -> dict[str, str]:
    """ccdcal's version and code digest, and the version of each of PIXEL_LIBRARIES ('' when
    not installed)."""
    from .provenance import code_digest

    versions = {"ccdcal": __version__, "ccdcal_code": code_digest()}
    for name in PIXEL_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def light_key(
    entry: Mapping[str, Any],
    raw_sha256: str,
    masters: Mapping[str, tuple[str, str]],
    camera: Mapping[str, Any],
    noise: Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """(key, inputs): the SHA-256 (64 hex digits) of what a calibrated light's bytes depend
    on, and those inputs (kept in its entry's record). ``entry``: the light's plan entry;
    ``masters``: (file name, SHA-256) of each master it gets, by step (bias, dark, flat);
    ``camera``: the settings it is calibrated with; ``noise``: the gain, read noise and
    flags of its setup as the light job applies them (None: each light's own)."""
    inputs = {
        "format": CACHE_FORMAT,
        "raw": {"path": entry["path"], "sha256": raw_sha256},
        "light": {k: v for k, v in entry.items() if k != "notes"},
        "masters": {step: list(masters[step]) for step in LIGHT_MASTERS if step in masters},
        "camera": camera,
        "noise": noise,
        "software": software_identity(),
    }
    from .provenance import canonical_json

    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest(), inputs


def calibrated_problem(path: Path, raw_sha256: str) -> str | None:
    """Why the calibrated file at ``path`` may not be filed under a key made from the raw
    file of ``raw_sha256``: not whole (its size is not what its headers need), or made
    from other raw bytes (its RAWSUM, the first 16 hex digits of the bytes it was read
    from: the raw file changed after the inventory); None when it may."""
    from astropy.io import fits

    from .products import fits_size_problem

    try:  # no warnings.catch_warnings: it swaps the filters of every thread (this is the writer's)
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            problem = fits_size_problem(hdul, path.stat().st_size)
            rawsum = hdul[0].header.get("RAWSUM")
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
        return f"not a readable FITS file ({exc})"
    if problem:
        return problem
    if not rawsum or not raw_sha256.startswith(str(rawsum)):
        return f"made from other raw bytes (RAWSUM {rawsum}, the inventory's {raw_sha256[:16]}): the raw file changed"
    return None


class LightCache:
    """The cache of calibrated lights under ``root`` (see the module docstring);
    ``checksums``: the inventory's checksum file (``library.ChecksumCache``), read only.
    Safe to use from several threads; counts what it did (``reused``, ``filed``) and what
    went wrong (``problems``, also warned about)."""

    def __init__(self, root: str | os.PathLike, checksums: str | os.PathLike | None = None):
        self.root = Path(root)
        self._lock = threading.Lock()
        self.reused = 0
        self.filed = 0
        self.problems: list[str] = []
        from .library import ChecksumCache

        self._holds_lights = _has_entries(self.root)
        self._checksums = None
        try:
            self._checksums = ChecksumCache(checksums) if checksums else None
        except OSError as exc:
            self._problem(f"the inventory's checksums cannot be read ({exc}): the raw files are hashed again")

    # ------------------------------------------------------------------ keys
    def keys(
        self,
        lights: Iterable[Mapping[str, Any]],
        raw_dir: str | os.PathLike,
        master_files: Mapping[str, str | os.PathLike],
        camera: Mapping[str, Any],
        noise: Mapping[str, Any] | None,
        threads: int = 1,
    ) -> tuple[dict[str, tuple[str, dict[str, Any]]], Callable[[Mapping[str, Any], str], tuple[str, dict]] | None]:
        """(``light_key`` of each light (plan entries) by raw path, ``key_for``);
        ``master_files`` maps master names to files (hashed here, ``threads`` at a time).
        A light whose raw file cannot be read has no key (it is calibrated, which says why),
        nor one of an empty cache whose SHA-256 the inventory did not take (a first run:
        nothing of it can be here): its key is ``key_for(entry, raw_sha256)``, with the
        SHA-256 of the bytes its calibration read. ``key_for`` is None when the masters
        cannot be read."""
        lights = list(lights)
        names = sorted({e[s] for e in lights for s in LIGHT_MASTERS if e.get(s)})
        try:
            digests = dict(zip(names, map_in_threads(lambda n: file_digest(master_files[n], 64), names, threads)))
        except OSError as exc:
            self._problem(f"the masters cannot be read to make the lights' keys ({exc}); not used")
            return {}, None

        def key_for(entry: Mapping[str, Any], raw_sha256: str) -> tuple[str, dict[str, Any]]:
            masters = {s: (Path(master_files[entry[s]]).name, digests[entry[s]]) for s in LIGHT_MASTERS if entry.get(s)}
            return light_key(entry, raw_sha256, masters, camera, noise)

        keys = {}
        for entry in lights:
            try:
                raw_sha256 = self.raw_digest(raw_dir, entry["path"])
            except OSError:
                continue
            if raw_sha256 is not None:
                keys[entry["path"]] = key_for(entry, raw_sha256)
        return keys, key_for

    def raw_digest(self, raw_dir: str | os.PathLike, rel: str) -> str | None:
        """The SHA-256 of a raw file: the inventory's while the file has the size and time
        it had then; else read now, unless the cache holds no light (then None: the light's
        key is made from the bytes its calibration reads)."""
        path = Path(raw_dir) / rel
        known = None if self._checksums is None else self._checksums.known(path, rel)
        if known is not None or not self._holds_lights:
            return known
        return file_digest(path, 64)

    # ------------------------------------------------------------------ use
    def restore(self, key: str, light_file: Path, thumbnail: Path) -> dict[str, str] | None:
        """The entry of ``key`` linked into place as ``light_file`` and ``thumbnail``;
        returns the light's quality figures as its record holds them (lights.csv's
        ``QC_COLUMNS``), or None when there is no usable entry (a damaged one is removed)."""
        folder = self.root / key
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        except FileNotFoundError:
            if folder.is_dir():
                self._discard(folder, "it has no record")
            return None
        except (OSError, ValueError) as exc:
            self._discard(folder, f"its record cannot be read ({exc})")
            return None
        try:
            damage = self._damage(folder, key, record)
        except (TypeError, ValueError) as exc:  # a record of the right format, garbled
            damage = f"its record is malformed ({exc})"
        if damage:
            self._discard(folder, damage)
            return None
        try:
            link_or_copy(folder / LIGHT_FILE, light_file)
            if THUMBNAIL_FILE in record["files"]:
                link_or_copy(folder / THUMBNAIL_FILE, thumbnail)
        except OSError as exc:
            light_file.unlink(missing_ok=True)
            self._problem(f"could not take {light_file.name} from entry {key} ({exc}); calibrating it")
            return None
        with self._lock:
            self.reused += 1
        return dict(record["statistics"])

    @staticmethod
    def _damage(folder: Path, key: str, record: Any) -> str | None:
        """Why an entry may not be used, or None."""
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
            return "its record is of another format"
        if record.get("key") != key:
            return f"its record names another key ({record.get('key')})"
        files = record.get("files")
        if not isinstance(files, dict) or LIGHT_FILE not in files or not isinstance(record.get("statistics"), dict):
            return "its record is incomplete"
        for name, (size, mtime_ns) in files.items():
            try:
                stat = (folder / name).stat()
            except OSError as exc:
                return f"{name} cannot be read ({exc.strerror})"
            if stat.st_size != size:
                return f"{name} has {stat.st_size} bytes, {size} when it was filed (truncated or replaced)"
            if stat.st_mtime_ns != mtime_ns:
                return f"{name} was modified after it was filed"
        return None

    def _discard(self, folder: Path, why: str) -> None:
        self._problem(f"entry {folder.name} is damaged ({why}): removed, its light calibrated again")
        try:
            remove_entry(folder)
        except OSError as exc:
            self._problem(f"could not remove entry {folder.name} ({exc})")

    # ------------------------------------------------------------------ fill
    def store(
        self, key: str, inputs: Mapping[str, Any], light_file: Path, thumbnail: Path, statistics: Mapping[str, str]
    ) -> bool:
        """File a light just calibrated (its file and thumbnail in place in its group's
        folder) under ``key``, with ``statistics`` (its lights.csv quality figures) and
        ``inputs`` (``light_key``) in its record. Returns whether it was filed; a light
        that cannot be (a cache read-only or full, a file not whole) is warned about."""
        problem = calibrated_problem(light_file, inputs["raw"]["sha256"])
        if problem:
            self._problem(f"{light_file.name} not filed: {problem}")
            return False
        target = self.root / key
        tmp = self.root / f".{key}.{secrets.token_hex(6)}.tmp"
        try:
            tmp.mkdir(parents=True)
            files = {}
            for source, name in ((light_file, LIGHT_FILE), (thumbnail, THUMBNAIL_FILE)):
                if name == THUMBNAIL_FILE and not source.is_file():
                    continue
                link_or_copy(source, tmp / name)
                stat = (tmp / name).stat()
                files[name] = [stat.st_size, stat.st_mtime_ns]
            record = {"format": CACHE_FORMAT, "key": key, "files": files, "statistics": dict(statistics)}
            record["inputs"] = inputs
            (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            if target.exists():  # damaged (restore removes those) or filed meanwhile: replaced
                remove_entry(target)
            os.replace(tmp, target)  # the commit
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._problem(f"could not file {light_file.name} ({exc}); it is calibrated again when its group reruns")
            return False
        with self._lock:
            self.filed += 1
        return True

    def _problem(self, message: str) -> None:
        with self._lock:
            self.problems.append(message)
            warn = len(self.problems) <= WARNED
        if warn:
            log.warning("light cache %s: %s", self.root, message)

    # ------------------------------------------------------------------ prune
    def prune(self, keep: Iterable[str]) -> tuple[int, int]:
        """Remove every entry whose key is not in ``keep``, and temporary folders left by
        killed jobs. Returns (entries kept, entries removed)."""
        keep = set(keep)
        kept = removed = 0
        try:
            children = sorted(self.root.iterdir())
        except FileNotFoundError:
            return 0, 0
        except OSError as exc:
            self._problem(f"cannot be listed to prune it ({exc})")
            return 0, 0
        for child in children:
            if child.name in keep:
                kept += 1
                continue
            if not (_KEY.fullmatch(child.name) or (child.name.startswith(".") and child.name.endswith(".tmp"))):
                continue  # not ccdcal's
            try:
                remove_entry(child)
            except OSError as exc:
                self._problem(f"could not remove stale entry {child.name} ({exc})")
                continue
            removed += _KEY.fullmatch(child.name) is not None
        return kept, removed


def holds_lights(output_dir: str | os.PathLike) -> bool:
    """Whether the light cache of ``output_dir`` has any entry (or leftover) in it."""
    return _has_entries(Path(output_dir) / LIGHT_CACHE_DIR)


def _has_entries(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            return any(True for _ in entries)
    except OSError:  # none yet, or not a folder: nothing to find in it
        return False


def remove_entry(folder: Path) -> None:
    """Remove an entry: its record first (it is no longer an entry), then its files."""
    if folder.is_dir() and not folder.is_symlink():
        (folder / RECORD).unlink(missing_ok=True)
        shutil.rmtree(folder)
    else:
        folder.unlink(missing_ok=True)


def write_group_keys(group_dir: Path, keys: Mapping[str, str]) -> None:
    """Record the cache key of each calibrated light of a group (by output name)."""
    write_text_atomic(json.dumps(dict(keys), indent=0, sort_keys=True) + "\n", group_dir / GROUP_KEYS)


def group_keys(group_dirs: Iterable[str | os.PathLike]) -> set[str]:
    """The cache keys the light groups' folders name (``write_group_keys``)."""
    keys: set[str] = set()
    for folder in group_dirs:
        try:
            keys.update(json.loads((Path(folder) / GROUP_KEYS).read_text(encoding="utf-8")).values())
        except (OSError, ValueError, AttributeError):
            continue
    return keys
