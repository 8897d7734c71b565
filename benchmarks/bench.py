#!/usr/bin/env python3
"""Speed and memory of ccdcal against ccdproc, Siril's CLI and the I/O floor.

Makes its own synthetic uint16 frames (written once per size into ``--workdir``) and
prints markdown tables (also written to ``--out``):

* (a) a master bias of 30 frames, (b) a full master set (30 bias + 20 dark + 20 flat),
  (c) calibrating 10 lights: ccdcal vs ccdproc vs ``siril-cli`` vs the floor (reading
  the same frames; for (c) also writing what ccdcal writes), at 2048^2 and 4096^2;
  (d) the first 2 of those lights, and each tool's time per light from (c) and (d);
* scaling: peak RSS of a ccdcal master bias for N frames, and the end-to-end
  ``snakemake --cores 2`` wall time per light for nights of N lights next to the engine
  alone (the same night in one Python process through the package API).

Every measured run is its own subprocess (``bench.py task <name> <json>`` for Python,
``siril-cli`` directly), timed around Popen + ``os.wait4`` (which also gives the child's
peak RSS, the largest process of its tree). Before each run the page cache is made warm
for all tools alike (``sync``, then every input file read once with ``cat``).

    .venv/bin/python benchmarks/bench.py [--quick]

See benchmarks/README.md for what each column means and the caveats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = Path(sys.executable).parent

# ---------------------------------------------------------------------------- synthetic sky
DATA_VERSION = "v1"  # bump when the synthetic frames change (they are reused otherwise)
SEED = 20240611
KINDS = ("bias", "dark", "flat", "light")
GAIN = 1.5  # e-/ADU
READ_NOISE_ADU = 8.0  # = 12 e-
BIAS_LEVEL = 1000.0
DARK_CURRENT = 0.05  # ADU/s
HOT_FRACTION = 0.001
DARK_EXPTIME = 60.0
LIGHT_EXPTIME = 60.0
FLAT_LEVEL = 20000.0
SKY_LEVEL = 500.0
N_STARS = 40

# ------------------------------------------------------------------------------ benchmark sizes
FULL = {
    "sizes": [2048, 4096],
    "rss_frames": [10, 30, 100],
    "rss_size": 4096,
    "nights": [10, 100, 500],
    "night_sizes": [2048, 4096],
}
QUICK = {"sizes": [2048], "rss_frames": [10, 30, 60], "rss_size": 2048, "nights": [10, 50], "night_sizes": [2048]}
MASTER_SET = {"bias": 30, "dark": 20, "flat": 20}
N_LIGHTS = 10
N_FEW_LIGHTS = 2  # (d): Siril makes no sequence of one frame
THREADS = 2

# -------------------------------------------------- whole nights (e): the night a user reduces
NIGHT_CALS = {"bias": 20, "dark": 20, "flat": 20}  # the flats: half in each filter
NIGHT_FILTERS = ("V", "R")  # frame i (1-based) of a flat or light is in NIGHT_FILTERS[i % 2]
NIGHT_OVERSCAN = 32  # serial overscan: columns right of the size x size data area
NIGHT_DARK_EXPTIME = 120.0  # darks scaled to the 60 s lights and the 1-3 s flats
NIGHT_BIAS_DRIFT = 4.0  # ADU: amplitude of the bias level's drift from frame to frame
#: Lights per night above which ccdproc is not run (1.4 s per 4096² light, one process).
CCDPROC_NIGHT_MAX = 100


@dataclass(frozen=True)
class Source:
    """The ccdcal benchmarked: a tree with src/, workflow/, config/ and the Snakefile."""

    root: Path
    label: str

    @property
    def schema(self) -> Path:
        return self.root / "workflow" / "schemas" / "config.schema.yaml"

    @property
    def snakefile(self) -> Path:
        """workflow/Snakefile; the root's in trees from before the workflow catalog's layout."""
        catalog = self.root / "workflow" / "Snakefile"
        return catalog if catalog.exists() else self.root / "Snakefile"


def git(*args: str) -> str:
    """A read-only git command in the repository (no optional locks: others work in it)."""
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.rstrip("\n")


def working_tree() -> Source:
    """The repository as it is on disk, labelled with its commit and uncommitted changes."""
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", "src", "workflow", "config").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return Source(REPO, f"working tree {REPO}")
    changes = f" + uncommitted changes ({', '.join(ln[3:] for ln in dirty)})" if dirty else ""
    return Source(REPO, f"working tree {REPO} at {commit}{changes}")


def exported(ref: str, workdir: Path) -> Source:
    """The committed tree ``ref`` exported (git archive) into the workdir; its src/ goes
    first on every child's PYTHONPATH, ahead of the editable install."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    dest = workdir / f"source-{commit[:12]}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        tmp.rename(dest)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dest / "src"), os.environ.get("PYTHONPATH")]))
    return Source(dest, f"git archive of {ref} = {commit[:12]} (in {dest})")


SOURCE = Source(REPO, str(REPO))  # set by main()


