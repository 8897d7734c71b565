"""A value computed from a file's bytes, remembered in a JSON file until the file changes.

The caches of output_dir/work: the raw files' checksums (``library.ChecksumCache``), the
library's verdicts (``library.scan_library``) and the inventory's reading of each raw
file's header (``inventory.take_inventory``). A file is known by its path, size and
modification time (ns); ``tag`` adds what else the value depends on (the settings and
code that computed it), so a changed camera profile or ccdcal reads the files again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .writers import write_text_atomic


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


class FileCache:
    """``compute(path)`` (JSON-able: a digest, a verdict, an inventory row) remembered by
    (key, size, mtime_ns, ``tag``) in the JSON file ``path``, so that a rerun reads a file
    again only once it has changed. A damaged or missing cache file is an empty cache."""

    def __init__(self, path: str | os.PathLike, compute: Callable[[Path], Any] | None = None, tag: str = ""):
        self.path = Path(path)
        self._compute = compute
        self._tag = [tag] if tag else []
        self._known: dict[str, list] = {}
        self._used: set[str] = set()
        if self.path.exists():
            try:
                self._known = json.loads(self.path.read_text())
            except ValueError:
                self._known = {}

    def value(
        self, file: str | os.PathLike, key: str | None = None, compute: Callable[[Path], Any] | None = None
    ) -> Any:
        """``compute(file)`` (default: the cache's), remembered under ``key`` (default:
        the path as given). OSError when ``file`` cannot be looked at (stat)."""
        file = Path(file)
        key, stamp, remembered = self._lookup(file, key)
        self._used.add(key)
        if remembered:
            return remembered[0]
        value = (compute or self._compute)(file)
        self._known[key] = [*stamp, value]
        return value

    def known(self, file: str | os.PathLike, key: str | None = None) -> Any:
        """The value remembered for ``file`` (under ``key``, default its path) while it has
        the size and modification time it had then; None otherwise (nothing computed).
        OSError when ``file`` cannot be looked at (stat)."""
        _, _, remembered = self._lookup(Path(file), key)
        return remembered[0] if remembered else None

    def _lookup(self, file: Path, key: str | None) -> tuple[str, list, tuple]:
        """(key, the file's stamp now, (value,) when remembered under that stamp, else ())."""
        key = str(file) if key is None else key
        stat = file.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, *self._tag]
        known = self._known.get(key)
        return key, stamp, (known[-1],) if isinstance(known, list) and known[:-1] == stamp else ()

    def save(self, prune: bool = False) -> None:
        """Write the cache; ``prune``: keep only the files asked for since it was read
        (the files gone from raw_dir or the library are forgotten)."""
        known = {k: v for k, v in self._known.items() if k in self._used} if prune else self._known
        write_text_atomic(json.dumps(known, sort_keys=True), self.path)
