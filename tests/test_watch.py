"""``ccdcal watch``: a night calibrated as its frames arrive (ccdcal.watch)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SMALL_NIGHT, run_snakemake, sha256

from ccdcal.config import validated
from ccdcal.watch import Arrivals, Watcher, WatchSettings, structure_is_whole

CONFIG = REPO / "config" / "config.yaml"
#: The small night's frames, calibration frames first.
CALIBRATION, LIGHTS = SMALL_NIGHT[:3], SMALL_NIGHT[3]


def frames_of(demo_raw: Path, patterns) -> list[Path]:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return [p.relative_to(demo_raw) for pattern in patterns for p in sorted(demo_raw.glob(pattern))]


def write_slowly(source: Path, dest: Path, chunks: int = 4, pause: float = 0.05, reopen: bool = False) -> None:
    """Copy ``source`` to ``dest`` in ``chunks`` writes, ``pause`` s apart (a camera
    program saving, or a copy over the network); ``reopen``: the file closed and opened
    again for each chunk (a program that appends)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    step = -(-len(data) // chunks)
    handle = open(dest, "wb")
    try:
        for start in range(0, len(data), step):
            if reopen and start:
                handle.close()
                handle = open(dest, "ab")
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(pause)
    finally:
        handle.close()


def watch_config(raw: Path, out: Path, library: Path) -> dict:
    user = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return validated({**user, "raw_dir": str(raw), "output_dir": str(out), "library_dir": str(library)})


def summary_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize("use_events", [False, True], ids=["listing", "events"])
def test_a_frame_written_in_chunks_is_taken_once_and_only_when_whole(tmp_path, demo_raw, use_events):
    """The settle time alone (0.1 s) is shorter than the pauses between the writes
    (0.3 s), and with events the file is closed after every chunk: the FITS structure
    check is what keeps a half-written frame out."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (light,) = frames_of(demo_raw, LIGHTS)[:1]
    final_size = (demo_raw / light).stat().st_size
    arrivals = Arrivals(raw, [], settle_seconds=0.1, use_events=use_events)
    assert arrivals.events == use_events
    writer = threading.Thread(target=write_slowly, args=(demo_raw / light, raw / light, 5, 0.3, use_events))
    writer.start()
    taken: list[tuple[str, int]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (taken and not writer.is_alive()):
        ready, _ = arrivals.ready(lambda rel, size, mtime, taken=taken: any(rel == t for t, _ in taken))
        taken += [(rel, (raw / rel).stat().st_size) for rel in ready]
        time.sleep(0.02)
    writer.join()
    arrivals.stop()
    assert taken == [(light.as_posix(), final_size)]
    partial = tmp_path / "partial.fits"
    partial.write_bytes((demo_raw / light).read_bytes()[: final_size // 2])
    assert not structure_is_whole(partial) and structure_is_whole(raw / light)


def test_masters_are_built_when_calibration_frames_stop_and_used_by_later_lights_only(tmp_path, demo_raw):
    """A light before the calibration frames gets no master; the calibration frames,
    once quiet, make masters filed in the library; the lights after them get those, and
    their files are byte for byte those of a batch run over them with that library."""
    raw, out, library = tmp_path / "raw", tmp_path / "out", tmp_path / "library"
    raw.mkdir()
    first, *later = frames_of(demo_raw, LIGHTS)
    calibration = frames_of(demo_raw, CALIBRATION)
    watcher = Watcher(
        WatchSettings(watch_config(raw, out, library), settle_seconds=0.2, quiet_seconds=1.0, poll_seconds=0.5),
        say=lambda line: None,
    )

    def night() -> None:
        write_slowly(demo_raw / first, raw / first)
        while first.as_posix() not in watcher.state.frames:
            time.sleep(0.05)
        for rel in calibration:
            write_slowly(demo_raw / rel, raw / rel, pause=0.01)
        while not any(e["status"] == "used" for e in watcher.state.frames.values()):
            time.sleep(0.05)
        for rel in later:
            write_slowly(demo_raw / rel, raw / rel)

    feeder = threading.Thread(target=night)
    feeder.start()
    deadline = time.monotonic() + 240
    watcher.run(until=lambda: all(r.as_posix() in watcher.state.frames for r in later) or time.monotonic() > deadline)
    feeder.join()

    rows = summary_rows(out)
    assert rows[first.as_posix()]["status"] == "calibrated"
    assert (rows[first.as_posix()]["bias"], rows[first.as_posix()]["flat"]) == ("", "")
    assert set(rows[first.as_posix()]["flags"].split(",")) >= {"NOBIAS", "NODARK", "NOFLAT"}
    filed = {p.stem for p in library.rglob("*.fits")}
    assert {p.split("_")[0] for p in filed} == {"bias", "dark", "flat"}
    for rel in later:
        row = rows[rel.as_posix()]
        assert row["status"] == "calibrated" and row["flags"] == ""
        assert {row["bias"], row["dark"], row["flat"]} <= filed
    assert all(rows[r.as_posix()]["status"] == "used" for r in calibration)
    with open(out / "matches.csv", newline="", encoding="utf-8") as handle:
        matches = list(csv.DictReader(handle))
    for rel in later:  # which masters each light got, and why, as the batch matches.csv says
        row = rows[rel.as_posix()]
        used = {m["candidate"] for m in matches if m["frame"] == rel.as_posix() and m["result"].startswith("used")}
        assert used == {row["bias"], row["dark"], row["flat"]}

    lights_only = tmp_path / "lights-only"
    for rel in later:
        (lights_only / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo_raw / rel, lights_only / rel)
    run_snakemake(lights_only, tmp_path / "batch", f"library_dir={library}")
    for rel in later:
        assert sha256(tmp_path / "batch" / "calibrated" / rel) == sha256(out / "calibrated" / rel), rel


def start_watch(raw: Path, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "ccdcal", "watch", str(raw), str(out), "--configfile", str(CONFIG)]
    command += ["--settle-seconds", "0.2", "--quiet-seconds", "1", "--poll"]
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, text=True)


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_a_watcher_killed_mid_night_resumes_missing_nothing_and_redoing_nothing(tmp_path, demo_raw):
    """kill -9 after the first light; the other lights arrive while it is down; started
    again it takes exactly those, then Ctrl-C stops it cleanly."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    first, *later = frames_of(demo_raw, LIGHTS)
    for rel in frames_of(demo_raw, CALIBRATION):
        write_slowly(demo_raw / rel, raw / rel, pause=0)
    watch = start_watch(raw, out, tmp_path / "first.log")
    try:
        wait_for(lambda: (out / "summary.csv").is_file() and "used" in (out / "summary.csv").read_text())
        write_slowly(demo_raw / first, raw / first)
        wait_for(lambda: first.as_posix() in summary_rows(out))
    finally:
        watch.kill()  # kill -9
        watch.wait()
    for rel in later:
        write_slowly(demo_raw / rel, raw / rel)
    again = start_watch(raw, out, tmp_path / "second.log")
    try:
        wait_for(lambda: all(r.as_posix() in summary_rows(out) for r in later))
    finally:
        again.send_signal(signal.SIGINT)
        code = again.wait(timeout=60)
    second = (tmp_path / "second.log").read_text()
    assert code == 0 and second.rstrip().endswith("stopped"), second
    assert first.as_posix() not in second  # done before the kill: not taken again
    assert " master " not in second  # the masters were built and filed before it
    for rel in later:
        assert second.count(rel.as_posix()) == 1
    rows = summary_rows(out)
    for rel in [first, *later]:
        assert rows[rel.as_posix()]["status"] == "calibrated"
        assert (out / "calibrated" / rel).is_file()


def test_odd_names_odd_headers_and_stray_files_never_stop_the_night(tmp_path, demo_raw):
    """Braces, spaces and unicode in a name; a control character and an absurd exposure
    in a header; a text file; a FITS file that is not an image: each is taken once, with
    what happened to it, and the light after them is calibrated."""
    from astropy.io import fits

    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    first, *later = frames_of(demo_raw, LIGHTS)
    odd = {
        "lights/{odd} ünï light.fits": (demo_raw / first).read_bytes(),
        "lights/notes.txt": b"clouds at 23h\n",
        "lights/table.fits": None,
        "lights/absurd.fits": None,
    }
    for rel, data in odd.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            (raw / rel).write_bytes(data)
    fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0])]).writeto(raw / "lights/table.fits")
    with fits.open(demo_raw / first) as hdul:
        hdul[0].header["EXPTIME"] = 1e300
        hdul[0].header["OBJECT"] = "NGC_7331"
        hdul.writeto(raw / "lights/absurd.fits")
    absurd = (raw / "lights/absurd.fits").read_bytes().replace(b"NGC_7331", b"NGC\x077331")  # a bell: not allowed
    (raw / "lights/absurd.fits").write_bytes(absurd)
    lines: list[str] = []
    watcher = Watcher(
        WatchSettings(watch_config(raw, out, tmp_path / "library"), settle_seconds=0.2, poll_seconds=0.3),
        say=lines.append,
    )
    last = Path("lights") / later[0].name
    deadline = time.monotonic() + 60

    def done() -> bool:
        if all(rel in watcher.state.frames for rel in odd) and not (raw / last).exists():
            write_slowly(demo_raw / later[0], raw / last)
        return last.as_posix() in watcher.state.frames or time.monotonic() > deadline

    watcher.run(until=done)
    rows = summary_rows(out)
    assert rows["lights/{odd} ünï light.fits"]["status"] == "calibrated"
    assert (out / "calibrated" / "lights" / "{odd} ünï light.fits").is_file()
    assert rows["lights/notes.txt"]["status"] == "excluded" and "not a FITS file" in rows["lights/notes.txt"]["note"]
    assert rows["lights/table.fits"]["status"] == "excluded" and rows["lights/table.fits"]["note"]
    assert rows["lights/absurd.fits"]["status"] in {"calibrated", "excluded", "failed"}
    assert rows["lights/absurd.fits"]["status"] == "calibrated" or rows["lights/absurd.fits"]["note"]
    assert rows[last.as_posix()]["status"] == "calibrated"
    assert sum(line.count(" lights/") for line in lines) == len(odd) + 1  # each taken once
