"""Publishing a night's calibrated frames: the light groups' folders gathered into one
tree, ``calibrated/``, mirroring raw_dir.

Light on imports (no numpy, no astropy): the publishing job only links files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .light_cache import LightCache, group_keys
from .output_dir import GROUP_REPORT, write_published_manifest
from .writers import link_or_copy

log = logging.getLogger("ccdcal")


def publish_job(
    group_dirs: Iterable[str],
    calibrated_dir: str,
    partial: bool = False,
    light_cache: str | os.PathLike | None = None,
) -> int:
    """Gather the groups' calibrated frames into one tree mirroring raw_dir (hard links,
    copies across file systems), then its manifest (``output_dir.PUBLISHED_MANIFEST``,
    last: ``calibrated/`` is complete when it is there). ``partial``: after a failed run,
    from the groups that finished. ``light_cache``: the cache of calibrated lights, pruned
    to the groups' current lights (not when ``partial``). Returns the number of files."""
    group_dirs = list(group_dirs)
    target = Path(calibrated_dir)
    target.mkdir(parents=True, exist_ok=True)
    groups, files = [], []
    for group_dir in sorted(group_dirs):
        root = Path(group_dir)
        groups.append(root.name)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or path.name == GROUP_REPORT or any(part.startswith(".") for part in rel.split("/")):
                continue
            link_or_copy(path, target / rel)
            files.append(rel)
    write_published_manifest(target, groups, files, partial=partial)
    log.info("published %d calibrated frames to %s%s", len(files), target, " (partial)" if partial else "")
    if light_cache is not None and not partial:
        kept, removed = LightCache(light_cache).prune(group_keys(group_dirs))
        log.info("light cache: %d entries kept, %d no longer used removed", kept, removed)
    return len(files)
