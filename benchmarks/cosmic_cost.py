"""What cosmic-ray detection (ccdcal.cosmic) and cosmetic correction (ccdcal.cosmetic)
cost per light, against calibrating that light with ccdcal's engine, measured in one run.

    .venv/bin/python benchmarks/cosmic_cost.py [--size 4096] [--repeat 3] [--no-threads] [--workdir DIR]

Makes one synthetic light of size² pixels (numpy, fixed seed; nothing is read or
written): sky 800 e-, 8 e- read noise, gain 1.5 e-/ADU, ~1 star per 8000 pixels of FWHM
2-3 px from 10 sigma to near saturation, 1 cosmic-ray event per 16000 pixels
(``simulate.inject_cosmic_rays``), 0.1 % hot pixels flagged BADPIX in the master dark,
bias + dark + vignetted flat. Then times, best of ``--repeat`` (wall and CPU seconds of
this process, so a CPU/wall ratio above 1 is OpenMP at work):

* the baselines: ``Calibration(...).apply`` on the raw light (the arithmetic a light job
  does per light after reading it and before writing it; the masters' preparation, once
  per group, not counted), and ``Calibrator`` on the light as a FITS file (read, overscan
  step skipped, calibrate, write the product with checksums: a light job's whole per-light
  work; files in ``--workdir``, page cache warm);
* ``find_cosmic_rays`` with the defaults, with ``replace``, and with astroscrappy's
  niter=4; ``astroscrappy.detect_cosmics`` alone with its defaults (no ccdcal planes);
* ``correct_cosmetic`` (BADPIX pixels, in place as a pipeline step would, and on copies).

Prints a markdown table with each figure's ratio to the baselines. Unless ``--no-threads``,
a second table from a fresh process with OMP_NUM_THREADS=1: two lights one after the
other against two lights on two Python threads (does astroscrappy release the GIL?), the
same two lights in two processes at once as the control (what the machine's free cores
allow), how far a pure-Python thread gets while astroscrappy runs, against while it does
not, and
the peak of the arrays one ``find_cosmic_rays`` allocates (tracemalloc; numpy reports its
arrays to it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from astropy.io import fits  # noqa: E402

from ccdcal.calibrate import Calibration, subtrahend  # noqa: E402
from ccdcal.products import BADPIX, Product  # noqa: E402
from ccdcal.simulate import SATURATION_ADU, inject_cosmic_rays, render_stars  # noqa: E402

GAIN, READ_NOISE_E, SKY_E, BIAS_ADU, DARK_E = 1.5, 8.0, 800.0, 1000.0, 20.0


def _product(data, uncert, mask=None) -> Product:
    data = np.ascontiguousarray(data, dtype=np.float32)
    uncert = np.broadcast_to(np.float32(uncert), data.shape).copy()
    mask = np.zeros(data.shape, np.uint8) if mask is None else mask
    return Product(Path("synthetic"), data, uncert, mask, fits.Header(), "synthetic")


def make_light(size: int, seed: int = 7):
    """(raw float32 ADU, saturated bool, Calibration, dark and flat Products) for one
    synthetic light."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    y, x = np.ogrid[:size, :size]
    flat = (1 - 0.12 * (((x - size / 2) ** 2 + (y - size / 2) ** 2) / (size / 2) ** 2)).astype(np.float32)
    bias = np.float32(BIAS_ADU) + rng.normal(0, 2, shape).astype(np.float32)
    dark_mask = np.zeros(shape, np.uint8)
    hot = rng.choice(size * size, size * size // 1000, replace=False)
    dark_mask.reshape(-1)[hot] = BADPIX
    dark_e = np.full(shape, DARK_E, np.float32)
    dark_e.reshape(-1)[hot] = rng.uniform(300, 5000, hot.size)
    n_stars = size * size // 8000
    noise_e = np.sqrt(SKY_E + READ_NOISE_E**2)
    full_e = (SATURATION_ADU - BIAS_ADU) * GAIN * 0.9
    stars = render_stars(
        shape,
        rng.uniform(5, size - 5, n_stars),
        rng.uniform(5, size - 5, n_stars),
        np.exp(rng.uniform(np.log(10 * noise_e), np.log(full_e), n_stars)),
        rng.uniform(2.0, 3.0, n_stars),
    )
    electrons = rng.poisson(flat * (SKY_E + stars) + dark_e).astype(np.float32)
    electrons += rng.normal(0, READ_NOISE_E, shape).astype(np.float32)
    inject_cosmic_rays(electrons, rng, size * size // 16000)
    raw = np.clip(np.rint(bias + electrons / GAIN), 0, SATURATION_ADU).astype(np.float32)
    saturated = raw >= SATURATION_ADU
    dark = _product(bias + dark_e / GAIN, 0.5, dark_mask)
    flat = _product(flat, 0.002)
    calibration = Calibration(subtrahend(None, dark, "unscaled", 1.0), flat, GAIN, READ_NOISE_E / GAIN)
    return raw, saturated, calibration, dark, flat


def calibrator_files(workdir: Path, raw: np.ndarray, dark: Product, flat: Product):
    """A raw light file, master files and a ``Calibrator`` for them (masters loaded)."""
    from ccdcal.calibrator import Calibrator
    from ccdcal.products import write_product

    workdir.mkdir(parents=True, exist_ok=True)
    header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 60.0})
    fits.PrimaryHDU(raw.astype(np.uint16), header=header).writeto(workdir / "light.fits", overwrite=True)
    write_product(workdir / "dark.fits", dark.data, dark.uncert, dark.mask, fits.Header({"EXPTIME": 60.0}))
    write_product(workdir / "flat.fits", flat.data, flat.uncert, flat.mask, fits.Header(), unit="")
    calibrator = Calibrator(
        master_dark=workdir / "dark.fits",
        master_flat=workdir / "flat.fits",
        dark_mode="unscaled",
        gain=GAIN,
        read_noise=READ_NOISE_E,
    )
    calibrator(workdir / "light.fits", workdir / "calibrated.fits")  # masters read, caches warm
    return calibrator


