"""How long the inventory checkpoint takes per 1000 files, against #18's 0.5 s per 1000 on a
warm cache, with the page cache cold and warm and with and without the inventory's own
caches.

    .venv/bin/python benchmarks/inventory_speed.py [--files 1000 10000] [--workdir DIR]

Writes, once per N into ``--workdir``, a night of N small FITS files with a camera's usual
header (40 cards: type, exposure, filter, temperature, date, gain, offset, binning...;
64x64 uint16 images, so that the header is what costs): 10 % biases, darks of 60 s and
flats, 70 % lights in two filters. Then times the inventory job as the workflow runs it
(``jobs.inventory.inventory_job``: every header read, the calibration frames and lights hashed on 2
threads, the plan made, inventory.csv, plan.json and matches.csv written), in a fresh
process each time, its imports left out (the job runs in Snakemake's process, where they
are done):

* cold: the page cache dropped first (``/proc/sys/vm/drop_caches``; as root only, else
  the row says so), no caches of ccdcal's (a new output_dir);
* warm, first reading: the files just read once (``cat``), no caches of ccdcal's;
* warm, rerun: the output_dir of the run before, whose caches (each file's row and
  checksum, by size and time) make a rerun read no file.

Prints a table of seconds and seconds per 1000 files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_PER_1000 = 0.5

#: The inventory job in a fresh process (argv: raw_dir, output_dir): prints its seconds.
INVENTORY_JOB = """
import sys, time
from pathlib import Path
from ccdcal.config import validated
from ccdcal.inventory import list_raw_files
from ccdcal.jobs.inventory import inventory_job
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
config = validated({"raw_dir": str(raw), "output_dir": str(out)})
out.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()
files = list_raw_files(raw, exclude=[out])
inventory_job(files, config, str(out / "inventory.csv"), str(out / "plan.json"), str(out / "matches.csv"), threads=2)
print(time.perf_counter() - start)
"""


def write_night(raw: Path, n: int) -> None:
    """n small frames with a full camera header (see the module docstring)."""
    import numpy as np
    from astropy.io import fits

    data = np.random.default_rng(0).integers(900, 1100, (64, 64), dtype=np.uint16)
    kinds = [("bias", 0.0, ""), ("dark", 60.0, ""), ("flat", 2.0, "V")]
    for i in range(n):
        kind, exptime, filt = kinds[i % 10] if i % 10 < 3 else ("light", 60.0, "V" if i % 2 else "R")
        header = fits.Header()
        for key, value in {
            "IMAGETYP": kind.upper(),
            "EXPTIME": exptime,
            "FILTER": filt,
            "CCD-TEMP": -10.0 + 0.01 * (i % 7),
            "SET-TEMP": -10.0,
            "DATE-OBS": f"2026-11-29T{20 + i * 4 // 3600 % 8:02d}:{i * 4 // 60 % 60:02d}:{i * 4 % 60:02d}",
            "INSTRUME": "SimCam Inventory",
            "TELESCOP": "Bench 0.4 m",
            "OBSERVER": "ccdcal",
            "OBJECT": "NGC 7000" if kind == "light" else "",
            "GAIN": 100,
            "OFFSET": 30,
            "EGAIN": 1.2,
            "RDNOISE": 3.1,
            "XBINNING": 1,
            "YBINNING": 1,
            "XPIXSZ": 3.76,
            "YPIXSZ": 3.76,
            "READOUTM": "High Gain",
            "SITELAT": 52.1,
            "SITELONG": 4.5,
            "RA": 314.7,
            "DEC": 44.3,
            "AIRMASS": 1.1 + 0.001 * i,
            "FOCPOS": 12000 + i % 50,
            "FOCTEMP": 4.5,
            "SWCREATE": "Bench capture 1.0",
            "CAMERAID": "SIM-0001",
            "CLRBAND": "",
            "PEDESTAL": 0,
            "SATURATE": 65535,
            "DATAMAX": 65535,
            "XORGSUBF": 0,
            "YORGSUBF": 0,
            "FOCALLEN": 1000.0,
            "APTDIA": 400.0,
        }.items():
            header[key] = value
        header["COMMENT"] = "written by benchmarks/inventory_speed.py"
        folder = raw / (kind + "s")
        folder.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(data, header=header).writeto(folder / f"{kind}_{i:05d}.fits")


def drop_page_cache() -> bool:
    """Drop the page cache (root only); False when not permitted."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def warm_page_cache(raw: Path) -> None:
    for path in sorted(raw.rglob("*.fits")):
        path.read_bytes()


def inventory_seconds(raw: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", INVENTORY_JOB, str(raw), str(out)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise SystemExit(f"the inventory failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccdcal-inventory-"))
    rows = []
    try:
        for n in args.files:
            raw = work / f"night{n}"
            if not raw.is_dir():
                print(f"writing {n} files into {raw} ...", file=sys.stderr)
                write_night(raw, n)
            outs = [work / f"out{n}-{i}" for i in range(3)]  # a new output_dir: no caches
            for folder in outs:
                shutil.rmtree(folder, ignore_errors=True)
            out = outs[0]
            dropped = drop_page_cache()
            cold = inventory_seconds(raw, out)
            shutil.rmtree(out)
            warm_page_cache(raw)
            first = min(inventory_seconds(raw, folder) for folder in outs)
            rerun = min(inventory_seconds(raw, out) for _ in range(3))
            cold_name = "cold page cache" if dropped else "page cache NOT dropped (not root): as warm"
            rows += [
                (n, f"{cold_name}, no caches of ccdcal's", cold),
                (n, "warm page cache, first reading (best of 3)", first),
                (n, "warm page cache, rerun with the inventory's caches (best of 3)", rerun),
            ]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nThe inventory job (jobs.inventory.inventory_job, 2 threads), {time.strftime('%Y-%m-%d')}\n")
    print("| files | run | s | s per 1000 files |")
    print("|---:|---|---:|---:|")
    for n, name, seconds in rows:
        print(f"| {n} | {name} | {seconds:.2f} | {seconds * 1000 / n:.2f} |")
    print(f"\ntarget: {TARGET_PER_1000} s per 1000 files on a warm cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