def log(message: str) -> None:
    """Progress on stderr (stdout gets the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def exposure(kind: str, index: int) -> float:
    """Exposure (s) of frame ``index`` (1-based): flats vary between 1 and 3 s."""
    return {"bias": 0.0, "dark": DARK_EXPTIME, "light": LIGHT_EXPTIME}.get(kind, 1.0 + 0.5 * (index % 5))


@dataclass
class Patterns:
    """What every frame of one size shares: fixed bias pattern, dark current (hot pixels
    included), vignetting, and the star field."""

    bias: Any  # float32 (size, size), ADU
    dark_current: Any  # float32, ADU/s
    vignette: Any  # float32, 0.7 in the corners to 1 in the centre
    stars: Any  # (N_STARS, 4): y, x, peak ADU, sigma px


@lru_cache(maxsize=2)
def patterns(size: int) -> Patterns:
    import numpy as np

    rng = np.random.default_rng([SEED, 0, size])
    bias = np.full((size, size), BIAS_LEVEL, dtype=np.float32)
    bias += rng.normal(0.0, 2.0, size).astype(np.float32)[None, :]  # column pattern
    bias += rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    current = np.full((size, size), DARK_CURRENT, dtype=np.float32)
    hot = rng.random((size, size)) < HOT_FRACTION
    current[hot] += rng.uniform(1.0, 50.0, int(hot.sum())).astype(np.float32)
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / ((size - 1) / 2)
    vignette = 1.0 - 0.15 * (axis[:, None] ** 2 + axis[None, :] ** 2)
    margin = 20
    stars = np.column_stack(
        [
            rng.uniform(margin, size - margin, N_STARS),
            rng.uniform(margin, size - margin, N_STARS),
            10 ** rng.uniform(2.0, 4.3, N_STARS),
            rng.uniform(1.5, 2.5, N_STARS),
        ]
    )
    return Patterns(bias, current, vignette.astype(np.float32), stars)


def add_stars(image, stars, shift: tuple[float, float], half: int = 12) -> None:
    """Add Gaussian stars (in place), the field shifted by ``shift`` pixels (dither)."""
    import numpy as np

    offsets = np.arange(-half, half + 1, dtype=np.float32)
    for y, x, peak, sigma in stars:
        yc, xc = y + shift[0], x + shift[1]
        y0, x0 = int(round(yc)) - half, int(round(xc)) - half
        gy = np.exp(-0.5 * ((offsets + y0 + half - yc) / sigma) ** 2)
        gx = np.exp(-0.5 * ((offsets + x0 + half - xc) / sigma) ** 2)
        image[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1] += np.float32(peak) * np.outer(gy, gx)


def synth_frame(kind: str, size: int, index: int, night: bool = False):
    """(uint16 image, header cards) of frame ``index`` (1-based) of ``kind``; deterministic.

    ``night``: a frame of the whole nights (e): darks of NIGHT_DARK_EXPTIME, flats and
    lights alternating between NIGHT_FILTERS (the R flat field tilted across the frame),
    the bias level drifting from frame to frame, and NIGHT_OVERSCAN overscan columns
    (BIASSEC, DATASEC) right of the size x size data area.
    """
    import numpy as np

    pat = patterns(size)
    rng = np.random.default_rng([SEED, KINDS.index(kind) + 1, size, index, *([1] if night else [])])
    t = NIGHT_DARK_EXPTIME if night and kind == "dark" else exposure(kind, index)
    band = NIGHT_FILTERS[index % 2] if night else "V"
    response = pat.vignette
    if band == "R":
        response = response * np.linspace(0.9, 1.1, size, dtype=np.float32)[None, :]
    signal = pat.dark_current * np.float32(t)  # ADU above the bias
    if kind == "flat":
        signal += np.float32(FLAT_LEVEL * (1 + 0.05 * math.sin(index))) * response
    elif kind == "light":
        sky = np.full((size, size), SKY_LEVEL, dtype=np.float32)
        add_stars(sky, pat.stars, tuple(rng.uniform(-3, 3, 2)))
        sky *= response
        signal += sky
    noise = np.sqrt(np.float32(READ_NOISE_ADU**2) + np.maximum(signal, 0) / np.float32(GAIN))
    drift = np.float32(NIGHT_BIAS_DRIFT * math.sin(0.7 * index)) if night else np.float32(0.0)
    overscan = NIGHT_OVERSCAN if night else 0
    image = np.empty((size, size + overscan), dtype=np.float32)
    image[:, :size] = pat.bias + signal
    image[:, size:] = BIAS_LEVEL
    image += drift
    image[:, :size] += noise * rng.standard_normal((size, size), dtype=np.float32)
    image[:, size:] += rng.normal(0.0, READ_NOISE_ADU, (size, overscan)).astype(np.float32)
    np.clip(np.rint(image), 0, 65535, out=image)
    cards = {
        "IMAGETYP": kind.upper(),
        "EXPTIME": t,
        "INSTRUME": "bench",
        "CCD-TEMP": -10.0,
        "EGAIN": GAIN,
        "RDNOISE": READ_NOISE_ADU * GAIN,
    }
    if kind in ("flat", "light"):
        cards["FILTER"] = band
    if night:
        cards["BIASSEC"] = night_sections(size)[0]
        cards["DATASEC"] = night_sections(size)[1]
    return image.astype(np.uint16), cards


def night_sections(size: int) -> tuple[str, str]:
    """FITS sections (1-based, inclusive; x then y) of a night frame: (overscan, data)."""
    return f"[{size + 1}:{size + NIGHT_OVERSCAN},1:{size}]", f"[1:{size},1:{size}]"


def frame_name(kind: str, index: int) -> str:
    return f"{kind}_{index:05d}.fits"


@dataclass(frozen=True)
class Pool:
    """The synthetic frames of one size: ``root/<kind>/<kind>_NNNNN.fits``."""

    root: Path
    size: int
    night: bool = False  # frames of the whole nights (synth_frame's ``night``)

    def files(self, kind: str, n: int) -> list[Path]:
        return [self.root / kind / frame_name(kind, i) for i in range(1, n + 1)]

    def ensure(self, counts: dict[str, int]) -> None:
        """Write the frames that are missing (existing ones are reused)."""
        from astropy.io import fits

        for kind, n in counts.items():
            missing = [p for p in self.files(kind, n) if not p.exists()]
            if missing:
                log(f"writing {len(missing)} synthetic {kind} frames of {self.size}^2 to {self.root / kind}")
            for path in missing:
                image, cards = synth_frame(kind, self.size, int(path.stem.split("_")[1]), self.night)
                header = fits.Header()
                for key, value in cards.items():
                    header[key] = value
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                fits.PrimaryHDU(image, header).writeto(tmp, overwrite=True)  # BITPIX 16, BZERO 32768
                os.replace(tmp, path)


def make_view(dest: Path, members: dict[str, Sequence[Path]]) -> Path:
    """A fresh folder ``dest/<sub>/<name>`` of symlinks to the given frames."""
    shutil.rmtree(dest, ignore_errors=True)
    for sub, files in members.items():
        (dest / sub).mkdir(parents=True)
        for path in files:
            (dest / sub / path.name).symlink_to(path)
    return dest


def view_files(view: Path) -> list[Path]:
    """Every frame of a view (its symlinks), sorted."""
    return sorted(p for p in view.rglob("*.fits"))


# ----------------------------------------------------------------------------- measurement
@dataclass
class Result:
    """One measured run: wall seconds and peak RSS (MiB), or why there is none."""

    wall: float | None = None
    rss_mib: float | None = None  # the largest process's peak
    note: str = ""
    tree_mib: float | None = None  # the peak of all its processes' summed RSS

    @property
    def ok(self) -> bool:
        return self.wall is not None


@dataclass
class Run:
    """A command to measure: its inputs (warmed first), the folder it writes (emptied
    first) and the outputs that must exist afterwards (glob relative to ``out_dir``, count)."""

    tool: str
    cmd: list[str]
    inputs: list[Path]
    out_dir: Path
    expect: tuple[str, int]
    log_path: Path
    success_marker: str | None = None  # text the log must contain (Siril)


def warm(files: Sequence[Path], chunk: int = 200) -> None:
    """Flush pending writes and let the disk settle (the previous run's outputs were just
    deleted: ext4 with ``discard`` trims them), then read every input once so all tools
    start from a warm cache."""
    os.sync()
    time.sleep(1.0)
    for i in range(0, len(files), chunk):
        subprocess.run(["cat", *map(str, files[i : i + chunk])], stdout=subprocess.DEVNULL, check=True)


def _failure(run: Run, status: int) -> str:
    """'' when the run did what it should, else a short reason."""
    text = run.log_path.read_text(errors="replace") if run.log_path.exists() else ""
    pattern, count = run.expect
    found = len(list(run.out_dir.glob(pattern)))
    if status != 0 or (run.success_marker and run.success_marker not in text):
        lines = [ln for ln in text.splitlines() if re.search(r"error|fail|exception", ln, re.I)]
        return f"failed (exit {status}): {(lines or text.splitlines() or ['no output'])[-1].strip()[:120]}"
    if found != count:
        return f"failed: {found} of {count} expected outputs ({pattern})"
    return ""


def tree_rss_kb(root: int) -> int:
    """Summed resident memory (KiB, VmRSS) of process ``root`` and all its descendants,
    found through /proc/<pid>/task/<tid>/children; 0 once ``root`` has exited."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total


#: Seconds between two samples of a measured run's process tree (its summed RSS).
TREE_SAMPLE_S = 0.05


def timed_child(cmd: list[str], cwd: str, log_path: str) -> dict[str, float]:
    """Run ``cmd`` with its output in ``log_path``: wall seconds, exit code, peak RSS (KiB)
    of its largest process (``ru_maxrss``) and of its whole process tree (summed RSS of the
    processes alive together, sampled every TREE_SAMPLE_S)."""
    import threading

    tree_peak = 0
    done = threading.Event()

    def sample(pid: int) -> None:
        nonlocal tree_peak
        while not done.wait(TREE_SAMPLE_S):
            tree_peak = max(tree_peak, tree_rss_kb(pid))

    with open(log_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "status": proc.returncode,
        "maxrss_kb": usage.ru_maxrss,
        "tree_kb": max(tree_peak, usage.ru_maxrss),
    }


