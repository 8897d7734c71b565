#!/usr/bin/env python3
"""A survey night on a SLURM cluster: jobs, wall time, the cluster's idle time, and
Snakemake's overhead per job.

    .venv/bin/python benchmarks/slurm_survey.py [--lights 2000] [--size 1024]
        [--lights-per-job 20 auto] [--jobs 8] [--workdir /tmp/ccdcal-survey]

Needs a SLURM cluster that answers (``tools/slurm/start_slurm.sh`` starts a single-node
one; ``SLURM_CPUS=8`` lets it run 8 jobs on this 2-core machine). The night is bench.py's
whole night (20 bias, 20 darks of 120 s, 20 flats in two filters, overscan): its frames
are written once, and the ``--lights`` lights are symbolic links cycling over
``--distinct`` written ones (the inventory reads each name's header; the disk holds the
outputs only). Each ``--lights-per-job`` value is one run of the README's cluster command
(``snakemake --workflow-profile profiles/slurm``, the test cluster needing
``--slurm-no-account``), with ``threads: 1`` per job and ``--jobs`` slots.

From ``sacct`` (1 s resolution) it prints, per run: the jobs submitted, the wall time, the
time no job of the run was queued or running (the cluster idle, waiting on Snakemake: its
start, the inventory and plan, status checks, the final bookkeeping), the slots' use
(job seconds over slots x wall), and Snakemake's overhead per job: the gap between the
masters' last end and the first light job's submission, and between two light jobs'
submissions. benchmarks/README.md models a 20000-light night from these figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import bench

REPO = bench.REPO
SNAKEMAKE = bench.VENV_BIN / "snakemake"


def survey_view(pool: bench.Pool, dest: Path, lights: int, distinct: int) -> Path:
    """The night: links to the pool's calibration frames, and ``lights`` links named
    light_<F>/light_NNNNN.fits cycling over the pool's first ``distinct`` lights."""
    members = {kind: pool.files(kind, bench.NIGHT_CALS[kind]) for kind in ("bias", "dark")}
    for path in pool.files("flat", bench.NIGHT_CALS["flat"]):
        members.setdefault(f"flat_{bench.NIGHT_FILTERS[int(path.stem.split('_')[1]) % 2]}", []).append(path)
    view = bench.make_view(dest, members)
    sources = pool.files("light", distinct)
    for i in range(lights):
        source = sources[i % distinct]
        band = bench.NIGHT_FILTERS[int(source.stem.split("_")[1]) % 2]
        folder = view / f"light_{band}"
        folder.mkdir(exist_ok=True)
        (folder / bench.frame_name("light", i + 1)).symlink_to(source)
    return view


def sacct_jobs(since: str) -> list[dict[str, object]]:
    """The cluster's jobs submitted since ``since`` (sacct's time format): id,
    submit/start/end as datetimes, state."""
    fields = ("JobID", "Submit", "Start", "End", "State")
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(fields)], capture_output=True, text=True, check=True
    ).stdout
    jobs = []
    for line in out.splitlines():
        row = dict(zip(fields, line.split("|"), strict=True))
        try:
            times = {k: datetime.fromisoformat(row[k]) for k in ("Submit", "Start", "End")}
        except ValueError:
            continue  # not started or not ended
        jobs.append({"id": row["JobID"], "state": row["State"], **times})
    return jobs


def union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Length (s) of the union of time intervals."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def submitted_rules(log_text: str) -> dict[str, str]:
    """SLURM job id -> workflow rule, from Snakemake's "submitted with SLURM jobid" lines
    (the executor names every job after the run, and logs it under rule_<rule>/)."""
    return dict((jobid, rule) for rule, jobid in re.findall(r"slurm_logs/rule_(\w+?)/\S*?/(\d+)\.log", log_text))


