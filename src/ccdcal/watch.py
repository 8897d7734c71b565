"""Live nights (``ccdcal watch``): every light calibrated seconds after its file is complete.

The watcher follows ``raw_dir`` (inotify through ``watchdog`` where it can; else, and on
network file systems, by listing the folder every ``poll_seconds``) and hands on a file
once it is complete: its size and time unchanged for ``settle_seconds`` and its FITS (or
XISF) structure whole (``frames.RawFrame.check_complete``), so a half-written frame is never read.

- A **light** is planned alone against the master library (``plan.make_plan`` with the
  library's masters, as the batch workflow plans a night of lights) and calibrated by the
  batch code (``lights.calibrate_group``) with the masters kept in memory from light to
  light. Its file, name and headers are the batch workflow's: a batch run over the same
  lights with the same library gives byte-identical files.
- **Calibration frames** are kept until none has arrived for ``quiet_seconds``; then the
  masters they make are built as the batch workflow builds them (gain and read noise per
  setup, ``jobs.build_master.master_job``), written to output_dir/masters and filed in the library,
  and every later light can get them (never an earlier one).
- What is done is kept in ``output_dir/work/watch/state.json`` (written atomically after
  every frame): a watcher started again (after Ctrl-C, a crash, kill -9) skips what is
  done and takes every frame that arrived meanwhile. ``summary.csv`` in output_dir holds
  a row per frame and ``matches.csv`` every light's candidate masters and why each was or
  was not used (the batch plan's rows), both rewritten after every frame.

Units and conventions are the batch workflow's (ADU, FITS 1-based sections in headers).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astropy.io import fits

from .calibrator import Calibrator
from .camera import LIGHT_MASTERS, MASTER_TYPES
from .frames import FrameError, RawFrame, is_frame_name
from .inventory import list_raw_files, take_inventory
from .jobs.build_master import master_job
from .jobs.inventory import MATCH_COLUMNS, PIXINSIGHT_CACHE, csv_text
from .library import CHECKSUMS, ChecksumCache, library_path, scan_library
from .lights import calibrate_group, stops_the_job
from .night_noise import measure_setup
from .pixinsight_import import import_master
from .pixinsight_library import as_library_masters, scan_pixinsight
from .plan import make_plan, master_inputs
from .products import read_product
from .provenance import settings_digest, settings_for
from .writers import copy_atomic, link_or_copy, write_text_atomic
from .xisf import XisfError, XisfTruncatedError, is_xisf_name, read_header

log = logging.getLogger("ccdcal.watch")

#: The watcher's folder under output_dir: its state, and the lights it calibrated before
#: they are linked into output_dir/calibrated.
WATCH_DIR = Path("work") / "watch"
STATE_FILE = "state.json"
SUMMARY_COLUMNS = ["path", "kind", "status", "output", "bias", "dark", "flat", "flags", "seconds", "finished", "note"]


def _round_trip(value: Any) -> Any:
    """``value`` as the workflow's jobs get it (JSON through Snakemake's params): lists, not tuples."""
    return json.loads(json.dumps(value, sort_keys=True))


@dataclass
class WatchSettings:
    """How the watcher runs. ``config``: the workflow's configuration, validated, with
    raw_dir, output_dir and library_dir set; seconds are wall-clock seconds."""

    config: Mapping[str, Any]
    settle_seconds: float = 0.5
    quiet_seconds: float = 60.0
    poll_seconds: float = 2.0
    use_events: bool = True
    threads: int = 2

    @property
    def raw_dir(self) -> Path:
        return Path(self.config["raw_dir"])

    @property
    def output_dir(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def library_dir(self) -> Path:
        return Path(self.config["library_dir"])


# ----------------------------------------------------------------------------- arrivals
def structure_is_whole(path: Path) -> bool:
    """True when ``path`` opens as a FITS or XISF image whose data are all there (a frame
    still being written is shorter than its header says, or has no header END yet); a file
    whose name is not a frame's name has no structure to wait for (the inventory excludes
    it), nor has an XISF file broken otherwise than by its end (the inventory says why)."""
    if not is_frame_name(path.name):
        return True
    if is_xisf_name(path.name):
        try:
            read_header(path)
        except XisfTruncatedError:
            return False
        except (XisfError, OSError):
            return True
        return True
    try:
        frame = RawFrame(path)
    except (FrameError, OSError):
        return _headers_whole(path)  # no image to read: whole when every header ends
    try:
        frame.check_complete()
        return True
    except (FrameError, OSError):
        return False
    finally:
        frame.close()


def _headers_whole(path: Path) -> bool:
    """True when every header of a FITS file that is not a readable image ends (an empty
    primary with a table, a corrupt image): there is no more to wait for, and the
    inventory excludes it, saying why. A header cut short is still being written."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=False):
                return True
    except Exception:  # astropy raises OSError, ValueError, IndexError... for a cut header
        return False


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic seconds since which size and time are unchanged