class Launcher:
    """A small process, started before the benchmark imports anything heavy, that starts
    and times every measured command.

    Linux counts the RSS a process had before ``exec`` (its copy of the parent) in its
    ``ru_maxrss``: started from the benchmark itself (numpy, astropy, frames generated),
    every child would report at least the benchmark's own peak. Started from this
    launcher, the inherited part is only the launcher's few MiB (``baseline_mib``).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.baseline_mib = self.request({"cmd": ["true"], "cwd": "/", "log": os.devnull})["baseline_kb"] / 1024

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()

    @staticmethod
    def serve() -> None:
        """The launcher's loop: one JSON request per line in, one JSON answer per line out."""
        import resource

        for line in sys.stdin:
            request = json.loads(line)
            answer = timed_child(request["cmd"], request["cwd"], request["log"])
            answer["baseline_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(json.dumps(answer), flush=True)


LAUNCHER: Launcher | None = None


def measure_once(run: Run) -> Result:
    shutil.rmtree(run.out_dir, ignore_errors=True)
    run.out_dir.mkdir(parents=True)
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    warm(run.inputs)
    answer = LAUNCHER.request({"cmd": run.cmd, "cwd": str(run.out_dir), "log": str(run.log_path)})
    reason = _failure(run, answer["status"])
    if reason:
        return Result(note=f"{reason} (log: {run.log_path})")
    return Result(answer["wall"], answer["maxrss_kb"] / 1024, tree_mib=answer["tree_kb"] / 1024)


#: A run longer than this (s) is not repeated: its share of page-cache and write-back
#: noise is small, and repeating ccdproc's minutes-long runs would triple the benchmark.
REPEAT_BELOW_S = 30.0
#: A run shorter than this (s) is repeated at least SHORT_REPEATS times, whatever the
#: tool: the time per light is the difference of two such runs (10 lights less 2), and
#: one slow run among three moved it by up to 2x on this VM.
SHORT_RUN_S = 2.0
SHORT_REPEATS = 5


def measure(run: Run, repeat: int, keep_outputs: bool = False) -> Result:
    """Best (lowest wall) of ``repeat`` runs (one when the first takes over REPEAT_BELOW_S,
    at least SHORT_REPEATS when it takes under SHORT_RUN_S); outputs removed afterwards
    unless kept."""
    log(f"  {run.tool}: {shlex.join(run.cmd)[:160]}")
    best: Result | None = None
    runs = 0
    while True:
        result = measure_once(run)
        runs += 1
        if not result.ok:
            best = result
            break
        if best is None or result.wall < best.wall:
            best = result
        wanted = max(repeat, SHORT_REPEATS) if best.wall < SHORT_RUN_S else repeat
        if runs >= wanted or result.wall > REPEAT_BELOW_S:
            break
    if not keep_outputs:
        shutil.rmtree(run.out_dir, ignore_errors=True)
    log(f"    -> {f'{best.wall:.2f} s, {best.rss_mib:.0f} MiB' if best.ok else best.note}")
    return best


# ----------------------------------------------------------- tasks (run inside a subprocess)
def task_floor_read(files: list[str]) -> None:
    """Read every frame into a float32 array with astropy, one after the other."""
    import numpy as np
    from astropy.io import fits

    total = 0.0
    for path in files:
        with fits.open(path, memmap=False) as hdul:
            total += float(np.asarray(hdul[0].data, dtype=np.float32)[0, 0])
    print(f"read {len(files)} frames ({total:g})")


def task_floor_lights(masters: list[str], lights: list[str], out: str) -> None:
    """Read the masters (all planes) and each light; write per light a float32 image,
    float32 uncertainty and uint8 mask FITS (what ccdcal writes), with no arithmetic."""
    import numpy as np
    from astropy.io import fits

    held = []
    for path in masters:
        with fits.open(path, memmap=False) as hdul:
            held.append([np.asarray(h.data) for h in hdul])
    for path in lights:
        with fits.open(path, memmap=False) as hdul:
            image = np.asarray(hdul[0].data, dtype=np.float32)
            header = hdul[0].header.copy()
        for key in ("BZERO", "BSCALE"):
            header.remove(key, ignore_missing=True)
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(image, header),
                fits.ImageHDU(image, name="UNCERT"),
                fits.ImageHDU(np.zeros(image.shape, np.uint8), name="MASK"),
            ]
        )
        hdus.writeto(Path(out) / Path(path).name)


def _ccdcal_masters(config: dict, plan: dict, masters_dir: Path) -> None:
    """Build every master of the plan, bias -> dark -> flat."""
    from ccdcal.jobs.build_master import master_job
    from ccdcal.plan import master_inputs

    order = {"bias": 0, "dark": 1, "flat": 2}
    for name in sorted(plan["masters"], key=lambda n: (order[plan["masters"][n]["type"]], n)):
        spec = plan["masters"][name]
        needs = [str(masters_dir / f"{m}.fits") for m in master_inputs(plan, name)["masters"]]
        master_job(
            spec,
            plan["cameras"][spec["camera"]],
            needs,
            str(masters_dir / f"{name}.fits"),
            config,
            threads=config["threads"],
        )


def _ccdcal_lights(config: dict, plan: dict, masters_dir: Path, out: Path) -> None:
    """Calibrate every light group of the plan (one job per group, as the workflow does)."""
    from ccdcal.jobs.calibrate_lights import light_group_job

    for name, group in sorted(plan["light_groups"].items()):
        used = sorted({light[k] for light in group["lights"] for k in ("bias", "dark", "flat") if light[k]})
        light_group_job(
            group,
            plan["cameras"][group["camera"]],
            [str(masters_dir / f"{m}.fits") for m in used],
            str(out / "lights" / name),
            config,
            threads=config["threads"],
        )


def task_ccdcal(
    config: dict,
    masters: bool = True,
    lights: bool = True,
    plan_file: str | None = None,
    masters_dir: str | None = None,
) -> None:
    """ccdcal through its package API in this one process: inventory and plan (unless
    ``plan_file`` is given), masters, lights. ``config`` is already validated."""
    import ccdcal
    from ccdcal.inventory import list_raw_files, take_inventory
    from ccdcal.plan import make_plan

    print(f"ccdcal from {Path(ccdcal.__file__).parent}", flush=True)
    out = Path(config["output_dir"])
    if plan_file:
        plan = json.loads(Path(plan_file).read_text())
    else:
        raw = config["raw_dir"]
        records, cameras = take_inventory(raw, list_raw_files(raw, exclude=[out]), config)
        plan = make_plan(records, config, cameras)
        (out / "plan.json").write_text(json.dumps(plan))
    master_dir = Path(masters_dir) if masters_dir else out / "masters"
    if masters:
        _ccdcal_masters(config, plan, master_dir)
    if lights:
        _ccdcal_lights(config, plan, master_dir, out)


def task_ccdproc_bias(files: list[str], out: str) -> None:
    """ccdproc.combine median with its defaults, written to ``out``/master_bias.fits."""
    import ccdproc

    ccdproc.combine(files, method="median", unit="adu").write(Path(out) / "master_bias.fits", overwrite=True)


def task_ccdproc_masters(bias: list[str], dark: list[str], flat: list[str], out: str) -> None:
    """Master bias and dark (medians, the dark bias-included), then each flat bias- and
    scaled-dark-subtracted and combined by median with scale 1/median."""
    import astropy.units as u
    import ccdproc
    import numpy as np
    from astropy.nddata import CCDData

    out = Path(out)
    master_bias = ccdproc.combine(bias, method="median", unit="adu")
    master_bias.write(out / "master_bias.fits", overwrite=True)
    master_dark = ccdproc.combine(dark, method="median", unit="adu")
    master_dark.write(out / "master_dark.fits", overwrite=True)
    dark_current = master_dark.subtract(master_bias)
    dark_current.meta = master_dark.meta
    flats = []
    for path in flat:
        ccd = ccdproc.subtract_bias(CCDData.read(path, unit="adu"), master_bias)
        flats.append(ccdproc.subtract_dark(ccd, dark_current, exposure_time="EXPTIME", exposure_unit=u.s, scale=True))
    master_flat = ccdproc.combine(flats, method="median", scale=lambda a: 1 / np.median(a))
    master_flat.write(out / "master_flat.fits", overwrite=True)


