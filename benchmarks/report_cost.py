"""What the quality checks and the report cost, against the night they describe.

    .venv/bin/python benchmarks/report_cost.py [--lights 100] [--size 2048] [--workdir DIR]

Simulates a night (ccdcal.simulate: 10 biases, 10 darks of 60 s, 10 flats, N lights of
60 s, size² pixels), calibrates it with the workflow as a user does (``snakemake --cores
2``), then measures, in the same run, each part of the quality checks and the report:

* in the light jobs: each light's statistics (``qc.light_statistics``) and thumbnail
  (``previews.write_thumbnail``), timed again here on every calibrated light;
* in the master jobs: each master's preview and histogram (``masters.write_master_figures``);
* in the summary job: the quality checks and the report pages (``jobs.quality_job``,
  ``jobs.report_job``);
* ``snakemake --report report.html``.

Prints a table of seconds and their share of the night's wall time (the issue's budget:
under 10 %).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ccdcal import simulate  # noqa: E402
from ccdcal.config import validated  # noqa: E402
from ccdcal.jobs import quality_job, report_job  # noqa: E402
from ccdcal.masters import write_master_figures  # noqa: E402
from ccdcal.previews import write_thumbnail  # noqa: E402
from ccdcal.products import read_product  # noqa: E402
from ccdcal.qc import light_statistics  # noqa: E402

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"


def night_spec(n_lights: int, size: int) -> simulate.CameraNight:
    camera = simulate.CameraSpec(key="cam", instrument="SimCam Bench", shape=(size, size),
                                 overscan_columns=32)
    sets = (
        simulate.FrameSet("bias", "bias", 10, start_h=14.0),
        simulate.FrameSet("dark_60s", "dark", 10, 60.0),
        simulate.FrameSet("flat_V", "flat", 10, 5.0, filter="V", levels_adu=(20000.0,) * 10, start_h=16.5),
        simulate.FrameSet("light_V_60s", "light", n_lights, 60.0, filter="V", object="field",
                          start_h=19.0, sky_e=800.0, n_stars=40),
    )
    return simulate.CameraNight(camera, sets)


def snakemake(raw: Path, out: Path, config: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
                    "--cores", "2", "--configfile", str(config), "--config", f"raw_dir={raw}",
                    f"output_dir={out}", "-q", *extra], check=True, capture_output=True)
    return time.perf_counter() - start


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
    config = work / "config.yaml"
    config.write_text(json.dumps({"cameras": [{
        "name": "cam", "match": {"header": {"INSTRUME": spec.camera.instrument}},
        "overscan": {"method": "polynomial", "order": 1, "regions": "header"}}]}))
    print("calibrating ...", file=sys.stderr)
    night = snakemake(raw, out, config)

    lights = sorted((out / "calibrated").rglob("*.fits"))
    statistics = thumbnails = 0.0
    for path in lights:
        product = read_product(path)
        start = time.perf_counter()
        light_statistics(product.data, product.uncert, product.mask)
        statistics += time.perf_counter() - start
        start = time.perf_counter()
        write_thumbnail(product.data, work / "thumbnail.png", product.mask)
        thumbnails += time.perf_counter() - start
    previews = 0.0
    masters = sorted((out / "masters").glob("*.fits"))
    for master in masters:
        product = read_product(master)
        start = time.perf_counter()
        write_master_figures(master.stem, str(product.header["CCDCALTY"]), product.data, product.mask,
                             str(work / "preview.png"), str(work / "histogram.png"))
        previews += time.perf_counter() - start
    full = validated({"raw_dir": str(raw), "output_dir": str(out), **json.loads(config.read_text())})
    start = time.perf_counter()
    quality_job(str(out / "inventory.csv"), str(out / "plan.json"), str(out), full, str(work / "qc.csv"))
    checks = time.perf_counter() - start
    start = time.perf_counter()
    report_job(str(out / "inventory.csv"), str(out / "plan.json"), str(out), full, str(work / "s.html"),
               str(work / "q.html"), str(work / "plots"), str(work / "lights"))
    pages = time.perf_counter() - start
    report = snakemake(raw, out, config, "--report", str(work / "report.html"))
    dry_run = snakemake(raw, out, config, "--dry-run")  # what any snakemake command pays
    parts = [("light statistics (in the light jobs)", statistics),
             ("light thumbnails (in the light jobs)", thumbnails),
             ("master previews and histograms (in the master jobs)", previews),
             ("quality checks (in the summary job)", checks), ("report pages and plots (in the summary job)", pages),
             ("snakemake --report", report)]
    total = sum(seconds for _, seconds in parts)
    print(f"\nNight of {len(lights)} lights of {args.size}², {len(masters)} masters: "
          f"snakemake --cores 2 took {night:.1f} s\n")
    print("| part | s | share of the night |")
    print("|---|---:|---:|")
    for name, seconds in parts:
        print(f"| {name} | {seconds:.2f} | {100 * seconds / night:.1f} % |")
    print(f"| **all** | {total:.2f} | {100 * total / night:.1f} % |")
    print(f"\nOf snakemake --report, {dry_run:.2f} s is Snakemake evaluating the workflow, as "
          f"`snakemake --dry-run` does: without it, {total - dry_run:.2f} s, "
          f"{100 * (total - dry_run) / night:.1f} % of the night.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