def best_of(repeat: int, setup, work) -> tuple[float, float]:
    """(wall, cpu) seconds of ``work(setup())``, the quickest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        args = setup()
        wall, cpu = time.perf_counter(), time.process_time()
        work(*args)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main_table(size: int, repeat: int, workdir: Path) -> str:
    import astroscrappy

    from ccdcal.cosmetic import correct_cosmetic
    from ccdcal.cosmic import CosmicSettings, find_cosmic_rays

    raw, saturated, calibration, dark, flat = make_light(size)
    image, uncert, mask = calibration.apply(raw.copy(), saturated)
    kwargs = dict(gain=GAIN, read_noise=READ_NOISE_E, saturation=(SATURATION_ADU - BIAS_ADU) * 0.9)
    found = find_cosmic_rays(image, uncert, mask, **kwargs)
    calibrator = calibrator_files(workdir, raw, dark, flat)
    rows = []

    def row(name, setup, work, note=""):
        wall, cpu = best_of(repeat, setup, work)
        rows.append((name, wall, cpu, note))
        print(f"  {name}: {wall:.3f} s", file=sys.stderr, flush=True)

    row("calibrate: `Calibration.apply` (baseline)", lambda: (raw.copy(),), lambda r: calibration.apply(r, saturated))
    row(
        "calibrate a light file: `Calibrator` (read raw, calibrate, write)",
        lambda: (),
        lambda: calibrator(workdir / "light.fits", workdir / "calibrated.fits"),
        "FITS with checksums, page cache warm",
    )
    row(
        "cosmic rays: `find_cosmic_rays` (defaults)",
        lambda: (),
        lambda: find_cosmic_rays(image, uncert, mask, **kwargs),
        f"{found.flagged} px flagged ({found.dropped} dropped by steps 3-4, {found.grown} grown)",
    )
    row(
        "cosmic rays + `replace` (on copies)",
        lambda: (),
        lambda: find_cosmic_rays(image, uncert, mask, settings={"replace": True}, **kwargs),
    )
    row(
        "cosmic rays, niter=2",
        lambda: (),
        lambda: find_cosmic_rays(image, uncert, mask, settings=CosmicSettings(niter=2), **kwargs),
    )
    row(
        "cosmic rays, niter=4 (astroscrappy's default)",
        lambda: (),
        lambda: find_cosmic_rays(image, uncert, mask, settings=CosmicSettings(niter=4), **kwargs),
    )
    row(
        "`astroscrappy.detect_cosmics` alone, its defaults",
        lambda: (),
        lambda: astroscrappy.detect_cosmics(image, inmask=mask != 0, gain=GAIN, readnoise=READ_NOISE_E),
    )
    n_bad = int(np.count_nonzero(mask & BADPIX))
    row(
        "cosmetic correction, in place",
        lambda: (image.copy(), uncert.copy()),
        lambda i, u: correct_cosmetic(i, u, mask, inplace=True),
        f"{n_bad} BADPIX px ({100 * n_bad / mask.size:.2f} %)",
    )
    row("cosmetic correction, on copies", lambda: (), lambda: correct_cosmetic(image, uncert, mask))

    base, light = rows[0][1], rows[1][1]
    lines = [
        f"Per {size}² light, best of {repeat}; {os.cpu_count()} cores, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        "| step | wall s | CPU s | × `apply` | × `Calibrator` | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, wall, cpu, note in rows:
        lines.append(f"| {name} | {wall:.3f} | {cpu:.2f} | {wall / base:.1f} | {wall / light:.2f} | {note} |")
    return "\n".join(lines)


def threads_probe(size: int) -> dict:
    """Run in a fresh process with OMP_NUM_THREADS=1 (libgomp reads it once)."""
    import threading
    import tracemalloc
    from concurrent.futures import ThreadPoolExecutor

    from ccdcal.cosmic import find_cosmic_rays

    raw, saturated, calibration, _, _ = make_light(size)
    image, uncert, mask = calibration.apply(raw.copy(), saturated)
    kwargs = dict(gain=GAIN, read_noise=READ_NOISE_E, saturation=(SATURATION_ADU - BIAS_ADU) * 0.9)
    run = lambda _=None: find_cosmic_rays(image, uncert, mask, **kwargs)  # noqa: E731
    tracemalloc.start()  # numpy's arrays (astroscrappy's work planes are numpy arrays)
    start = time.perf_counter()
    run()
    one = time.perf_counter() - start
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    start = time.perf_counter()
    run(), run()
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, range(2)))
    threaded = time.perf_counter() - start
    # the control: the same two lights in two processes at once (no GIL to share)
    np.savez(Path(tempfile.gettempdir()) / "ccdcal-cosmic-probe.npz", image=image, uncert=uncert, mask=mask)
    child = [sys.executable, __file__, "--probe-child"]
    start = time.perf_counter()
    subprocess.run(child, check=True, env=dict(os.environ))
    one_process = time.perf_counter() - start
    start = time.perf_counter()
    for process in [subprocess.Popen(child, env=dict(os.environ)) for _ in range(2)]:
        if process.wait():
            raise RuntimeError("probe child failed")
    two_processes = time.perf_counter() - start

    def spin_for(seconds: float, work=None) -> int:
        """Loops a pure-Python thread makes in ``seconds`` (while ``work`` runs)."""
        count, stop = [0], threading.Event()

        def spin():
            while not stop.is_set():
                count[0] += 1

        thread = threading.Thread(target=spin)
        thread.start()
        if work is None:
            time.sleep(seconds)
        else:
            work()
        stop.set()
        thread.join()
        return count[0]

    start = time.perf_counter()
    busy = spin_for(0, run)
    busy_seconds = time.perf_counter() - start
    idle = spin_for(busy_seconds)
    return {
        "one": one,
        "sequential": sequential,
        "threaded": threaded,
        "peak_mb": peak_mb,
        "spin_busy": busy / busy_seconds,
        "spin_idle": idle / busy_seconds,
        "one_process": one_process,
        "two_processes": two_processes,
    }


def probe_child() -> None:
    """One find_cosmic_rays on the probe's light (imports and loading included)."""
    from ccdcal.cosmic import find_cosmic_rays

    planes = np.load(Path(tempfile.gettempdir()) / "ccdcal-cosmic-probe.npz")
    find_cosmic_rays(
        planes["image"],
        planes["uncert"],
        planes["mask"],
        gain=GAIN,
        read_noise=READ_NOISE_E,
        saturation=(SATURATION_ADU - BIAS_ADU) * 0.9,
    )


