"""The library job: one master filed into the library."""

from __future__ import annotations

import logging

from ..writers import copy_atomic

log = logging.getLogger("ccdcal")


def file_in_library_job(master: str, destination: str) -> None:
    """File a master into the library (see ccdcal.library for the layout)."""
    copy_atomic(master, destination)
    log.info("filed %s as %s", master, destination)