def task_ccdproc_lights(dark: str, flat: str, lights: list[str], out: str) -> None:
    """ccd_process each light (unscaled dark, flat, error planes), written with CCDData."""
    from astropy.nddata import CCDData

    master_dark = CCDData.read(dark, unit="adu")
    master_flat = CCDData.read(flat, unit="adu")
    for path in lights:
        ccd = ccdproc_light(path, master_bias=None, dark_frame=master_dark, master_flat=master_flat, dark_scale=False)
        ccd.write(Path(out) / Path(path).name, overwrite=True)


def ccdproc_light(path: str | Path, **steps: Any):
    """``ccdproc.ccd_process`` of one raw light with error planes (the synthetic gain and
    read noise, in ADU: gain_corrected=False) and the exposure from EXPTIME; ``steps`` are
    the calibration's own arguments (masters, overscan, trim, dark scaling)."""
    import astropy.units as u
    import ccdproc
    from astropy.nddata import CCDData

    return ccdproc.ccd_process(
        CCDData.read(path, unit="adu"),
        exposure_key="EXPTIME",
        exposure_unit=u.s,
        error=True,
        gain=GAIN * u.electron / u.adu,
        readnoise=READ_NOISE_ADU * GAIN * u.electron,
        gain_corrected=False,
        **steps,
    )


def task_ccdproc_night(view: str, frame_size: int, out: str) -> None:
    """The whole night the way a careful ccdproc user writes it: every frame overscan-
    subtracted (the median of BIASSEC in each row) and trimmed to DATASEC;
    master bias and dark as sigma-clipped means (ccdproc.combine's defaults: 3 sigma about
    the median), the dark bias-subtracted; per filter, flats bias- and scaled-dark-subtracted
    and median-combined with scale 1/median; lights ccd_process'ed with error planes and the
    dark scaled to their exposure."""
    import astropy.units as u
    import ccdproc
    import numpy as np
    from astropy.nddata import CCDData

    overscan, data = night_sections(frame_size)
    view_dir, out_dir = Path(view), Path(out)

    def frames(folder: str) -> list[Path]:
        return sorted((view_dir / folder).glob("*.fits"))

    def reduced(path: Path) -> CCDData:
        ccd = CCDData.read(path, unit="adu")
        ccd = ccdproc.subtract_overscan(ccd, fits_section=overscan, median=True, overscan_axis=1)
        return ccdproc.trim_image(ccd, fits_section=data)

    clipped = {"method": "average", "sigma_clip": True, "sigma_clip_low_thresh": 3, "sigma_clip_high_thresh": 3}
    master_bias = ccdproc.combine([reduced(p) for p in frames("bias")], **clipped)
    darks = [ccdproc.subtract_bias(reduced(p), master_bias) for p in frames("dark")]
    master_dark = ccdproc.combine(darks, **clipped)
    master_dark.meta["EXPTIME"] = darks[0].meta["EXPTIME"]
    del darks
    scaled = {"master": master_dark, "exposure_time": "EXPTIME", "exposure_unit": u.s, "scale": True}
    for band in NIGHT_FILTERS:
        flats = [
            ccdproc.subtract_dark(ccdproc.subtract_bias(reduced(p), master_bias), **scaled)
            for p in frames(f"flat_{band}")
        ]
        master_flat = ccdproc.combine(flats, method="median", scale=lambda a: 1 / np.median(a))
        del flats
        for path in frames(f"light_{band}"):
            ccd = ccdproc_light(
                path,
                oscan=overscan,
                oscan_median=True,
                trim=data,
                master_bias=master_bias,
                dark_frame=master_dark,
                master_flat=master_flat,
                dark_scale=True,
            )
            ccd.write(out_dir / path.name, overwrite=True)


TASKS: dict[str, Callable[..., None]] = {
    "floor_read": task_floor_read,
    "floor_lights": task_floor_lights,
    "ccdcal": task_ccdcal,
    "ccdproc_bias": task_ccdproc_bias,
    "ccdproc_masters": task_ccdproc_masters,
    "ccdproc_lights": task_ccdproc_lights,
    "ccdproc_night": task_ccdproc_night,
}


def task_cmd(name: str, **kwargs: Any) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "task", name, json.dumps(kwargs, default=str)]


# ---------------------------------------------------------------------------- configurations
def validated(config: dict) -> dict:
    """``config`` with the schema's defaults filled in (as the workflow does)."""
    from snakemake.utils import validate

    validate(config, str(SOURCE.schema))
    return config


def bench_config(raw: Path, out: Path, bias_combine: dict | None = None) -> dict:
    """The ccdcal configuration of the tool comparisons: no overscan, medians (fast path)."""
    combine = {kind: {"method": "median"} for kind in ("bias", "dark", "flat")}
    if bias_combine:
        combine["bias"] = bias_combine
    return validated(
        {
            "raw_dir": str(raw),
            "output_dir": str(out),
            "threads": THREADS,
            "default_camera": {"overscan": {"method": "none"}, "combine": combine},
        }
    )


def workflow_config(raw: Path, out: Path) -> dict:
    """What ``snakemake --config raw_dir=.. output_dir=.. threads=2`` runs with: the
    repository's config/config.yaml with those three keys overridden."""
    import yaml

    config = yaml.safe_load((SOURCE.root / "config" / "config.yaml").read_text())
    config.update(raw_dir=str(raw), output_dir=str(out), threads=THREADS)
    return validated(config)


# ------------------------------------------------------------------------------------- Siril
SIRIL = shutil.which("siril-cli")
SIRIL_OK = "Script execution finished successfully"


