"""What adding one light to a calibrated night costs, against the issue's target: a rerun
after adding 1 light to a night of 100 takes at most 1.5 times (a run with nothing to do
+ one light's calibration).

    .venv/bin/python benchmarks/incremental_rerun.py [--lights 100] [--size 2048] [--workdir DIR] [--uncached]

Simulates a night as benchmarks/report_cost.py does (10 biases, 10 darks of 60 s, 10
flats, N + 1 lights of 60 s, size² pixels) and holds its last light back. Then, with
``snakemake --cores 2`` as a user types it (this checkout's ccdcal):

* the full run of the N lights;
* a run with nothing to do (the best of three);
* the held-back light added to raw_dir, and the rerun;
* one light's calibration: a light job of that light alone, in a fresh process as
  Snakemake starts one (Python and ccdcal imported, masters read, the light calibrated,
  its file and thumbnail written), the light cache off; and, of it, the light alone
  (``Calibrator.calibrate`` with the masters in memory);
* what the rerun's other jobs cost: the inventory job, and the publishing and summary
  jobs, forced to run (``--forcerun``, best of three), less a run with nothing to do;
* with ``--uncached``, the rerun as it was before the light cache: the light taken out
  and the night brought back, the cache deleted, the light added again.

Prints a table of seconds, what the light job said (lights reused and calibrated), and
the ratio rerun / (nothing to do + one light) against the target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_cost import REPO, night_config, night_spec, snakemake  # noqa: E402

from ccdcal import simulate  # noqa: E402

TARGET = 1.5

#: One light's calibration as a light job does it, in a fresh process (argv: group JSON,
#: camera JSON, masters JSON, output folder, config JSON, noise record, threads): prints
#: the seconds of the masters' reading and of the light's calibration.
ONE_LIGHT_JOB = """
import json, sys, time
from pathlib import Path
from ccdcal.calibrator import Calibrator
from ccdcal.lights import calibrate_group
from ccdcal.jobs import read_noise_record
from ccdcal.provenance import settings_digest
group, camera, masters = (json.loads(a) for a in sys.argv[1:4])
out, config = sys.argv[4], json.loads(sys.argv[5])
noise, threads = read_noise_record(sys.argv[6]), int(sys.argv[7])
loaded = Calibrator.load_masters
timed = {}
def load_masters(self, paths):
    start = time.perf_counter()
    loaded(self, paths)
    timed["masters"] = time.perf_counter() - start
Calibrator.load_masters = load_masters
start = time.perf_counter()
rows = calibrate_group(group, camera, config["raw_dir"], {Path(m).stem: m for m in masters}, Path(out),
                       settings_digest(camera), threads, noise=noise)
