"""The output folder of a night: where ccdcal may write, one run at a time, and which of
its outputs are complete.

Where
    ``output_dir`` must not be ``raw_dir`` nor contain it (outputs would replace raw
    frames, and Snakemake deletes a directory output before remaking it). It may lie
    inside ``raw_dir`` (it is then left out of the scan). A folder that ccdcal did not make
    is refused when it already holds anything ccdcal writes (``calibrated/``,
    ``summary.txt``, ...): those would be replaced or deleted.
One run at a time
    A run holds an exclusive ``flock`` on ``output_dir/.ccdcal.lock`` while it builds its
    DAG and runs its jobs; a second run on the same folder (from any checkout or
    machine sharing the file system) is refused at once, naming the first. The kernel
    drops the lock when its process dies, so after a ``kill -9`` the same command just
    works: Snakemake's own lock files that name this folder are then stale and removed.
    Where there is no ``fcntl.flock`` (Windows), the file system refuses it (ENOLCK,
    EOPNOTSUPP: some network and FUSE mounts) or ``CCDCAL_PORTABLE_IO`` is set
    (ccdcal.platform_io), the folder is not locked: the run goes on with a warning (once
    per process), a second run on the same folder is not refused, and Snakemake's lock
    files are then left alone (after a killed run, ``snakemake --unlock`` clears them).
Complete or redone
    A light group's folder is complete when its ``lights.csv`` (written last) exists and
    every light it reports calibrated is there; ``calibrated/`` when its manifest
    (``.ccdcal-published``, written last) exists, lists every file present and names only
    complete groups. Anything incomplete (a job killed mid-write, a file deleted by hand)
    is removed before the DAG is built, so Snakemake redoes it, and nothing else.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from . import platform_io
from .platform_io import fcntl
from .writers import write_text_atomic

log = logging.getLogger("ccdcal")

#: The lock file; its existence also marks a folder as ccdcal's.
LOCK_NAME = ".ccdcal.lock"
#: What ccdcal writes at the top of output_dir (a folder holding any of these that ccdcal
#: did not make is refused).
OUTPUT_NAMES = (
    "calibrated",
    "masters",
    "work",
    "logs",
    "inventory.csv",
    "plan.json",
    "matches.csv",
    "summary.csv",
    "summary.txt",
)
#: The manifest of ``calibrated/``, written last by the publishing job.
PUBLISHED_MANIFEST = ".ccdcal-published"
#: Where jobs leave their records, relative to output_dir: the light groups' folders, each
#: with its report (written last), the masters' reports (what went into each), the errors
#: of failed jobs.
GROUPS_DIR = Path("work") / "lights"
GROUP_REPORT = "lights.csv"
MASTER_REPORTS_DIR = Path("work") / "masters"
FAILURES_DIR = Path("work") / "failures"
#: Each master's reduced image (.npy, float32 ADU) for the report's preview.
MASTER_PREVIEWS_DIR = Path("work") / "previews"
#: Each setup's gain and read noise (night_noise), one JSON record per setup.
NOISE_DIR = Path("work") / "noise"
#: The night's quality checks (ccdcal.qc), one row per check and subject.
QC_CSV = "qc.csv"
#: Calibrated lights kept across reruns of their group's job (ccdcal.light_cache), one
#: folder per key; temporary folders of killed jobs are removed with the other leftovers.
LIGHT_CACHE_DIR = Path("work") / "cache" / "lights"
#: The report's figures by their data, so a rerun redraws only what changed (``report_pages.FigureCache``).
FIGURE_CACHE_DIR = Path("work") / "cache" / "figures"


def failure_record(output_dir: str | os.PathLike, kind: str, name: str) -> Path:
    """Where a failed job of ``kind`` ('masters' or 'lights') writes its error."""
    return Path(output_dir) / FAILURES_DIR / kind / f"{name}.txt"


class OutputDirError(Exception):
    """output_dir cannot be used; the message says why and what to do."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_locations(raw_dir: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Refuse an output_dir that is raw_dir, contains it, or is a folder ccdcal did not
    make that already holds something ccdcal writes. Changes nothing."""
    raw, out = Path(raw_dir).resolve(), Path(output_dir).resolve()
    if out == raw:
        raise OutputDirError(
            f"output_dir is raw_dir ({raw}): outputs would replace raw frames. Give an "
            "output_dir of its own (it may lie inside raw_dir, e.g. raw_dir/calibrated-night)."
        )
    if _inside(raw, out):
        raise OutputDirError(
            f"raw_dir {raw} lies inside output_dir {out}: ccdcal replaces and deletes folders "
            "there (calibrated/, work/). Give an output_dir outside raw_dir."
        )
    if out.is_dir() and not is_ccdcal_output(out):
        clashes = sorted(name for name in OUTPUT_NAMES if (out / name).exists())
        if clashes:
            raise OutputDirError(
                f"output_dir {out} was not made by ccdcal and already holds "
                f"{', '.join(clashes)}: ccdcal would replace or delete them. Move them away or "
                "give an empty or new output_dir."
            )


def is_ccdcal_output(folder: Path) -> bool:
    """A folder ccdcal has written to (its lock file, or the inventory and plan of a run
    made before there was one)."""
    return (folder / LOCK_NAME).exists() or ((folder / "plan.json").is_file() and (folder / "inventory.csv").is_file())


#: Locks held by this process, by folder (kept open for the life of the process); the
#: value says whether the folder is locked (False: the lock file alone, see ``claim``).
_HELD: dict[Path, tuple[int, bool]] = {}
#: Whether the warning that output_dir is not locked was given (once per process).
_WARNED_UNLOCKED = False


def _lock(fd: int) -> str | None:
    """Lock ``fd`` (flock, exclusive, not waiting). None when locked; the reason when the
    system or file system cannot lock it. Raises BlockingIOError when another run holds it."""
    if not platform_io.FLOCK:
        return "CCDCAL_PORTABLE_IO is set" if platform_io.FORCED else "this system has no fcntl.flock"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(exc.errno, exc.strerror) from None
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
            return f"the file system refuses flock ({exc.strerror})"
        raise
    return None


def claim(output_dir: str | os.PathLike, description: str = "") -> bool:
    """Take the run's exclusive lock on ``output_dir`` (made if missing), or raise
    OutputDirError naming the run that holds it. Held until this process exits; a second
    call from the same process does nothing. Returns whether the folder is locked: False
    where it cannot be (see the module docstring; a warning is logged once), the run then
    goes on unprotected against a second one."""
    global _WARNED_UNLOCKED
    folder = Path(output_dir).resolve()
    if folder in _HELD:
        return _HELD[folder][1]
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | platform_io.O_CLOEXEC | platform_io.O_BINARY, 0o666)
    try:
        why_not = _lock(fd)
    except BlockingIOError:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)
        raise OutputDirError(
            f"output_dir {folder} is in use by another ccdcal run ({_describe_holder(holder)}). "
            "Wait for it to finish, or give another output_dir."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    if why_not is not None and not _WARNED_UNLOCKED:
        _WARNED_UNLOCKED = True
        log.warning(
            "output_dir %s is not locked (%s): a second ccdcal run on the same output_dir is not "
            "refused and the two would spoil each other's outputs; start one run at a time. "
            "Snakemake's lock files are left alone (after a killed run: snakemake --unlock).",
            folder,
            why_not,
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
        "command": " ".join(sys.argv),
        "what": description,
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
    _HELD[folder] = (fd, why_not is None)
    return why_not is None


def _describe_holder(text: str) -> str:
    try:
        record = json.loads(text)
        return f"pid {record['pid']} on {record['host']}, started in {record['cwd']}: {record['command']}"
    except (ValueError, KeyError, TypeError):
        return "no details recorded"


def remove_stale_snakemake_locks(
    locks_dir: str | os.PathLike, output_dir: str | os.PathLike, workdir: str | os.PathLike = "."
) -> list[Path]:
    """Delete Snakemake's lock files (``.snakemake/locks/N.input.lock`` / ``N.output.lock``)
    that name a file inside ``output_dir``. Call only while holding ``claim(output_dir)``:
    no live run can then own them, they are left by a killed one. Returns those removed."""
    out = Path(output_dir).resolve()
    removed = []
    for lock in sorted(Path(locks_dir).glob("*.lock")) if Path(locks_dir).is_dir() else []:
        try:
            names = lock.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        if any(_inside((Path(workdir) / n.strip()).resolve(), out) for n in names if n.strip()):
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed


# ----------------------------------------------------------------- completeness
def group_is_complete(folder: Path) -> bool:
    """A light group's folder holds its report and every light the report calls calibrated."""
    report = folder / GROUP_REPORT
    if not report.is_file():
        return False
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return all(
        (folder / row["output"]).is_file() for row in rows if row.get("status") == "calibrated" and row.get("output")
    )