def siril_version() -> str:
    if not SIRIL:
        return "not installed"
    out = subprocess.run([SIRIL, "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1].removeprefix("siril ") if out.strip() else "unknown"


def siril_link(view: Path, kinds: Sequence[str], process: Path) -> list[str]:
    """Script lines making one Siril sequence ``<kind>_`` per folder of the view."""
    lines = []
    for kind in kinds:
        lines += [f"cd {view / kind}", f"link {kind} -out={process}"]
    return lines + [f"cd {process}"]


def siril_run(
    name: str,
    lines: list[str],
    view: Path,
    out: Path,
    scripts: Path,
    expect: tuple[str, int],
    extra_inputs: Sequence[Path] = (),
) -> Run:
    script = scripts / f"{name}.ssf"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("\n".join(["requires 1.0.0", "set32bits", "setext fits", *lines]) + "\n")
    return Run(
        "Siril",
        [SIRIL, "-d", str(out), "-s", str(script)],
        view_files(view) + list(extra_inputs),
        out,
        expect,
        scripts / f"{name}.log",
        SIRIL_OK,
    )


SIRIL_MASTERS = [
    "stack bias_ med -nonorm -out=master_bias",
    "stack dark_ med -nonorm -out=master_dark",
    "preprocess flat_ -bias=master_bias",
    "stack pp_flat_ med -norm=mul -out=master_flat",
]


# ------------------------------------------------------------------------------ the benchmark
@dataclass
class Row:
    case: str
    size: int
    tool: str
    result: Result
    lights: int = 0  # (e): the night's lights


@dataclass
class Bench:
    """Settings and results of one benchmark run."""

    args: argparse.Namespace
    work: Path
    rows: list[Row] = field(default_factory=list)
    rss_rows: list[tuple[int, int, Result, Result]] = field(default_factory=list)

    def pool(self, size: int, night: bool = False) -> Pool:
        return Pool(self.work / f"data-{DATA_VERSION}" / f"{'night-' if night else ''}{size}", size, night)

    def path(self, kind: str, size: int, name: str) -> Path:
        """workdir/<kind>/<size>/<name>: kind is views, runs, prep or logs."""
        return self.work / kind / str(size) / name

    def skip_ccdproc(self, size: int) -> bool:
        return self.args.skip_ccdproc_above is not None and size > self.args.skip_ccdproc_above

    def record(self, case: str, size: int, run: Run, lights: int = 0) -> None:
        """Measure ``run`` and add its row."""
        self._add(Row(case, size, run.tool, measure(run, self.args.repeat), lights))

    def skip(self, case: str, size: int, tool: str, why: str, lights: int = 0) -> None:
        """A row saying why ``tool`` was not measured."""
        log(f"  {tool}: {why}")
        self._add(Row(case, size, tool, Result(note=why), lights))

    def _add(self, row: Row) -> None:
        self.rows.append(row)
        self.write_report(final=False)

    def python_run(
        self,
        tool: str,
        size: int,
        name: str,
        task: str,
        inputs: Sequence[Path],
        expect: tuple[str, int],
        out_arg: bool = False,
        **kwargs: Any,
    ) -> Run:
        """A Python task writing into runs/<size>/<name> (passed as ``out`` when ``out_arg``)."""
        out = self.path("runs", size, name)
        if out_arg:
            kwargs["out"] = str(out)
        log_path = self.path("logs", size, f"{name}.log")
        return Run(tool, task_cmd(task, **kwargs), list(inputs), out, expect, log_path)

    def write_report(self, final: bool) -> None:
        text = report(self, final)
        Path(self.args.out).write_text(text)
        if final:
            print(text)


CASE_A = "(a) master bias, 30 frames"
CASE_B = "(b) master set, 30 bias + 20 dark + 20 flat"
CASE_C = "(c) calibrate 10 lights"
CASE_D = "(d) calibrate 2 lights"
CCDPROC_SKIPPED = "skipped (--skip-ccdproc-above)"
SIRIL_MISSING = "skipped: siril-cli not found"


def case_bias(b: Bench, size: int) -> None:
    """(a) master bias of 30 frames."""
    pool = b.pool(size)
    view = make_view(b.path("views", size, "bias30"), {"bias": pool.files("bias", MASTER_SET["bias"])})
    files = view_files(view)
    names = [str(p) for p in files]
    b.record(CASE_A, size, b.python_run("floor", size, "a-floor", "floor_read", files, ("*", 0), files=names))
    for tool, name, combine in (
        ("ccdcal", "a-ccdcal", None),
        ("ccdcal (mean + sigma clip)", "a-ccdcal-clip", {"method": "mean", "rejection": "sigma_clip"}),
    ):
        out = b.path("runs", size, name)
        b.record(
            CASE_A,
            size,
            b.python_run(
                tool,
                size,
                name,
                "ccdcal",
                files,
                ("masters/bias_*.fits", 1),
                config=bench_config(view, out, combine),
                lights=False,
            ),
        )
    if b.skip_ccdproc(size):
        b.skip(CASE_A, size, "ccdproc", CCDPROC_SKIPPED)
    else:
        b.record(
            CASE_A,
            size,
            b.python_run(
                "ccdproc", size, "a-ccdproc", "ccdproc_bias", files, ("master_bias.fits", 1), out_arg=True, files=names
            ),
        )
    if not SIRIL:
        b.skip(CASE_A, size, "Siril", SIRIL_MISSING)
        return
    out = b.path("runs", size, "a-siril")
    b.record(
        CASE_A,
        size,
        siril_run(
            "a-siril",
            siril_link(view, ["bias"], out) + SIRIL_MASTERS[:1],
            view,
            out,
            b.path("logs", size, "siril"),
            ("master_bias.fits", 1),
        ),
    )


def master_set_view(b: Bench, size: int, name: str, with_lights: bool = False) -> Path:
    pool = b.pool(size)
    members = {kind: pool.files(kind, n) for kind, n in MASTER_SET.items()}
    if with_lights:
        members["light"] = pool.files("light", N_LIGHTS)
    return make_view(b.path("views", size, name), members)


def case_masters(b: Bench, size: int) -> None:
    """(b) the full master set."""
    view = master_set_view(b, size, "masterset")
    files = view_files(view)
    by_kind = {kind: [str(p) for p in view_files(view / kind)] for kind in MASTER_SET}
    b.record(
        CASE_B,
        size,
        b.python_run("floor", size, "b-floor", "floor_read", files, ("*", 0), files=[str(p) for p in files]),
    )
    out = b.path("runs", size, "b-ccdcal")
    b.record(
        CASE_B,
        size,
        b.python_run(
            "ccdcal",
            size,
            "b-ccdcal",
            "ccdcal",
            files,
            ("masters/*.fits", 3),
            config=bench_config(view, out),
            lights=False,
        ),
    )
    if b.skip_ccdproc(size):
        b.skip(CASE_B, size, "ccdproc", CCDPROC_SKIPPED)
    else:
        b.record(
            CASE_B,
            size,
            b.python_run(
                "ccdproc", size, "b-ccdproc", "ccdproc_masters", files, ("master_*.fits", 3), out_arg=True, **by_kind
            ),
        )
    if not SIRIL:
        b.skip(CASE_B, size, "Siril", SIRIL_MISSING)
        return
    out = b.path("runs", size, "b-siril")
    b.record(
        CASE_B,
        size,
        siril_run(
            "b-siril",
            siril_link(view, list(MASTER_SET), out) + SIRIL_MASTERS,
            view,
            out,
            b.path("logs", size, "siril"),
            ("master_*.fits", 3),
        ),
    )


def prepare(run: Run) -> str:
    """Run an untimed preparation step; '' when it worked, else why not."""
    log(f"  preparing ({run.tool}, not timed)")
    result = measure(run, 1, keep_outputs=True)
    return "" if result.ok else result.note


def case_lights(b: Bench, size: int) -> None:
    """(c) calibrating 10 lights with masters built beforehand (not timed), and (d) the
    same with 2 lights: each tool's time per light is the difference over 8 lights, its
    start-up (process, masters read) left out."""
    view = master_set_view(b, size, "night", with_lights=True)
    lights = view_files(view / "light")
    prep = b.path("prep", size, "ccdcal")
    prep_run = Run(
        "ccdcal",
        task_cmd("ccdcal", config=bench_config(view, prep), lights=False),
        view_files(view),
        prep,
        ("masters/*.fits", 3),
        b.path("logs", size, "prep-ccdcal.log"),
    )
    failed = prepare(prep_run)
    few = lights[:N_FEW_LIGHTS]
    if failed:
        for tool in ("floor", "ccdcal", "ccdproc"):
            b.skip(CASE_C, size, tool, f"not run, the ccdcal masters failed: {failed}")
    else:
        plan_file = prep / "plan.json"
        plan = json.loads(plan_file.read_text())
        (group,) = plan["light_groups"].values()
        dark, flat = (prep / "masters" / f"{group[k]}.fits" for k in ("dark", "flat"))
        few_plan = prep / "plan-few.json"
        group["lights"] = group["lights"][:N_FEW_LIGHTS]
        few_plan.write_text(json.dumps(plan))
        for case, chosen, plan_path in ((CASE_C, lights, plan_file), (CASE_D, few, few_plan)):
            tag = "c" if case == CASE_C else "d"
            inputs = [dark, flat, *chosen]
            expect = ("**/light_*.fits", len(chosen))
            b.record(
                case,
                size,
                b.python_run(
                    "floor",
                    size,
                    f"{tag}-floor",
                    "floor_lights",
                    inputs,
                    expect,
                    masters=[str(dark), str(flat)],
                    lights=[str(p) for p in chosen],
                    out_arg=True,
                ),
            )
            out = b.path("runs", size, f"{tag}-ccdcal")
            b.record(
                case,
                size,
                b.python_run(
                    "ccdcal",
                    size,
                    f"{tag}-ccdcal",
                    "ccdcal",
                    inputs,
                    expect,
                    config=bench_config(view, out),
                    masters=False,
                    plan_file=str(plan_path),
                    masters_dir=str(prep / "masters"),
                ),
            )
        if b.skip_ccdproc(size):
            b.skip(CASE_C, size, "ccdproc", CCDPROC_SKIPPED)
        else:
            b.record(
                CASE_C,
                size,
                b.python_run(
                    "ccdproc",
                    size,
                    "c-ccdproc",
                    "ccdproc_lights",
                    [dark, flat, *lights],
                    ("**/light_*.fits", len(lights)),
                    dark=str(dark),
                    flat=str(flat),
                    lights=[str(p) for p in lights],
                    out_arg=True,
                ),
            )
    if not SIRIL:
        b.skip(CASE_C, size, "Siril", SIRIL_MISSING)
        return
    scripts = b.path("logs", size, "siril")
    prep = b.path("prep", size, "siril")
    masters = siril_run(
        "c-siril-masters",
        siril_link(view, list(MASTER_SET), prep) + SIRIL_MASTERS,
        view,
        prep,
        scripts,
        ("master_*.fits", 3),
    )
    failed = prepare(masters)
    if failed:
        b.skip(CASE_C, size, "Siril", f"not run, the Siril masters failed: {failed}")
        return
    dark, flat = prep / "master_dark.fits", prep / "master_flat.fits"
    few_view = make_view(b.path("views", size, "night-few"), {"light": [p.resolve() for p in few]})
    for case, light_view, n in ((CASE_C, view, len(lights)), (CASE_D, few_view, len(few))):
        tag = "c" if case == CASE_C else "d"
        out = b.path("runs", size, f"{tag}-siril")
        lines = siril_link(light_view, ["light"], out) + [f"preprocess light_ -dark={dark} -flat={flat}"]
        b.record(
            case,
            size,
            siril_run(
                f"{tag}-siril", lines, light_view, out, scripts, ("pp_light_*.fits", n), extra_inputs=[dark, flat]
            ),
        )


def bench_rss(b: Bench, size: int, counts: Sequence[int]) -> None:
    """Peak RSS (and wall) of a ccdcal master bias of N frames, median and mean + sigma clip."""
    pool = b.pool(size)
    for n in counts:
        view = make_view(b.path("views", size, f"bias{n}"), {"bias": pool.files("bias", n)})
        results = []
        for label, combine in (("median", None), ("clip", {"method": "mean", "rejection": "sigma_clip"})):
            name = f"rss-{n}-{label}"
            out = b.path("runs", size, name)
            results.append(
                measure(
                    b.python_run(
                        f"ccdcal {label}, N={n}",
                        size,
                        name,
                        "ccdcal",
                        view_files(view),
                        ("masters/bias_*.fits", 1),
                        config=bench_config(view, out, combine),
                        lights=False,
                    ),
                    b.args.repeat,
                )
            )
        b.rss_rows.append((n, size, *results))
        b.write_report(final=False)


CASE_E = "(e) whole nights"
CASES = ("bias", "masters", "lights", "rss", "nights")
#: The whole night's tools, in the order they are run and reported.
NIGHT_TOOLS = ("ccdcal", "ccdcal (median combines)", "ccdcal engine (one process)", "Siril", "ccdproc")
#: What the "median combines" variant changes in config/config.yaml (bias and dark: the
#: default is mean + sigma clip; flats are medians either way).
MEDIAN_COMBINES = {"default_camera": {"combine": {"bias": {"method": "median"}, "dark": {"method": "median"}}}}


def night_view(b: Bench, size: int, n: int) -> Path:
    """The night of ``n`` lights: bias/, dark/, flat_<F>/ and light_<F>/ per filter F
    (folders per filter for Siril's sequences; ccdcal and ccdproc read the headers)."""
    pool = b.pool(size, night=True)
    members = {kind: pool.files(kind, NIGHT_CALS[kind]) for kind in ("bias", "dark")}
    for kind, count in (("flat", NIGHT_CALS["flat"]), ("light", n)):
        for path in pool.files(kind, count):
            band = NIGHT_FILTERS[int(path.stem.split("_")[1]) % 2]
            members.setdefault(f"{kind}_{band}", []).append(path)
    return make_view(b.path("views", size, f"night{n}"), members)


def night_output_gb(tool: str, size: int, n: int) -> float:
    """What a tool's run of the night leaves on disk at its end (GB, decimal), its outputs
    being removed only afterwards: ccdcal float32 image + float32 UNCERT + uint8 MASK per
    light; Siril a float32 image per light, calibration frame and master (with overscan);
    ccdproc float64 image + UNCERT + uint8 MASK per light."""
    pixels = size * size
    if tool == "Siril":
        return 4 * size * (size + NIGHT_OVERSCAN) * (n + sum(NIGHT_CALS.values()) + 4) / 1e9
    per_pixel = 17 if tool == "ccdproc" else 9
    return (per_pixel * pixels * n + 10 * 9 * pixels) / 1e9


def night_too_big(b: Bench, size: int, n: int) -> str:
    """Why a night of ``n`` lights does not fit the workdir's disk ('' when it does): its
    lights not yet written, plus ccdcal's outputs (the largest run measured, ccdproc's
    being limited to small nights), with 2 GB to spare."""
    pool = b.pool(size, night=True)
    missing = sum(not p.exists() for p in pool.files("light", n))
    raw = missing * 2 * size * (size + NIGHT_OVERSCAN) / 1e9
    need = raw + max(night_output_gb(tool, size, n) for tool in ("ccdcal", "Siril"))
    free = shutil.disk_usage(b.work).free / 1e9
    if need <= free - 2.0:
        return ""
    return f"not run: the night needs {need:.0f} GB of disk (raw lights and outputs), {free:.0f} GB free"


def snakemake_night(b: Bench, view: Path, out: Path, configfile: Path | None) -> list[str]:
    """The README's command for a night, from a scratch working directory (Snakemake's
    .snakemake/ stays out of the repository) that links the repository's config/."""
    workdir = b.work / "snakemake-workdir"
    workdir.mkdir(parents=True, exist_ok=True)
    config_link = workdir / "config"
    if not config_link.is_symlink():
        config_link.symlink_to(SOURCE.root / "config")
    extra = ["--configfile", str(configfile)] if configfile else []
    return [
        str(VENV_BIN / "snakemake"),
        "--snakefile",
        str(SOURCE.snakefile),
        "--directory",
        str(workdir),
        "--cores",
        str(THREADS),
        *extra,
        "--config",
        f"raw_dir={view}",
        f"output_dir={out}",
        f"threads={THREADS}",
    ]


def siril_night(size: int, view: Path, out: Path) -> list[str]:
    """Siril's script for the night, with ccdcal's default recipes where Siril has them:
    bias and darks sigma-clipped means, darks bias-subtracted, flats bias- and
    dark-subtracted and median-combined, lights calibrated with the master of their filter.
    The darks are subtracted unscaled: Siril 1.0.6's only dark scaling, ``-opt``, crashes
    siril-cli (segmentation fault, in ``preprocess`` of flats and of lights alike); the
    work is the same less one multiplication per pixel. Siril has no overscan
    correction: it calibrates the whole frame, overscan columns included."""
    filters = sorted({d.name.split("_", 1)[1] for d in view.iterdir() if "_" in d.name})
    folders = ["bias", "dark"] + [f"{kind}_{f}" for kind in ("flat", "light") for f in filters]
    lines = siril_link(view, folders, out)
    lines += [
        "stack bias_ rej s 3 3 -nonorm -out=master_bias",
        "preprocess dark_ -bias=master_bias",
        "stack pp_dark_ rej s 3 3 -nonorm -out=master_dark",
    ]
    for f in filters:
        lines += [
            f"preprocess flat_{f}_ -bias=master_bias -dark=master_dark",
            f"stack pp_flat_{f}_ med -norm=mul -out=master_flat_{f}",
            f"preprocess light_{f}_ -bias=master_bias -dark=master_dark -flat=master_flat_{f}",
        ]
    return lines


def case_night(b: Bench, size: int, n: int) -> None:
    """(e) a whole night of ``n`` lights: every tool from its raw frames to calibrated lights."""
    too_big = night_too_big(b, size, n)
    if too_big:
        for tool in NIGHT_TOOLS:
            b.skip(CASE_E, size, tool, too_big, n)
        return
    view = night_view(b, size, n)
    files = view_files(view)
    name = f"e{n}"
    median_config = b.path("prep", size, "median-combines.yaml")
    median_config.parent.mkdir(parents=True, exist_ok=True)
    median_config.write_text(json.dumps(MEDIAN_COMBINES))  # JSON is YAML

    def snakemake_run(tool: str, configfile: Path | None) -> Callable[[Path], Run]:
        return lambda out: Run(
            tool,
            snakemake_night(b, view, out, configfile),
            files,
            out,
            ("calibrated/**/light_*.fits", n),
            b.path("logs", size, f"{out.name}.log"),
        )

    runs: dict[str, Callable[[Path], Run]] = {
        "ccdcal": snakemake_run("ccdcal", None),
        "ccdcal (median combines)": snakemake_run("ccdcal (median combines)", median_config),
        "ccdcal engine (one process)": lambda out: b.python_run(
            "ccdcal engine (one process)",
            size,
            out.name,
            "ccdcal",
            files,
            ("lights/**/light_*.fits", n),
            config=workflow_config(view, out),
        ),
        "Siril": lambda out: siril_run(
            f"{name}-siril",
            siril_night(size, view, out),
            view,
            out,
            b.path("logs", size, "siril"),
            ("pp_light_*.fits", n),
        ),
        "ccdproc": lambda out: b.python_run(
            "ccdproc",
            size,
            out.name,
            "ccdproc_night",
            files,
            ("light_*.fits", n),
            out_arg=True,
            view=str(view),
            frame_size=size,
        ),
    }
    for tool in NIGHT_TOOLS:
        out = b.path("runs", size, f"{name}-{re.sub(r'[^a-z]+', '-', tool.lower()).strip('-')}")
        need, free = night_output_gb(tool, size, n), shutil.disk_usage(b.work).free / 1e9
        if tool == "Siril" and not SIRIL:
            b.skip(CASE_E, size, tool, SIRIL_MISSING, n)
        elif tool == "ccdproc" and (b.skip_ccdproc(size) or n > b.args.ccdproc_night_max):
            b.skip(CASE_E, size, tool, f"not run above {b.args.ccdproc_night_max} lights or {CCDPROC_SKIPPED}", n)
        elif need > free - 2.0:
            b.skip(CASE_E, size, tool, f"not run: its outputs take {need:.0f} GB, {free:.0f} GB free", n)
        else:
            b.record(CASE_E, size, runs[tool](out), n)


# -------------------------------------------------------------------------------- the report
def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---" if i == 0 or not rows or not _numeric(rows[0][i]) else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-\d.,x×%]+", text.strip())) or text.strip() == "-"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def tool_table(rows: list[Row]) -> str:
    """One comparison table: each tool against the floor and against ccdcal of its size."""
    body = []
    for row in rows:
        same = {r.tool: r.result for r in rows if r.size == row.size}
        floor, ccdcal, res = same.get("floor", Result()), same.get("ccdcal", Result()), row.result
        body.append(
            [
                f"{row.size}²",
                row.tool,
                fmt(res.wall),
                ratio(res.wall, floor.wall),
                ratio(res.wall, ccdcal.wall),
                fmt(res.rss_mib, 0),
                ratio(res.rss_mib, floor.rss_mib),
                res.note or "",
            ]
        )
    return md_table(
        ["size", "tool", "wall s", "wall / floor", "wall / ccdcal", "peak RSS MiB", "RSS / floor", "note"], body
    )