def measure(args: argparse.Namespace, view: Path, lights_per_job: str, status_every: str) -> dict[str, object]:
    out = args.workdir / f"out-{lights_per_job}"
    shutil.rmtree(out, ignore_errors=True)
    workdir = args.workdir / "snakemake"
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "config").is_symlink():
        (workdir / "config").symlink_to(REPO / "config")
    log_path = args.workdir / f"snakemake-{lights_per_job}-{status_every}.log"
    checks = [] if status_every == "profile" else ["--slurm-init-seconds-before-status-checks", status_every]
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-no-account",
        *checks,
        "--jobs",
        str(args.jobs),
        "--config",
        f"raw_dir={view}",
        f"output_dir={out}",
        "threads=1",
        f"lights_per_job={lights_per_job}",
    ]
    bench.log(f"lights_per_job={lights_per_job}, status checks {status_every}: {' '.join(cmd)[:200]}")
    time.sleep(1.1)  # sacct's start filter has 1 s resolution
    since = datetime.now().replace(microsecond=0)
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    done = len(list((out / "calibrated").rglob("light_*.fits")))
    if status != 0 or done != args.lights:
        sys.exit(f"run failed (exit {status}, {done} of {args.lights} lights): see {log_path}")
    rules = submitted_rules(log_path.read_text(errors="replace"))
    jobs = [j for j in sacct_jobs(since.isoformat()) if j["id"] in rules]
    for job in jobs:
        job["rule"] = rules[job["id"]]
    run_end = since.timestamp() + wall
    in_slurm = union_seconds([(j["Submit"], j["End"]) for j in jobs])
    job_seconds = sum((j["End"] - j["Start"]).total_seconds() for j in jobs)
    masters = [j for j in jobs if j["rule"] != "calibrate_lights"]
    light_jobs = sorted((j for j in jobs if j["rule"] == "calibrate_lights"), key=lambda j: j["Submit"])
    masters_end = max((j["End"] for j in masters), default=None)
    first_gap = (light_jobs[0]["Submit"] - masters_end).total_seconds() if light_jobs and masters_end else None
    spacing = (
        (light_jobs[-1]["Submit"] - light_jobs[0]["Submit"]).total_seconds() / (len(light_jobs) - 1)
        if len(light_jobs) > 1
        else None
    )
    tail = run_end - max(j["End"] for j in jobs).timestamp()
    return {
        "lights_per_job": lights_per_job,
        "status_every": status_every,
        "jobs": len(jobs),
        "light_jobs": len(light_jobs),
        "wall": wall,
        "idle": wall - in_slurm,
        "use": job_seconds / (args.jobs * wall),
        "job_mean": job_seconds / len(jobs),
        "first_gap": first_gap,
        "spacing": spacing,
        "tail": tail,
        "states": sorted({str(j["state"]) for j in jobs}),
    }


def table(rows: list[dict[str, object]]) -> str:
    head = (
        "| lights_per_job | status checks s | jobs (lights) | wall s | cluster idle s | slots' use | mean job s "
        "| masters -> first light job s | s between light submissions | last job -> exit s |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gap = "-" if r["first_gap"] is None else f"{r['first_gap']:.0f}"
        spacing = "-" if r["spacing"] is None else f"{r['spacing']:.2f}"
        lines.append(
            f"| {r['lights_per_job']} | {r['status_every']} | {r['jobs']} ({r['light_jobs']}) "
            f"| {r['wall']:.0f} | {r['idle']:.0f} | {r['use']:.0%} | {r['job_mean']:.1f} "
            f"| {gap} | {spacing} | {r['tail']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lights", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024, help="frame side (data area; default %(default)s)")
    parser.add_argument("--distinct", type=int, default=40, help="lights written; the others link to them")
    parser.add_argument("--lights-per-job", nargs="+", default=["20", "auto"])
    parser.add_argument(
        "--status-every",
        nargs="+",
        default=["profile"],
        help="seconds between status checks once a job ended (the profile's: 20), one run each",
    )
    parser.add_argument("--jobs", type=int, default=8, help="slots: jobs at once (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ccdcal-survey"))
    parser.add_argument("--keep", action="store_true", help="keep the outputs and frames")
    args = parser.parse_args(argv)
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        sys.exit("no SLURM cluster answers (start one: SLURM_CPUS=8 bash tools/slurm/start_slurm.sh)")
    args.workdir = args.workdir.resolve()
    pool = bench.Pool(args.workdir / "data", args.size, night=True)
    pool.ensure({**bench.NIGHT_CALS, "light": args.distinct})
    view = survey_view(pool, args.workdir / "night", args.lights, args.distinct)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    rows = []
    for status_every in args.status_every:
        for lights_per_job in args.lights_per_job:
            rows.append(measure(args, view, lights_per_job, status_every))
            if not args.keep:
                shutil.rmtree(args.workdir / f"out-{lights_per_job}", ignore_errors=True)
    print(f"{args.lights} lights of {args.size}² (+ 60 calibration frames), {args.jobs} slots, threads 1\n")
    print(table(rows))
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
