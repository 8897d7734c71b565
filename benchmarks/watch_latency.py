"""How soon ``ccdcal watch`` calibrates a light after its file is complete, and what it costs idle.

    .venv/bin/python benchmarks/watch_latency.py [--lights 50] [--size 4096] [--every 2] [--workdir DIR]

Simulates a night (``report_cost.night_spec``: 10 biases, 10 darks, 10 flats and N lights
of size² pixels), starts ``ccdcal watch`` on an empty raw folder as a user does (a process
of its own, default options), and writes the frames into the folder as a camera program
does (one write, then close): the calibration frames first, waiting until the watcher has
built their masters, then a light every ``--every`` seconds. A light's latency is the time
from the end of its write to its calibrated file appearing in ``calibrated/`` (renamed
into place whole). Then the watcher's CPU time over 20 idle seconds. Prints a table
(the issue's targets: median latency under 1 s at 4096² on 2 cores, idle CPU under 1 %).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report_cost import REPO, night_config, night_spec

sys.path.insert(0, str(REPO / "src"))

from ccdcal import simulate  # noqa: E402

IDLE_SECONDS = 20.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def arrive(source: Path, dest: Path) -> float:
    """Write ``source`` to ``dest`` in one go as a camera program does; when it was complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    with open(dest, "wb") as handle:
        handle.write(data)
    return time.perf_counter()


def wait_for(condition, seconds: float, step: float = 0.005) -> float:
    deadline = time.perf_counter() + seconds
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit("the watcher did not answer in time: see its log")
        time.sleep(step)
    return time.perf_counter()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lights", type=int, default=50)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between lights")
    parser.add_argument("--workdir", type=Path, default=None, help="kept after the run (default: a scratch folder)")
    args = parser.parse_args(argv)
    if args.workdir is None:  # a night of 4096² frames and its outputs: ~10 GB, removed after
        with tempfile.TemporaryDirectory(prefix="ccdcal-watch-latency-") as scratch:
            return measure(args, Path(scratch))
    return measure(args, args.workdir)


def measure(args: argparse.Namespace, work: Path) -> int:
    """The benchmark in ``work`` (the simulated night is kept there for a later run)."""
    source, raw, out = work / "source", work / "raw", work / "out"
    spec = night_spec(args.lights, args.size)
    if not source.is_dir():
        print(f"simulating {args.lights} lights of {args.size}² in {source} ...", file=sys.stderr)
        simulate.write_camera_night(source, work / "truth", spec)
    for folder in (raw, out):
        if folder.exists():
            raise SystemExit(f"{folder} exists: give a fresh --workdir (the simulated night may stay)")
    raw.mkdir()
    config = night_config(spec, work / "config.yaml")
    frames = sorted(p.relative_to(source) for p in source.rglob("*.fits"))
    lights = [f for f in frames if f.parts[1] == "lights"]
    calibration = [f for f in frames if f not in lights]

    log = open(work / "watch.log", "w")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "ccdcal", "watch", str(raw), str(out), "--configfile", str(config)]
    watcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for rel in calibration:
            arrive(source / rel, raw / rel)
        start = time.perf_counter()
        summary = out / "summary.csv"
        wait_for(lambda: summary.is_file() and "used" in summary.read_text(), 600, 0.2)
        masters = time.perf_counter() - start
        latencies = []
        for rel in lights:
            complete = arrive(source / rel, raw / rel)
            calibrated = out / "calibrated" / rel
            latencies.append(wait_for(calibrated.is_file, 120) - complete)
            time.sleep(max(0.0, complete + args.every - time.perf_counter()))
        time.sleep(2)
        before = cpu_seconds(watcher.pid)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(watcher.pid) - before) / IDLE_SECONDS
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)
        log.close()
    ordered = sorted(latencies)
    print(f"\n`ccdcal watch` (default options), {len(lights)} lights of {args.size}², one every {args.every:g} s\n")
    print("| figure | value |")
    print("|---|---:|")
    print(f"| masters built after the last calibration frame (60 s quiet time included) | {masters:.1f} s |")
    print(f"| latency, median | {statistics.median(latencies):.2f} s |")
    print(f"| latency, 90th percentile | {ordered[math.ceil(0.9 * len(ordered)) - 1]:.2f} s |")
    print(f"| latency, longest | {ordered[-1]:.2f} s |")
    print(f"| CPU while idle ({IDLE_SECONDS:.0f} s after the last light) | {100 * idle:.2f} % of a core |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