def per_light_table(rows: list[Row]) -> str:
    """Marginal seconds per light of each tool measured in both (c) and (d), against the
    floor's and Siril's of the same size."""
    walls = {(r.case, r.size, r.tool): r.result.wall for r in rows if r.result.ok}
    per = {}
    for (case, size, tool), wall in walls.items():
        few = walls.get((CASE_D, size, tool))
        if case == CASE_C and few is not None:
            per[size, tool] = (wall - few) / (N_LIGHTS - N_FEW_LIGHTS)
    body = [
        [
            f"{size}²",
            tool,
            fmt(walls[CASE_C, size, tool]),
            fmt(walls[CASE_D, size, tool]),
            fmt(value, 3),
            ratio(value, per.get((size, "floor"))),
            ratio(value, per.get((size, "Siril"))),
        ]
        for (size, tool), value in per.items()
    ]
    return (
        md_table(
            [
                "size",
                "tool",
                f"{N_LIGHTS} lights s",
                f"{N_FEW_LIGHTS} lights s",
                "s per light",
                "per light / floor",
                "per light / Siril",
            ],
            body,
        )
        if body
        else ""
    )


def rss_table(rows) -> str:
    body = []
    for n, size, median, clip in rows:
        raw_mib = n * size * size * 2 / 2**20
        body.append(
            [
                str(n),
                f"{size}²",
                fmt(raw_mib, 0),
                fmt(median.wall),
                fmt(median.rss_mib, 0),
                fmt(clip.wall),
                fmt(clip.rss_mib, 0),
                "; ".join(r.note for r in (median, clip) if r.note),
            ]
        )
    return md_table(
        [
            "N frames",
            "size",
            "raw data MiB",
            "median wall s",
            "median peak RSS MiB",
            "mean+clip wall s",
            "mean+clip peak RSS MiB",
            "note",
        ],
        body,
    )


