"""Fault injection for the hostile-night tests: put this folder first on PYTHONPATH and
every Python process (Snakemake and its jobs) loads it. Nothing happens unless asked:

CCDCAL_PAUSE_AT=<regex>
    The first time a file whose destination path matches is renamed (``os.replace``) or
    hard-linked (``os.link``) into place, the process writes ``$CCDCAL_FAULT_DIR/paused``
    (its pid) and waits, with the file written but not yet in place, until
    ``$CCDCAL_FAULT_DIR/release`` exists (the test usually kills it first, with SIGKILL).
CCDCAL_FAIL_OPEN=<regex>, CCDCAL_FAIL_IN=<text>
    In a process whose command line holds <text> (a job's script name, say
    'calibrate_lights'), opening a raw frame whose path matches raises MemoryError (a job
    that runs out of memory).
"""

import os
import re
import sys
import time

_pause = os.environ.get("CCDCAL_PAUSE_AT")
_fail = os.environ.get("CCDCAL_FAIL_OPEN")
_folder = os.environ.get("CCDCAL_FAULT_DIR", ".")

if _pause:
    _pattern = re.compile(_pause)

    def _maybe_pause(destination) -> None:
        marker = os.path.join(_folder, "paused")
        if _pattern.search(os.fsdecode(destination)) and not os.path.exists(marker):
            with open(marker + ".tmp", "w") as handle:
                handle.write(f"{os.getpid()} {os.fsdecode(destination)}\n")
            _real_replace(marker + ".tmp", marker)
            deadline = time.monotonic() + 600
            while not os.path.exists(os.path.join(_folder, "release")) and time.monotonic() < deadline:
                time.sleep(0.05)

    _real_replace, _real_link = os.replace, os.link

    def _replace(src, dst, *args, **kwargs):
        _maybe_pause(dst)
        return _real_replace(src, dst, *args, **kwargs)

    def _link(src, dst, *args, **kwargs):
        _maybe_pause(dst)
        return _real_link(src, dst, *args, **kwargs)

    os.replace, os.link = _replace, _link

if _fail and any(os.environ.get("CCDCAL_FAIL_IN", "") in arg for arg in sys.argv):
    _fail_pattern = re.compile(_fail)
    import ccdcal.frames as _frames

    _real_init = _frames.RawFrame.__init__

    def _init(self, path, *args, **kwargs):
        if _fail_pattern.search(os.fspath(path)):
            raise MemoryError(f"injected: no memory to open {path}")
        _real_init(self, path, *args, **kwargs)

    _frames.RawFrame.__init__ = _init