assert [r["status"] for r in rows] == ["calibrated"], rows
print(timed["masters"], time.perf_counter() - start - timed["masters"])
"""


def held_back_night(work: Path, n_lights: int, size: int) -> tuple[Path, Path, Path]:
    """(raw_dir, the held-back light, its place in raw_dir): a night of ``n_lights`` + 1
    simulated once into ``work``, its last light moved aside."""
    raw, aside = work / "raw", work / "aside"
    spec = night_spec(n_lights + 1, size)
    if not raw.is_dir() and not aside.is_dir():
        print(f"simulating {n_lights} + 1 lights of {size}² in {raw} ...", file=sys.stderr)
        simulate.write_camera_night(raw, work / "truth", spec)
    held_back = sorted((aside / "lights").glob("*.fits"))
    if held_back:  # a workdir used before: the same light is held back again
        held = held_back[-1]
        place = raw / "cam" / "lights" / held.name
        place.unlink(missing_ok=True)
    else:
        place = sorted((raw / "cam" / "lights").glob("*.fits"))[-1]
        held = aside / "lights" / place.name
        held.parent.mkdir(parents=True, exist_ok=True)
        place.rename(held)
    return raw, held, place


def light_job_said(out: Path) -> tuple[int, int, float]:
    """(lights reused, lights calibrated now, seconds) of the night's light jobs in their
    last run, from their logs (the seconds: each job's own, from its first light to its
    report, as it logs them)."""
    reused = calibrated = 0
    seconds = 0.0
    for log in (out / "logs" / "lights").glob("*.log"):
        text = log.read_text()
        found = re.search(r"light cache: (\d+) lights reused, (\d+) calibrated now", text)
        if found:
            reused, calibrated = reused + int(found[1]), calibrated + int(found[2])
        took = re.search(r"lights calibrated, \d+ failed, in ([0-9.]+) s", text)
        seconds += float(took[1]) if took else 0.0
    return reused, calibrated, seconds


def one_light(out: Path, config: dict, light: str, scratch: Path) -> tuple[float, float, float]:
    """(job wall s, masters s, light s): a light job of ``light`` alone, in a fresh process."""
    from ccdcal.provenance import settings_for

    plan = json.loads((out / "plan.json").read_text())
    group = plan["light_groups"][plan["lights"][light]["group"]]
    alone = {**group, "lights": [e for e in group["lights"] if e["path"] == light]}
    masters = [str(out / "masters" / f"{m}.fits") for m in (group["bias"], group["dark"], group["flat"]) if m]
    threads = min(int(config.get("threads", 2)), 2)
    shutil.rmtree(scratch, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [
        json.dumps(alone),
        json.dumps(settings_for(plan["cameras"][group["camera"]], "light")),
        json.dumps(masters),
        str(scratch),
        json.dumps(config),
        str(out / "work" / "noise" / f"{group['noise']}.json"),
        str(threads),
    ]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ONE_LIGHT_JOB, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"the one-light job failed:\n{done.stderr[-3000:]}")
    masters_s, light_s = (float(t) for t in done.stdout.split())
    return wall, masters_s, light_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lights", type=int, default=100)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--uncached", action="store_true", help="also time the rerun without the light cache")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccdcal-incremental-"))
    raw, held, place = held_back_night(work, args.lights, args.size)
    config_file = night_config(night_spec(args.lights, args.size), work / "config.yaml")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)

    print("full run ...", file=sys.stderr)
    full = snakemake(raw, out, config_file)
    full_lights = light_job_said(out)[2]
    print("runs with nothing to do ...", file=sys.stderr)
    noop = min(snakemake(raw, out, config_file) for _ in range(3))
    print("one light added, rerun ...", file=sys.stderr)
    shutil.copy2(held, place)
    rerun = snakemake(raw, out, config_file)
    reused, calibrated, rerun_lights = light_job_said(out)
    rel = place.relative_to(raw).as_posix()
    config = {"raw_dir": str(raw), "output_dir": str(out), "threads": 2}
    job, masters_s, light_s = one_light(out, config, rel, work / "one_light")
    # what the rerun's other jobs cost: forced to run (best of 3), less a run with nothing
    # to do; publishing reruns the summary, which depends on it
    print("the other jobs, forced ...", file=sys.stderr)
    inventory = min(snakemake(raw, out, config_file, "--forcerun", "inventory") for _ in range(3)) - noop
    published = min(snakemake(raw, out, config_file, "--forcerun", "publish_calibrated") for _ in range(3)) - noop
    rows = [
        (f"full run, {args.lights} lights", full),
        ("  of which the light job's own work (its log)", full_lights),
        ("run with nothing to do (best of 3)", noop),
        ("one light's calibration: a light job of it alone (fresh process)", job),
        ("  of which the masters read", masters_s),
        ("  of which the light calibrated and written", light_s),
        (f"rerun after adding one light ({reused} reused, {calibrated} calibrated)", rerun),
        ("  of which the light job's own work (its log)", rerun_lights),
        ("  the inventory job, forced (best of 3, less nothing to do)", inventory),
        ("  the publishing and summary jobs, forced (best of 3, less nothing to do)", published),
    ]
    if args.uncached:
        print("the same rerun without the light cache ...", file=sys.stderr)
        place.unlink()
        snakemake(raw, out, config_file)
        shutil.rmtree(out / "work" / "cache")
        shutil.copy2(held, place)
        rows.append(("rerun after adding one light, without the light cache", snakemake(raw, out, config_file)))
        rows.append(("  of which the light job's own work (its log)", light_job_said(out)[2]))
    place.unlink()  # the night as simulated minus its last light: the benchmark can run again

    print(f"\nNight of {args.lights} lights of {args.size}², snakemake --cores 2, in {work}\n")
    print("| run | s |")
    print("|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    ratio = rerun / (noop + job)
    strict = rerun / (noop + light_s)
    print(
        f"\nrerun / (nothing to do + one light's job) = {rerun:.2f} / ({noop:.2f} + {job:.2f}) = {ratio:.2f} "
        f"(target {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})"
    )
    print(f"rerun / (nothing to do + the light alone) = {rerun:.2f} / ({noop:.2f} + {light_s:.2f}) = {strict:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
