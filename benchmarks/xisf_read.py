"""What reading a raw light from XISF costs against reading it from FITS, one run.

    .venv/bin/python benchmarks/xisf_read.py [--size 4096] [--repeat 5] [--workdir DIR]

Writes one synthetic uint16 light of size² pixels (sky ~1000 ADU with noise, fixed seed)
as FITS (BITPIX 16, BZERO 32768, as cameras write it) and as XISF with the ``xisf``
package (the test-only dependency): uncompressed, and zlib, lz4, lz4hc, zstd with byte
shuffling. Then times, best of ``--repeat`` (page cache warm), what a light job does to
get the pixels: ``frames.open_frame(path).read()`` (float32 ADU), and the whole-file read
that hashes it (``digest_on_read``). Prints a markdown table: seconds, ratio to FITS in
this run, file size.
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

from ccdcal.frames import open_frame  # noqa: E402

CODECS = [("uncompressed", None, False), *((f"{c}+shuffle", c, True) for c in ("zlib", "lz4", "lz4hc", "zstd"))]


def best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from xisf import XISF

    rng = np.random.default_rng(1)
    data = np.clip(rng.normal(1000, 30, (args.size, args.size)), 0, 65535).astype(np.uint16)
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        work = Path(work)
        files = {"FITS": work / "light.fits"}
        fits.PrimaryHDU(data).writeto(files["FITS"])  # astropy writes uint16 as BITPIX 16, BZERO 32768
        for name, codec, shuffle in CODECS:
            files[f"XISF {name}"] = path = work / f"light_{name}.xisf"
            XISF.write(str(path), data[..., None], creator_app="ccdcal benchmark", codec=codec, shuffle=shuffle)
        rows = []
        for label, path in files.items():

            def read(path=path):
                with open_frame(path) as frame:
                    out = frame.read()
                assert np.array_equal(out, data)

            def hashed(path=path):
                with open_frame(path, digest_on_read=True) as frame:
                    frame.read()
                    frame.digest()

            rows.append((label, best(read, args.repeat), best(hashed, args.repeat), path.stat().st_size))
    base_read, base_hashed = rows[0][1], rows[0][2]
    print(f"{args.size}x{args.size} uint16, best of {args.repeat}, page cache warm\n")
    print("| file | read (s) | vs FITS | read + sha256 (s) | vs FITS | size (MB) |")
    print("|---|---|---|---|---|---|")
    for label, read, hashed, size in rows:
        print(
            f"| {label} | {read:.3f} | {read / base_read:.2f} | {hashed:.3f} | {hashed / base_hashed:.2f} "
            f"| {size / 1e6:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