def write_published_manifest(
    calibrated: Path, groups: Iterable[str], files: Iterable[str], partial: bool = False
) -> None:
    """Record what ``calibrated/`` holds (written last: its presence means complete).
    ``partial``: published after a failed run from the groups that finished; the next run
    redoes it."""
    manifest = {"groups": sorted(groups), "files": sorted(files), "partial": partial}
    write_text_atomic(json.dumps(manifest, indent=0, sort_keys=True) + "\n", calibrated / PUBLISHED_MANIFEST)


def published_is_complete(output_dir: Path) -> bool:
    calibrated = Path(output_dir) / "calibrated"
    try:
        manifest = json.loads((calibrated / PUBLISHED_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    groups = Path(output_dir) / GROUPS_DIR
    return (
        not manifest.get("partial")
        and all((calibrated / f).is_file() for f in manifest.get("files", []))
        and all(group_is_complete(groups / g) for g in manifest.get("groups", []))
    )


def find_incomplete(output_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """Every incomplete output (see the module docstring) and every temporary file left by
    a killed writer: (path, why). Changes nothing."""
    out = Path(output_dir)
    found = []
    groups = out / GROUPS_DIR
    for folder in sorted(groups.iterdir()) if groups.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith(".") and not group_is_complete(folder):
            found.append((folder, "incomplete light group"))
    calibrated = out / "calibrated"
    if calibrated.exists() and not published_is_complete(out):
        found.append((calibrated, "incomplete or out of date"))
    for folder in (
        out,
        out / "masters",
        out / "work",
        out / MASTER_REPORTS_DIR,
        out / NOISE_DIR,
        groups,
        out / LIGHT_CACHE_DIR,
    ):
        for tmp in sorted(folder.glob(".*.tmp")) if folder.is_dir() else []:
            found.append((tmp, "left by a killed writer"))
    return found


def remove_incomplete(output_dir: str | os.PathLike) -> list[str]:
    """Remove what ``find_incomplete`` finds, so that the next DAG redoes exactly that.
    Call only while holding ``claim(output_dir)``. Returns what was removed, for the log."""
    out = Path(output_dir)
    removed = []
    for path, why in find_incomplete(out):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(f"{path.relative_to(out)} ({why})")
    return removed
