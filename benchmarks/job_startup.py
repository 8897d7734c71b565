"""What each workflow job pays before it works: a Python interpreter and its imports.

    .venv/bin/python benchmarks/job_startup.py [--repeat 5]

For every script of ``workflow/scripts`` (the pixel jobs: each runs in a process of its
own, on a cluster in a SLURM job), a fresh interpreter runs the script's imports exactly
(its import lines, and its log set up on a scratch file), best of ``--repeat``; beside
it a bare interpreter, the imports of Snakemake's preamble that ``script:`` puts before
every script (timed on their own), and the bookkeeping rules' imports, which run in
Snakemake's own process, where numpy and astropy are already imported by the workflow
(timed here in a process of their own, for what they would cost there). ``-X importtime``
then says which packages take the time ("job module": the job's module of
``ccdcal.jobs``, or ``ccdcal.publish``, with all it imports). Prints a table of seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "workflow" / "scripts"
#: What Snakemake's preamble imports before each script (snakemake.script.PythonScript:
#: its logger, its Snakemake class, and the modules of the object it unpickles).
PREAMBLE = {
    "Snakemake's script: preamble (before every script)": (
        "import pickle\nimport snakemake.io, snakemake.script\n"
        "from snakemake.logging import logger\nfrom snakemake.iocontainers import Snakemake"
    )
}
#: What the bookkeeping rules import in their `run:` blocks (workflow/rules/*.smk).
BOOKKEEPING = {
    "inventory (run:, in Snakemake's process)": "from ccdcal.jobs.inventory import inventory_job",
    "publish_calibrated (run:, in Snakemake's process)": "from ccdcal.publish import publish_job",
    "summary (run:, in Snakemake's process)": "from ccdcal.jobs.summary import night_summary_job",
}
#: Packages whose cumulative import time is reported.
PACKAGES = ("numpy", "astropy.io.fits", "bottleneck", "PIL", "jsonschema", "scipy", "matplotlib", "snakemake")
#: The job's own module, reported as "job module".
JOB_MODULE = re.compile(r"ccdcal\.jobs\.\w+|ccdcal\.publish")


def script_imports(script: Path, log_file: Path) -> str:
    """The script's import lines and its log's set-up (on ``log_file``), in order."""
    lines = []
    for line in script.read_text().splitlines():
        if line.startswith("setup_logging(snakemake.log[0])"):
            lines.append(f"setup_logging({str(log_file)!r})")
        elif line.startswith(("import ", "from ")):
            lines.append(line)
    return "\n".join(lines)


def seconds(code: str, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def import_times(code: str) -> dict[str, float]:
    """Cumulative import seconds of PACKAGES (as first imported) from ``-X importtime``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], check=True, env=env, capture_output=True, text=True
    ).stderr
    found = {}
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match[2] in PACKAGES:
            found[match[2]] = int(match[1]) / 1e6
        elif match and JOB_MODULE.fullmatch(match[2]):
            found["job module"] = int(match[1]) / 1e6
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ccdcal-startup-") as scratch:
        log_file = Path(scratch) / "job.log"
        cases = {"bare interpreter": "pass"}
        cases |= {f"{s.stem} (script)": script_imports(s, log_file) for s in sorted(SCRIPTS.glob("*.py"))}
        cases |= PREAMBLE | BOOKKEEPING
        rows = [(name, seconds(code, args.repeat), import_times(code)) for name, code in cases.items()]
    print(f"\nA job's start-up, fresh interpreter, best of {args.repeat} ({time.strftime('%Y-%m-%d')})\n")
    columns = (*PACKAGES, "job module")
    print("| job | s | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for name, total, found in rows:
        cells = " | ".join(f"{found[p]:.3f}" if p in found else "" for p in columns)
        print(f"| {name} | {total:.3f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
