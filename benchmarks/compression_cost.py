"""What compressed outputs cost: file size, write and read time, none vs rice vs gzip.

    .venv/bin/python benchmarks/compression_cost.py [--sizes 2048 4096] [--repeat 3] [--workdir DIR]

A simulated calibrated light (sky 800 ADU, 600 stars per 2048^2, Poisson and read noise;
UNCERT from the data; a sparse MASK) is written with ``write_product`` as the light jobs
write it (``consume``, ``drop_cache``; no checksums, output.checksum's default), at the
default quantize_level, and read back with ``read_product``. Times are the best of
``--repeat`` (wall clock, one thread); the size is relative to the uncompressed file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ccdcal.products import BADPIX, DEFAULT_QUANTIZE_LEVEL, compressed_name, read_product, write_product  # noqa: E402
from ccdcal.simulate import render_stars  # noqa: E402

GAIN, READ_NOISE_E, SKY = 1.5, 9.0, 800.0


def make_light(n: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    stars = 600 * (n // 2048) ** 2
    model = SKY + render_stars(
        (n, n), rng.uniform(0, n, stars), rng.uniform(0, n, stars), 10 ** rng.uniform(1.5, 4.5, stars), 3.5
    )
    image = (rng.poisson(model * GAIN) / GAIN + rng.normal(0, READ_NOISE_E / GAIN, (n, n))).astype(np.float32)
    uncert = np.sqrt(np.maximum(image, 0) / GAIN + (READ_NOISE_E / GAIN) ** 2).astype(np.float32)
    mask = np.zeros((n, n), np.uint8)
    mask[rng.integers(0, n, n), rng.integers(0, n, n)] = BADPIX
    header = fits.Header()
    header["OBJECT"] = "benchmark"
    return image, uncert, mask, header


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def table(sizes, repeat: int, workdir: Path) -> str:
    lines = [
        f"quantize_level {DEFAULT_QUANTIZE_LEVEL:g}, best of {repeat}",
        "",
        "| size | compression | file MB | of none | write s | read s | noise added / sigma |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        image, uncert, mask, header = make_light(n)
        good = np.isfinite(image)
        plain_size = None
        for compression in ("none", "rice", "gzip"):
            path = workdir / compressed_name(f"light_{n}_{compression}.fits", compression)

            def write(path=path, compression=compression, planes=(image, uncert, mask, header)):
                write_product(
                    path,
                    planes[0].copy(),
                    planes[1].copy(),
                    planes[2],
                    planes[3],
                    consume=True,
                    checksum=False,
                    drop_cache=True,
                    compression=compression,
                )

            write_s = best_of(repeat, write)
            read_s = best_of(repeat, lambda path=path: read_product(path))
            size = path.stat().st_size
            plain_size = plain_size or size
            added = (read_product(path).data - image)[good] / uncert[good]
            noise = float(np.sqrt(np.mean(added.astype(np.float64) ** 2)))
            lines.append(
                f"| {n}^2 | {compression} | {size / 1e6:.1f} | {size / plain_size:.1%} | {write_s:.2f} | "
                f"{read_s:.2f} | {noise:.4f} |"
            )
            path.unlink()
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where the files are written (a temporary folder)")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        print(table(args.sizes, args.repeat, args.workdir))
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        print(table(args.sizes, args.repeat, Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
