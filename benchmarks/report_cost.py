"""What the quality checks and the report cost, against the night they describe.

    .venv/bin/python benchmarks/report_cost.py [--lights 100] [--size 2048] [--workdir DIR]

Simulates a night (ccdcal.simulate: 10 biases, 10 darks of 60 s, 10 flats, N lights of
60 s, size² pixels), calibrates it with the workflow as a user does (``snakemake --cores
2``), then measures, in the same run, what each part of the quality checks and the report
adds to the wall time, the way the night runs it:

* in the light jobs: their lights' statistics (``qc.light_statistics``) and thumbnails
  (``previews.write_thumbnail``): the light jobs are run again on the same lights and
  threads, with them and without them (three rounds each; the quickest of each), plus what
  a job's first thumbnail imports (Pillow, astropy.visualization), timed in a fresh
  process;
* in the master jobs: each master's reduced image and histogram counts
  (``masters.write_figure_data``), in a fresh process as each master job is (they need
  no import of their own: the PNG is drawn by the summary);
* in the summary job (Snakemake's own process; timed here in a fresh one): the quality
  checks (``jobs.summary.write_quality_checks``, with the library scan) and the report
  pages, the masters' previews and histograms, the plots and the thumbnails, all drawn
  (``jobs.summary.write_report_pages`` without the figure cache, the imports of
  matplotlib and astropy.visualization included);
* writing report.html: ``snakemake --report report.html`` timed as a user types it, less
  Snakemake's evaluation of the workflow (the time of a ``snakemake --dry-run``), which a
  night run with ``--report report.html --report-after-run`` (as ``make demo`` does) has
  already paid.

Prints a table of seconds and their share of the night's wall time (the issue's budget:
under 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ccdcal import calibrator, simulate  # noqa: E402
from ccdcal.config import validated  # noqa: E402
from ccdcal.jobs.calibrate_lights import light_group_job  # noqa: E402
from ccdcal.provenance import settings_for  # noqa: E402

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
CORES = 2


def night_spec(n_lights: int, size: int) -> simulate.CameraNight:
    camera = simulate.CameraSpec(key="cam", instrument="SimCam Bench", shape=(size, size), overscan_columns=32)
    sets = (
        simulate.FrameSet("bias", "bias", 10, start_h=14.0),
        simulate.FrameSet("dark_60s", "dark", 10, 60.0),
        simulate.FrameSet("flat_V", "flat", 10, 5.0, filter="V", levels_adu=(20000.0,) * 10, start_h=16.5),
        simulate.FrameSet(
            "light_V_60s", "light", n_lights, 60.0, filter="V", object="field", start_h=19.0, sky_e=800.0, n_stars=40
        ),
    )
    return simulate.CameraNight(camera, sets)


def night_config(spec: simulate.CameraNight, path: Path) -> Path:
    """The night's configuration file (its camera: overscan fitted from the header's BIASSEC)."""
    camera = {
        "name": "cam",
        "match": {"header": {"INSTRUME": spec.camera.instrument}},
        "overscan": {"method": "polynomial", "order": 1, "regions": "header"},
    }
    path.write_text(json.dumps({"cameras": [camera]}))
    return path


def snakemake(raw: Path, out: Path, config: Path, *extra: str) -> float:
    """Seconds of ``snakemake --cores 2`` on the night, as a user types it, with this
    checkout's ccdcal (its ``src`` first on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run(
        [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(REPO),
            "--cores",
            str(CORES),
            "--configfile",
            str(config),
            "--config",
            f"raw_dir={raw}",
            f"output_dir={out}",
            "-q",
            *extra,
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - start


#: A master job's figures, in a fresh process (argv: master file, preview path): prints s.
MASTER_FIGURES = """
import sys, time
from ccdcal.masters import write_figure_data  # what a master job imports anyway
from ccdcal.products import read_product
product = read_product(sys.argv[1])
start = time.perf_counter()
write_figure_data(str(product.header["CCDCALTY"]), product.data, product.mask, sys.argv[2])
print(time.perf_counter() - start)
"""

#: What a light job pays once for its thumbnails, in a fresh process: Pillow, and
#: astropy.visualization (ZScale), which imports matplotlib. Prints s.
THUMBNAIL_IMPORTS = """
import time
start = time.perf_counter()
from PIL import Image
pillow = time.perf_counter() - start
import ccdcal.calibrator  # what a light job imports anyway
start = time.perf_counter()
from astropy.visualization import ZScaleInterval
print(pillow + time.perf_counter() - start)
"""

#: The summary job's parts, in a fresh process (argv: output_dir, config JSON, folder for
#: the pages): prints the seconds of the quality checks and of the report pages.
SUMMARY_PARTS = """
import json, sys, time
from pathlib import Path
from ccdcal.jobs.summary import (library_headers, read_night, write_quality_checks, write_report_pages,
                                 write_summary)
out, config, pages = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
records, plan, state = read_night(str(out / "inventory.csv"), str(out / "plan.json"), str(out))
start = time.perf_counter()
library = library_headers(config.get("library_dir"))
write_quality_checks(records, plan, state, config, str(pages / "qc.csv"), library)
checks = time.perf_counter() - start
write_summary(records, plan, state, str(pages / "summary.csv"), str(pages / "summary.txt"))
start = time.perf_counter()
write_report_pages(records, plan, state, str(out), str(pages / "s.html"), str(pages / "q.html"),
                   str(pages / "masters"), str(pages / "histograms"), str(pages / "plots"),
                   str(pages / "lights"), library)
print(checks, time.perf_counter() - start)
"""


def in_fresh_process(script: str, *args: str) -> str:
    """What ``script`` prints, run by a new Python with ccdcal importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def light_job_cost(plan: dict, config: dict, out: Path, work: Path, rounds: int = 3) -> float:
    """Seconds the light statistics and thumbnails add to the light jobs' wall time: every
    light group calibrated again as its job does (same threads), with them and without
    them (both replaced by nothing), alternately; the quickest run of each."""
    threads = min(int(config["threads"]), CORES)  # as Snakemake gives the job
    masters = [str(p) for p in (out / "masters").glob("*.fits")]
    with_them, without = [], []
    statistics, thumbnail = calibrator.light_statistics, calibrator.write_thumbnail
    try:
        for _ in range(rounds):
            for skip, times in ((False, with_them), (True, without)):
                calibrator.light_statistics = (lambda *a, **k: {}) if skip else statistics
                calibrator.write_thumbnail = (lambda *a, **k: None) if skip else thumbnail
                elapsed = 0.0
                for name, group in sorted(plan["light_groups"].items()):
                    target = work / "lights_again" / name
                    start = time.perf_counter()
                    light_group_job(
                        group,
                        settings_for(plan["cameras"][group["camera"]], "light"),
                        masters,
                        str(target),
                        {**config, "output_dir": str(work / "lights_again")},
                        threads=threads,
                        noise=str(out / "work" / "noise" / f"{group['noise']}.json"),
                    )
                    elapsed += time.perf_counter() - start
                    shutil.rmtree(target)
                times.append(elapsed)
    finally:
        calibrator.light_statistics, calibrator.write_thumbnail = statistics, thumbnail
    return max(0.0, min(with_them) - min(without))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lights", type=int, default=100)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccdcal-report-cost-"))
    raw, truth, out = work / "raw", work / "truth", work / "out"
    spec = night_spec(args.lights, args.size)
    if not raw.is_dir():
        print(f"simulating {args.lights} lights of {args.size}² in {raw} ...", file=sys.stderr)
        simulate.write_camera_night(raw, truth, spec)
    config = night_config(spec, work / "config.yaml")
    print("calibrating ...", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    night = snakemake(raw, out, config)

    full = validated({"raw_dir": str(raw), "output_dir": str(out), **json.loads(config.read_text())})
    plan = json.loads((out / "plan.json").read_text())
    lights = light_job_cost(plan, full, out, work)
    lights += len(plan["light_groups"]) * float(in_fresh_process(THUMBNAIL_IMPORTS))
    masters = sorted((out / "masters").glob("*.fits"))
    previews = sum(float(in_fresh_process(MASTER_FIGURES, str(m), str(work / "preview.npy"))) for m in masters)
    checks, pages = (
        float(t) for t in in_fresh_process(SUMMARY_PARTS, str(out), json.dumps(full), str(work / "pages")).split()
    )
    report = snakemake(raw, out, config, "--report", str(work / "report.html"))
    dry_run = snakemake(raw, out, config, "--dry-run")  # what any snakemake command pays
    report_after_run = report - dry_run
    parts = [
        ("light statistics and thumbnails (in the light jobs)", lights),
        ("master reduced images and histogram counts (in the master jobs)", previews),
        ("quality checks (in the summary job)", checks),
        ("report pages, master previews and histograms, plots (in the summary job)", pages),
        ("report.html (`--report-after-run`: `snakemake --report` less its evaluation)", report_after_run),
    ]
    total = sum(seconds for _, seconds in parts)
    print(
        f"\nNight of {args.lights} lights of {args.size}², {len(masters)} masters: "
        f"snakemake --cores {CORES} took {night:.1f} s\n"
    )
    print("| part | s | share of the night |")
    print("|---|---:|---:|")
    for name, seconds in parts:
        print(f"| {name} | {seconds:.2f} | {100 * seconds / night:.1f} % |")
    print(f"| **all, in the night's command** | {total:.2f} | {100 * total / night:.1f} % |")
    print(
        f"\n`snakemake --report` as a command of its own took {report:.2f} s: it also pays "
        f"Snakemake's evaluation of the workflow ({dry_run:.2f} s, as a `--dry-run`); with it "
        f"the report costs {total + dry_run:.2f} s, {100 * (total + dry_run) / night:.1f} % of the night."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