class Arrivals:
    """The files of ``raw_dir`` and since when each has been unchanged (size, time): a
    file is ready once whole (``structure_is_whole``) and either closed after its last
    write (a file system event) or unchanged for ``settle_seconds``; or once unchanged for
    ``broken_after`` (a broken file: the inventory excludes it, saying why).
    ``wait`` sleeps until the folder changes (inotify, through watchdog) or ``timeout``."""

    def __init__(self, raw_dir: Path, exclude: list[Path], settle_seconds: float, use_events: bool = True):
        self.raw_dir, self.exclude, self.settle = raw_dir, exclude, settle_seconds
        #: A file unchanged this long is taken even if not whole (the inventory says why)
        self.broken_after = max(30.0, 10 * settle_seconds)
        self._seen: dict[str, _Seen] = {}
        self._changed = threading.Event()
        #: When each file was last closed after writing (or renamed into place), ns since
        #: the epoch, from the file system's events: a file not written since is taken at
        #: once when whole, without waiting for settle_seconds
        self._closed: dict[str, int] = {}
        self._observer = None
        if use_events:
            self._observer = self._start_observer()

    @property
    def events(self) -> bool:
        """Whether changes wake the watcher (inotify) rather than a timer."""
        return self._observer is not None

    def _start_observer(self):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.info("watchdog is not installed: the raw folder is listed every few seconds")
            return None
        changed, closed, root = self._changed, self._closed, str(self.raw_dir)

        def closed_now(path: str) -> None:
            closed[Path(os.path.relpath(path, root)).as_posix()] = time.time_ns()

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if not event.is_directory and event.event_type == "closed":  # written, then closed
                    closed_now(event.src_path)
                elif not event.is_directory and event.event_type == "moved":  # renamed into place whole
                    closed_now(event.dest_path)
                changed.set()

        observer = Observer()
        try:
            observer.schedule(Wake(), str(self.raw_dir), recursive=True)
            observer.start()
        except OSError as exc:  # no inotify (a network file system, too many watches)
            log.info("no file system events for %s (%s): the folder is listed every few seconds", self.raw_dir, exc)
            return None
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def wait(self, timeout: float) -> None:
        self._changed.wait(timeout)
        self._changed.clear()

    def wake(self) -> None:
        self._changed.set()

    def ready(self, done: Callable[[str, int, int], bool]) -> tuple[list[str], bool]:
        """(files ready and not ``done(rel, size, mtime_ns)``, oldest first; whether any
        file is still settling)."""
        now = time.monotonic()
        ready, settling = [], False
        listed = list_raw_files(self.raw_dir, exclude=self.exclude)
        for rel in listed:
            try:
                info = (self.raw_dir / rel).stat()
            except OSError:
                continue
            seen = self._seen.get(rel)
            if seen is None or (seen.size, seen.mtime_ns) != (info.st_size, info.st_mtime_ns):
                seen = self._seen[rel] = _Seen(info.st_size, info.st_mtime_ns, now)
            if done(rel, info.st_size, info.st_mtime_ns):
                continue
            unchanged = now - seen.since
            closed = self._closed.get(rel, -1) >= info.st_mtime_ns  # and not written since
            if (closed or unchanged >= self.settle) and (
                structure_is_whole(self.raw_dir / rel) or unchanged >= self.broken_after
            ):  # complete; or unchanged for broken_after and still not whole: broken, taken (and excluded)
                ready.append((seen.mtime_ns, rel))
            else:
                settling = True
        for rel in set(self._seen) - set(listed):
            del self._seen[rel]
        return [rel for _, rel in sorted(ready)], settling