def whole_night_table(rows: list[Row]) -> str:
    """(e): each tool's night against Siril's same night (wall time and memory)."""
    body = []
    for row in rows:
        res = row.result
        siril = next(
            (r.result for r in rows if (r.size, r.lights, r.tool) == (row.size, row.lights, "Siril")), Result()
        )
        body.append(
            [
                f"{row.size}²",
                str(row.lights),
                row.tool,
                fmt(res.wall, 1),
                fmt(res.wall / row.lights if res.ok else None, 3),
                ratio(res.wall, siril.wall),
                fmt(res.tree_mib, 0),
                ratio(res.tree_mib, siril.tree_mib),
                fmt(res.rss_mib, 0),
                res.note or "",
            ]
        )
    return md_table(
        [
            "size",
            "lights",
            "tool",
            "wall s",
            "s / light",
            "wall / Siril",
            "peak memory MiB, all processes",
            "memory / Siril",
            "largest process MiB",
            "note",
        ],
        body,
    )


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for name in ("ccdcal", "numpy", "astropy", "ccdproc", "bottleneck", "snakemake"):
        try:
            found[name] = version(name)
        except Exception:
            found[name] = "not installed"
    found["siril"] = siril_version()
    return found


def machine() -> str:
    mem_kb = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine()
    )
    system = f"{platform.system()} {platform.machine()}"
    return f"nproc {os.cpu_count()}, RAM {mem_kb / 2**20:.1f} GiB, CPU {cpu}, {system}"


NOTES = """\
Notes: every figure is one subprocess (best of `--repeat`, of at least 5 for runs under 2 s;
runs over 30 s once), all tools measured in the same run, each started on a warm page cache
(`sync`, then every input read once with `cat`). Peak RSS is
`ru_maxrss` from `os.wait4`, ~{baseline:.0f} MiB of it inherited from the launcher process (for Snakemake: its
largest process, not the sum). ccdcal runs with
`threads: 2`, no overscan and median combines (its fast path) unless said; ccdproc is
single-threaded float64 and writes float64 image + UNCERT (+ MASK); Siril (2 threads) writes
float32 images with **neither uncertainty nor mask planes**, its flats are only
bias-subtracted (ccdcal and ccdproc: bias + dark scaled to the flat's exposure), it
normalizes flats by the mean of the central region and applies automatic hot-pixel
correction when given a dark. Floor: (a)/(b) astropy reading each frame into a float32 array,
one after the other; (c) reading the two masters (3 planes each) and each light, and writing
per light a float32 image + float32 uncertainty + uint8 mask FITS, no arithmetic."""


