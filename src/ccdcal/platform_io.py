"""Which of the operating system's fast I/O paths ccdcal uses, decided once, at import.

ccdcal is tested on Linux (CI). There it reads raw frames with ``os.preadv`` (only the
rows asked for, no shared file position), writes calibrated lights around the page cache
(``O_DIRECT``, or ``os.posix_fadvise`` DONTNEED where the file system refuses O_DIRECT)
and holds ``output_dir`` for one run at a time with ``fcntl.flock``. macOS has no
O_DIRECT nor posix_fadvise, Windows none of these: wherever one is missing, the portable
path is taken instead, and importing ccdcal never fails for lack of one.

``POSITIONAL_READS``
    ``os.preadv``; else each RawFrame reads through a file object of its own (seek and
    ``readinto``, one thread at a time per frame).
``DIRECT_WRITES``
    ``os.O_DIRECT`` (and ``fcntl``, to turn it off where a write is refused); else, and
    where the file system refuses it at run time (ccdcal.writers), no O_DIRECT.
``FADVISE``
    ``os.posix_fadvise``; else files are written as usual, through the page cache.
``FLOCK``
    ``fcntl.flock``; else output_dir is not locked: a second run on the same folder is
    not refused (ccdcal.output_dir.claim warns once, saying so).

Every path writes the same bytes and reads the same values (the tests check both paths
against each other, the demo night's outputs byte for byte); the fast paths only spare
copies, page cache and memory.

``CCDCAL_PORTABLE_IO=1`` (any value but empty or ``0``), set in the environment before
ccdcal is imported, forces every portable path on a system that has the fast ones: for
tests, and for users whose file systems misbehave with them. It is read here, once.
"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: The switch: CCDCAL_PORTABLE_IO set to anything but "" or "0".
FORCED = os.environ.get("CCDCAL_PORTABLE_IO", "").strip() not in ("", "0")

POSITIONAL_READS: bool = not FORCED and hasattr(os, "preadv")
DIRECT_WRITES: bool = not FORCED and hasattr(os, "O_DIRECT") and fcntl is not None
FADVISE: bool = not FORCED and hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")
FLOCK: bool = not FORCED and fcntl is not None and hasattr(fcntl, "flock")
#: Whether every fast path is in use (job logs name the paths taken otherwise).
ALL_FAST: bool = POSITIONAL_READS and DIRECT_WRITES and FADVISE and FLOCK

#: Flags for os.open: binary on Windows (no newline translation), not inherited by children.
O_BINARY: int = getattr(os, "O_BINARY", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)


def describe() -> str:
    """One line saying which paths are in use (for logs and bug reports)."""
    paths = {
        "reads": "preadv" if POSITIONAL_READS else "file objects",
        "writes": "O_DIRECT" if DIRECT_WRITES else ("posix_fadvise" if FADVISE else "plain"),
        "output_dir lock": "flock" if FLOCK else "none",
    }
    forced = " (CCDCAL_PORTABLE_IO)" if FORCED else ""
    return ", ".join(f"{k}: {v}" for k, v in paths.items()) + forced