# ----------------------------------------------------------------------------- state
@dataclass
class WatchState:
    """What the watcher has done: per raw file (relative path) its size and time when
    taken, kind and outcome; written atomically after every frame."""

    path: Path
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatchState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(path, dict(data.get("frames", {})))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise SystemExit(
                f"ccdcal watch: {path} cannot be read ({exc}); move it away to start the night afresh"
            ) from None

    def done(self, rel: str, size: int, mtime_ns: int) -> bool:
        entry = self.frames.get(rel)
        return entry is not None and (entry["size"], entry["mtime_ns"]) == (size, mtime_ns)

    def save(self) -> None:
        write_text_atomic(json.dumps({"frames": self.frames}, indent=1, sort_keys=True) + "\n", self.path)

    def in_order(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, entry) in the order the frames were finished."""
        return sorted(self.frames.items(), key=lambda item: (item[1].get("finished", ""), item[0]))

    def matches(self) -> list[dict[str, Any]]:
        """Every light's matches.csv rows (the batch plan's), in the order they were taken."""
        return [match for _, entry in self.in_order() for match in entry.get("matches", [])]

    def summary_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for rel, entry in self.in_order():
            writer.writerow({**{k: entry.get(k, "") for k in SUMMARY_COLUMNS}, "path": rel})
        return out.getvalue()


# ----------------------------------------------------------------------------- the watcher
class Watcher:
    """Calibrates a night as it arrives (see the module's docstring). ``say`` gets one
    line per frame, for a person."""

    def __init__(self, settings: WatchSettings, say: Callable[[str], None] = print):
        self.settings, self.say = settings, say
        self.config = settings.config
        self.work = settings.output_dir / WATCH_DIR
        self.staging = self.work / "lights"
        self.state = WatchState.load(self.work / STATE_FILE)
        self.stop_requested = threading.Event()
        self._library = None
        self._calibrators: dict[str, Calibrator] = {}
        self._noise: dict[str, dict[str, Any]] = {}
        self._last_calibration_frame = 0.0
        self._arrivals: Arrivals | None = None

    # -- library
    def library(self) -> list:
        """The usable masters of the library and of the PixInsight library (``pixinsight_library``)."""
        if self._library is None:
            pixinsight = scan_pixinsight(
                self.config.get("pixinsight_library"), self.config, self.work / PIXINSIGHT_CACHE
            )
            found = [*scan_library(self.settings.library_dir), *as_library_masters(pixinsight)]
            self._library = [m for m in found if not m.damaged]
        return self._library

    def _forget_library(self) -> None:
        self._library = None
        self._noise.clear()

    # -- the loop
    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Watch until Ctrl-C (``stop``) or ``until()`` is true."""
        arrivals = self._arrivals = Arrivals(
            self.settings.raw_dir, [self.settings.output_dir], self.settings.settle_seconds, self.settings.use_events
        )
        self.say(
            f"watching {self.settings.raw_dir} ({'file system events' if arrivals.events else 'listing'}); "
            f"masters to {self.settings.library_dir}; Ctrl-C stops"
        )
        try:
            while not self.stop_requested.is_set():
                ready, settling = arrivals.ready(self.state.done)
                for rel in ready:
                    if self.stop_requested.is_set():
                        break
                    self.take(rel)
                built = self.build_masters_if_quiet()
                if until is not None and until():
                    break
                if ready or built:
                    continue
                arrivals.wait(self._pause(settling, arrivals.events))
        finally:
            arrivals.stop()
        self.say("stopped")

    def _pause(self, settling: bool, events: bool) -> float:
        """Seconds to sleep unless the folder changes: until a settling file may be
        complete, the next listing (without events), or the end of the calibration
        frames' quiet time, whichever comes first; idle with events, an hour."""
        pauses = [3600.0]
        if settling:
            pauses.append(self.settings.settle_seconds / 2)
        if settling or not events:
            pauses.append(self.settings.poll_seconds)
        if self.pending_calibration():
            pauses.append(max(0.05, self.settings.quiet_seconds - self._quiet_for()))
        return min(pauses)

    def stop(self, *_: Any) -> None:
        """Stop after the frame in hand (Ctrl-C, SIGTERM): what is done is in the state."""
        self.stop_requested.set()
        if self._arrivals is not None:
            self._arrivals.wake()

    # -- one frame
    def take(self, rel: str) -> None:
        """Take one complete raw file: a light is calibrated, a calibration frame kept for
        its master, anything else recorded with why."""
        info = (self.settings.raw_dir / rel).stat()
        start = time.perf_counter()
        entry: dict[str, Any] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        try:
            records, cameras = take_inventory(self.settings.raw_dir, [rel], self.config)
        except ValueError as exc:  # a camera profile that does not fit its frames
            records, cameras, why = [], {}, str(exc)
        else:
            why = records[0].reason if not records[0].ok else ""
        if why:
            entry.update(kind="", status="excluded", note=why)
        elif records[0].frame_type in MASTER_TYPES:
            entry.update(kind=records[0].frame_type, status="waiting", note="for its master")
            self._last_calibration_frame = time.monotonic()
        else:
            try:
                entry.update(kind="light", **self.calibrate_light(rel, records, cameras))
            except Exception as exc:  # one bad frame never stops the night; a full disk does
                if stops_the_job(exc):
                    raise
                log.exception("light %s failed", rel)
                entry.update(kind="light", status="failed", note=f"{type(exc).__name__}: {exc}")
        entry.update(seconds=f"{time.perf_counter() - start:.2f}", finished=_now())
        self.state.frames[rel] = entry
        self.save()
        masters = " ".join(f"{k}={entry[k]}" for k in LIGHT_MASTERS if entry.get(k)) or "no master"
        detail = entry.get("note", "")
        if entry["kind"] == "light" and entry["status"] != "failed":
            detail = f"{masters} flags={entry.get('flags') or 'OK'}"
        clock, kind = entry["finished"][11:19], entry["kind"] or "-"
        self.say(f"{clock} {kind:6} {rel}: {entry['status']}, {detail} ({entry['seconds']} s)")

    def calibrate_light(self, rel: str, records: list, cameras: Mapping[str, Any]) -> dict[str, Any]:
        """Plan one light against the library and calibrate it as the batch light job
        does; its file linked into output_dir/calibrated. Returns its state entry."""
        plan = make_plan(records, self.config, cameras, self.library(), None)
        if rel in plan.get("skipped", {}):
            return {"status": "skipped", "note": plan["skipped"][rel]}
        group = next(g for g in plan["light_groups"].values() if any(x["path"] == rel for x in g["lights"]))
        camera = _round_trip(settings_for(plan["cameras"][group["camera"]], "light"))
        files = {m: self._master_file(plan, m) for e in group["lights"] for m in (e.get(k) for k in LIGHT_MASTERS) if m}
        calibrator = self._calibrators.get(group["camera"])
        if calibrator is None:
            calibrator = self._calibrators[group["camera"]] = Calibrator.for_camera(
                camera, threads=self.settings.threads
            )
        (row,) = calibrate_group(
            _round_trip(group),
            camera,
            self.settings.raw_dir,
            files,
            self.staging,
            settings_digest(camera),
            self.settings.threads,
            noise=self.noise_record(plan, group["noise"]),
            calibrator=calibrator,
        )
        entry = {k: row.get(k, "") for k in ("status", "output", "bias", "dark", "flat", "flags")}
        entry["matches"] = [m for m in plan["matches"] if m["frame"] == rel]  # every candidate, and why
        entry["note"] = row.get("error") or row.get("notes") or ""
        if row["status"] == "calibrated":
            link_or_copy(self.staging / row["output"], self.settings.output_dir / "calibrated" / row["output"])
        return entry

    def noise_record(self, plan: Mapping[str, Any], setup: str) -> dict[str, Any]:
        """The setup's gain and read noise as the batch noise job decides them (kept until
        the library changes)."""
        if setup not in self._noise:
            spec = plan["noise"][setup]
            camera = _round_trip(settings_for(plan["cameras"][spec["setup"]["camera"]], "noise"))
            record = measure_setup(_round_trip(spec), camera, self.settings.raw_dir, self.settings.threads)
            self._noise[setup] = _round_trip(record)
        return self._noise[setup]

    # -- tonight's masters
    def pending_calibration(self) -> list[str]:
        return sorted(rel for rel, e in self.state.frames.items() if e.get("status") == "waiting")

    def _quiet_for(self) -> float:
        return time.monotonic() - self._last_calibration_frame

    def build_masters_if_quiet(self) -> bool:
        """When calibration frames wait and none has arrived for ``quiet_seconds``: build
        the masters of every calibration frame of the night, file them in the library.
        Returns whether it built any."""
        waiting = self.pending_calibration()
        if not waiting or self._quiet_for() < self.settings.quiet_seconds:
            return False
        self.build_masters()
        return True

    def build_masters(self) -> list[str]:
        """Build tonight's masters from every calibration frame taken so far (as the batch
        workflow plans and builds them), file them in the library; their frames are then
        'used'. Returns the masters' names."""
        out = self.settings.output_dir
        frames = sorted(rel for rel, e in self.state.frames.items() if e.get("kind") in MASTER_TYPES)
        records, cameras = take_inventory(self.settings.raw_dir, frames, self.config)
        cache = ChecksumCache(out / "work" / CHECKSUMS)
        checksums = cache.digests(self.settings.raw_dir, [r.path for r in records if r.ok])
        cache.save()
        plan = make_plan(records, self.config, cameras, self.library(), checksums)
        built = []
        for name in build_order(plan):
            master = plan["masters"][name]
            output = out / "masters" / f"{name}.fits"
            filed = library_path(self.settings.library_dir, master)
            if filed.is_file():
                continue
            start = time.perf_counter()
            needs = master_inputs(plan, name)
            noise = None
            if needs["frames"] and master.get("noise"):
                noise = out / "work" / "noise" / f"{master['noise']}.json"
                record = self.noise_record(plan, master["noise"])
                write_text_atomic(json.dumps(record, indent=1, sort_keys=True) + "\n", noise)
            try:
                spec = {k: v for k, v in master.items() if k != "used"}  # library_file: copied when identical
                master_job(
                    _round_trip(spec),
                    _round_trip(settings_for(plan["cameras"][master["camera"]], master["type"])),
                    [self._master_file(plan, m) for m in needs["masters"]],
                    str(output),
                    self.config,
                    threads=self.settings.threads,
                    report=str(out / "work" / "masters" / f"{name}.json"),
                    noise=str(noise) if noise else None,
                )
            except Exception as exc:  # a master that fails leaves its frames waiting, named
                log.exception("master %s failed", name)
                self.say(f"{_now()[11:19]} master {name}: failed ({exc})")
                continue
            copy_atomic(output, filed)
            built.append(name)
            self.say(
                f"{_now()[11:19]} master {name}: built from {len(needs['frames'])} frames, filed as {filed} "
                f"({time.perf_counter() - start:.1f} s)"
            )
            self._forget_library()
        for rel in frames:
            if self.state.frames[rel].get("status") == "waiting":
                self.state.frames[rel].update(status="used", note="master built" if built else "no master made")
        self.save()
        return built

    def save(self) -> None:
        """The state, then summary.csv and matches.csv (as the batch workflow's) from it."""
        self.state.save()
        out = self.settings.output_dir
        write_text_atomic(self.state.summary_csv(), out / "summary.csv")
        write_text_atomic(csv_text(self.state.matches(), MATCH_COLUMNS), out / "matches.csv")

    def _master_file(self, plan: Mapping[str, Any], name: str) -> str:
        """The file of master ``name``: a library master's own, a PixInsight master's
        conversion (made here the first time, as the batch workflow's import job makes
        it, into output_dir/masters/imported), tonight's in output_dir/masters."""
        master = plan["masters"][name]
        if master["source"] == "library":
            return str(master["file"])
        if master["source"] == "pixinsight":
            output = self.settings.output_dir / "masters" / "imported" / f"{name}.fits"
            if not output.is_file():
                noise = self.noise_record(plan, master["noise"]) if master.get("noise") in plan["noise"] else None
                camera = _round_trip(settings_for(plan["cameras"][master["camera"]], master["type"]))
                import_master(
                    _round_trip(master),
                    camera,
                    self.config["pixinsight_import"],
                    output,
                    bias=next(
                        (read_product(self._master_file(plan, m)) for m in master_inputs(plan, name)["masters"]), None
                    ),
                    noise=noise,
                    config_digest=settings_digest(camera),
                    threads=self.settings.threads,
                )
            return str(output)
        return str(self.settings.output_dir / "masters" / f"{name}.fits")


def build_order(plan: Mapping[str, Any]) -> list[str]:
    """Tonight's masters of ``plan``, each after the masters it is made from
    (``plan.master_inputs``: a dark after its bias, a flat after both, a bias fitted from
    darks after them); by name otherwise."""
    tonight = sorted(n for n, m in plan["masters"].items() if m["source"] == "tonight")
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered or name not in tonight:
            return
        for needed in master_inputs(plan, name)["masters"]:
            visit(needed)
        ordered.append(name)

    for name in tonight:
        visit(name)
    return ordered


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