NIGHT_NOTES = """\
Each night: {bias} bias, {dark} darks of {exptime:g} s, {flat} flats and the lights, half of
them in each of two filters (V, R), every frame with {overscan} overscan columns and a bias
level drifting between frames. ccdcal: the README's command, `snakemake --cores 2 --config
raw_dir=.. output_dir=.. threads=2`, with config/config.yaml (default recipes: overscan
median, bias and darks mean + sigma clip, flats median, darks scaled by exposure,
lights_per_job auto), from a scratch --directory; "median combines": the same with
`--configfile` setting bias and dark combines to medians; "engine": the same night and config
through the package API in one Python process (no Snakemake, no job start-ups). Siril: one
`siril-cli` script (link, stack bias, darks calibrated and stacked, flats calibrated and
stacked, lights calibrated; sigma-clipped means and medians as ccdcal's defaults; darks
unscaled, as Siril 1.0.6's dark optimisation `-opt` crashes siril-cli; no overscan
correction, which Siril lacks). ccdproc: one Python process, overscan,
trim, sigma-clipped masters, scaled darks, error planes. Peak memory, all processes: the
largest summed RSS of the run's process tree, sampled every 50 ms (shared pages counted
once per process: an upper bound for a tree of many processes such as Snakemake's)."""


def report(b: Bench, final: bool) -> str:
    v = versions()
    parts = [
        "# ccdcal benchmark" + ("" if final else " (incomplete: still running)"),
        "",
        f"Machine: {machine()}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Command: `{shlex.join(getattr(sys, 'orig_argv', [sys.executable, *sys.argv]))}`",
        f"ccdcal benchmarked: {SOURCE.label}.",
        "",
        f"Synthetic uint16 frames (BITPIX 16, BZERO 32768), seed {SEED}: bias {BIAS_LEVEL:g} ADU + "
        f"{READ_NOISE_ADU:g} ADU read noise + fixed pattern; darks {DARK_EXPTIME:g} s with "
        f"{DARK_CURRENT} ADU/s and {HOT_FRACTION:.1%} hot pixels; flats 1-3 s, ~{FLAT_LEVEL:g} ADU x "
        f"vignetting; lights {LIGHT_EXPTIME:g} s, sky {SKY_LEVEL:g} ADU + {N_STARS} stars; gain {GAIN} e-/ADU.",
        "",
    ]
    for case in (CASE_A, CASE_B, CASE_C, CASE_D):
        rows = [r for r in b.rows if r.case == case]
        if rows:
            parts += [f"## {case}", "", tool_table(rows), ""]
    per_light = per_light_table(b.rows)
    if per_light:
        parts += [
            "## Time per light: ((c) - (d)) / 8",
            "",
            per_light,
            "",
            f"Each tool's wall time for {N_LIGHTS} lights less its time for {N_FEW_LIGHTS}, over the "
            f"{N_LIGHTS - N_FEW_LIGHTS} lights between: what one more light costs once the process has "
            "started and read its masters (both are in (c)).",
            "",
        ]
    if any(r.case != CASE_E for r in b.rows):
        parts += [NOTES.format(baseline=LAUNCHER.baseline_mib if LAUNCHER else math.nan), ""]
    if b.rss_rows:
        parts += [
            "## Scaling: ccdcal master bias, peak RSS vs number of frames",
            "",
            rss_table(b.rss_rows),
            "",
            "memory_limit_mb 1024 (default), threads 2. raw data = N x frame as uint16 on disk.",
            "",
        ]
    night = [r for r in b.rows if r.case == CASE_E]
    if night:
        parts += [
            f"## {CASE_E}: raw frames to calibrated lights, two filters, overscan, scaled darks",
            "",
            whole_night_table(night),
            "",
            NIGHT_NOTES.format(**NIGHT_CALS, overscan=NIGHT_OVERSCAN, exptime=NIGHT_DARK_EXPTIME),
            "",
        ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2048^2 only, smaller N (RSS 10/30/60 frames, nights of 10/50/100 lights)"
    )
    parser.add_argument(
        "--workdir", default="/tmp/ccdcal-bench", help="synthetic frames and runs (default %(default)s)"
    )
    parser.add_argument("--out", default=str(HERE / "results.md"), help="markdown report (default %(default)s)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="best of N runs per measurement, runs over 30 s once (default %(default)s)",
    )
    parser.add_argument(
        "--skip-ccdproc-above", type=int, metavar="SIZE", help="do not run ccdproc on frames larger than SIZE^2"
    )
    parser.add_argument(
        "--git-ref",
        metavar="REF",
        help="benchmark the committed tree REF (git archive into the workdir) instead of the "
        "working tree, e.g. HEAD: immune to edits made while the benchmark runs",
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="frame sizes of (a)-(c), overriding the mode's")
    parser.add_argument("--rss-frames", type=int, nargs="*", help="N of the RSS scaling rows (none: skip)")
    parser.add_argument("--rss-size", type=int, help="frame size of the RSS scaling rows")
    parser.add_argument("--nights", type=int, nargs="*", help="lights per whole night (e) (none: skip)")
    parser.add_argument("--night-sizes", type=int, nargs="+", help="frame sizes of the whole nights (e)")
    parser.add_argument(
        "--ccdproc-night-max",
        type=int,
        default=CCDPROC_NIGHT_MAX,
        metavar="N",
        help="run ccdproc on whole nights of at most N lights (default %(default)s)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=list(CASES),
        help="what to measure: (a) bias, (b) masters, (c)+(d) lights, RSS scaling, (e) nights (default all)",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    for key in ("sizes", "rss_frames", "rss_size", "nights", "night_sizes"):
        if getattr(args, key) is None:
            setattr(args, key, mode[key])
    if " " in str(Path(args.workdir).resolve()):
        parser.error("--workdir must not contain spaces (Siril script paths)")
    return args


def ensure_data(b: Bench) -> None:
    """Write the synthetic frames every part of the run needs (once, reused afterwards)."""
    counts: dict[int, dict[str, int]] = {}
    if set(b.args.cases) & {"bias", "masters", "lights"}:
        for size in b.args.sizes:
            counts[size] = {**MASTER_SET, "light": N_LIGHTS}
    if b.args.rss_frames and "rss" in b.args.cases:
        need = counts.setdefault(b.args.rss_size, {})
        need["bias"] = max(need.get("bias", 0), *b.args.rss_frames)
    for size, need in counts.items():
        b.pool(size).ensure(need)
        patterns.cache_clear()
    if b.args.nights and "nights" in b.args.cases:
        for size in b.args.night_sizes:
            fitting = [n for n in b.args.nights if not night_too_big(b, size, n)]
            b.pool(size, night=True).ensure({**NIGHT_CALS, "light": max(fitting, default=0)})
            patterns.cache_clear()


def main(argv: Sequence[str]) -> int:
    global LAUNCHER, SOURCE
    if argv[:1] == ["task"]:
        TASKS[argv[1]](**json.loads(argv[2]))
        return 0
    if argv[:1] == ["launcher"]:
        Launcher.serve()
        return 0
    args = parse_args(argv)
    work = Path(args.workdir).resolve()
    SOURCE = exported(args.git_ref, work) if args.git_ref else working_tree()
    LAUNCHER = Launcher()  # after PYTHONPATH is set: every measured command inherits it
    b = Bench(args, work)
    start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    ensure_data(b)
    for size in args.sizes:
        for name, case in (("bias", case_bias), ("masters", case_masters), ("lights", case_lights)):
            if name in args.cases:
                log(f"{case.__doc__.splitlines()[0]} at {size}^2")
                case(b, size)
    if args.rss_frames and "rss" in args.cases:
        log(f"RSS scaling at {args.rss_size}^2")
        bench_rss(b, args.rss_size, args.rss_frames)
    if args.nights and "nights" in args.cases:
        for size in args.night_sizes:
            for n in args.nights:
                log(f"(e) whole night of {n} lights at {size}^2")
                case_night(b, size, n)
    shutil.rmtree(b.work / "runs", ignore_errors=True)
    LAUNCHER.close()
    b.write_report(final=True)
    log(f"done in {time.perf_counter() - start:.0f} s; report in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