def threads_table(size: int) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    out = subprocess.run(
        [sys.executable, __file__, "--probe", "--size", str(size)], env=env, check=True, capture_output=True, text=True
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return "\n".join(
        [
            f"Threads (fresh process, OMP_NUM_THREADS=1, {size}² lights):",
            "",
            "| measure | value |",
            "| --- | ---: |",
            f"| one `find_cosmic_rays`, s | {r['one']:.2f} |",
            f"| two lights one after the other, s | {r['sequential']:.2f} |",
            f"| two lights on two Python threads, s | {r['threaded']:.2f} |",
            f"| speed-up of the threads | {r['sequential'] / r['threaded']:.2f} |",
            f"| control: one light in a fresh process, s | {r['one_process']:.2f} |",
            f"| control: two lights in two processes at once, s | {r['two_processes']:.2f} |",
            f"| speed-up of the processes | {2 * r['one_process'] / r['two_processes']:.2f} |",
            f"| a pure-Python thread's loops/s while astroscrappy runs, vs idle | "
            f"{r['spin_busy'] / r['spin_idle']:.2f} |",
            f"| peak memory allocated by one `find_cosmic_rays` (tracemalloc), MB | {r['peak_mb']:.0f} |",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-threads", action="store_true", help="skip the threads table")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ccdcal-cosmic-cost",
        help="where the Calibrator baseline's files go (~%(default)s)",
    )
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(threads_probe(args.size)))
        return 0
    if args.probe_child:
        probe_child()
        return 0
    print(main_table(args.size, args.repeat, args.workdir))
    if not args.no_threads:
        print()
        print(threads_table(args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
