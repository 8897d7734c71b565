"""The portable I/O paths (ccdcal.platform_io): where the system has no os.preadv, O_DIRECT,
posix_fadvise or fcntl (macOS, Windows), or CCDCAL_PORTABLE_IO is set, ccdcal still
imports, reads the same values and writes the same bytes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, run_snakemake, tree_digests

from ccdcal import output_dir, platform_io
from ccdcal.frames import FrameError, RawFrame
from ccdcal.products import write_product
from ccdcal.writers import BackgroundWriter, write_fits_atomic

SRC = str(REPO / "src")


def portable(monkeypatch) -> None:
    """Every portable path, as CCDCAL_PORTABLE_IO=1 or a system without the fast ones gives."""
    for flag in ("POSITIONAL_READS", "DIRECT_WRITES", "FADVISE", "FLOCK"):
        monkeypatch.setattr(platform_io, flag, False)
    monkeypatch.setattr(platform_io, "FORCED", True)


def no_fast_calls(monkeypatch) -> None:
    """Fail on any use of a fast path (preadv, O_DIRECT, posix_fadvise, flock)."""
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        assert not flags & getattr(os, "O_DIRECT", 0), "O_DIRECT used on the portable path"
        return real_open(path, flags, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("a fast path was used on the portable path")

    monkeypatch.setattr(os, "open", open_)
    for name in ("preadv", "pread", "posix_fadvise"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse)
    if platform_io.fcntl is not None:
        monkeypatch.setattr(platform_io.fcntl, "flock", refuse)


# ------------------------------------------------------------------ importing
IMPORT_WITHOUT = textwrap.dedent(
    """
    import importlib.abc, os, sys

    class NoFcntl(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fcntl":
                raise ImportError("No module named 'fcntl' (simulated)")
            return None

    sys.modules.pop("fcntl", None)
    sys.meta_path.insert(0, NoFcntl())
    for name in ("preadv", "pread", "pwrite", "O_DIRECT", "posix_fadvise", "POSIX_FADV_DONTNEED"):
        if hasattr(os, name):
            delattr(os, name)
    try:
        import fcntl
    except ImportError:
        pass
    else:
        raise SystemExit("the stub did not hide fcntl")

    from ccdcal import Calibrator  # noqa: F401
    import ccdcal.frames, ccdcal.lights, ccdcal.masters, ccdcal.output_dir, ccdcal.writers  # noqa: F401
    from ccdcal import platform_io

    print(platform_io.describe())
    assert not (platform_io.POSITIONAL_READS or platform_io.DIRECT_WRITES or platform_io.FADVISE)
    assert not platform_io.FLOCK and platform_io.fcntl is None

    # and it works: a frame written around the (absent) page cache paths, read back, claimed
    import numpy as np
    from astropy.io import fits
    from ccdcal.frames import RawFrame
    from ccdcal.output_dir import claim
    from ccdcal.writers import write_fits_atomic

    folder = sys.argv[1]
    data = (np.arange(60 * 40).reshape(60, 40) % 65536).astype(np.uint16)
    write_fits_atomic(fits.HDUList([fits.PrimaryHDU(data)]), folder + "/frame.fits", drop_cache=True)
    with RawFrame(folder + "/frame.fits") as frame:
        assert np.array_equal(frame.read(), data.astype(np.float32))
        assert np.array_equal(frame.read(slice(5, 9)), data[5:9].astype(np.float32))
    assert claim(folder + "/out") is False
    print("ok")
    """
)


def test_ccdcal_imports_and_works_without_fcntl_preadv_pread_o_direct_fadvise(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("CCDCAL_PORTABLE_IO", None)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT, str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["reads: file objects, writes: plain, output_dir lock: none", "ok"]
    assert "is not locked (this system has no fcntl.flock)" in done.stderr


@pytest.mark.parametrize("value, forced", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_the_switch_is_the_environment_variable(value, forced):
    env = {**os.environ, "PYTHONPATH": SRC, "CCDCAL_PORTABLE_IO": value}
    code = "from ccdcal import platform_io as p; print(p.FORCED, p.POSITIONAL_READS, p.describe())"
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    if forced:
        assert said.startswith("True False ") and said.strip().endswith("output_dir lock: none (CCDCAL_PORTABLE_IO)")
    else:  # this machine (Linux, CI) has the fast paths
        assert said.startswith("False True reads: preadv, writes: O_DIRECT") and "lock: flock" in said


# ------------------------------------------------------------------ reading
def raw_files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    shape = (123, 77)
    u16 = fits.PrimaryHDU(rng.integers(0, 65535, shape).astype(np.uint16))  # BITPIX 16, BZERO 32768
    scaled = fits.PrimaryHDU(rng.normal(100, 300, shape).astype(np.float32))
    scaled.scale("int16", bscale=0.5, bzero=100.0)  # BSCALE 0.5, as some cameras write
    extension = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(rng.normal(0, 1, shape).astype(np.float32))])
    paths = []
    for name, hdul in (
        ("u16.fits", fits.HDUList([u16])),
        ("f64.fits", fits.HDUList([fits.PrimaryHDU(rng.normal(5, 2, shape))])),
        ("ext.fits", extension),
        ("scaled.fits", fits.HDUList([scaled])),
    ):
        hdul.writeto(folder / name)
        paths.append(folder / name)
    return paths


def read_all(path: Path) -> dict:
    """Every kind of read of ``path``: whole, row ranges, into ``out``, hashed, from threads."""
    got = {}
    with RawFrame(path) as frame:
        got["whole"] = frame.read()
        got["rows"] = [frame.read(slice(a, b)) for a, b in ((0, 1), (7, 50), (100, 123), (120, 500), (5, 5))]
        out = np.empty((10, frame.shape[1]), np.float32)
        got["out"] = frame.read(slice(30, 40), out=out).copy()
        results = [None] * 8

        def read(i):
            results[i] = frame.read(slice(i * 15, i * 15 + 15))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got["threads"] = np.concatenate(results)
    with RawFrame(path, digest_on_read=True) as frame:
        got["hashed"] = frame.read()
        got["digest"] = frame.digest()
    return got


def test_raw_frames_read_the_same_values_through_file_objects(tmp_path, monkeypatch):
    paths = raw_files(tmp_path)
    fast = [read_all(p) for p in paths]
    portable(monkeypatch)
    no_fast_calls(monkeypatch)
    slow = [read_all(p) for p in paths]
    for path, a, b in zip(paths, fast, slow, strict=True):
        assert a["digest"] == b["digest"], path
        for key in ("whole", "out", "threads", "hashed"):
            assert a[key].dtype == b[key].dtype == np.float32
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path.name} {key}")
        for x, y in zip(a["rows"], b["rows"], strict=True):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(b["threads"], b["whole"][:120])


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_truncated_frame_is_reported_the_same_way_on_the_portable_path(tmp_path, monkeypatch):
    path = raw_files(tmp_path)[0]
    path.write_bytes(path.read_bytes()[:-9000])
    messages = []
    for step in ("fast", "portable"):
        if step == "portable":
            portable(monkeypatch)
        with RawFrame(path) as frame, pytest.raises(FrameError, match="truncated") as raised:
            frame.read()
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


# ------------------------------------------------------------------ writing
def product(shape=(2100, 1100)):
    rng = np.random.default_rng(1)
    image = rng.normal(100, 5, shape).astype(np.float32)
    return image, np.full(shape, 5, np.float32), (rng.random(shape) < 0.01).astype(np.uint8)


def write_every_way(folder: Path) -> dict[str, bytes]:
    """A product and a plain FITS file, by write_fits_atomic (plain, drop_cache) and a BackgroundWriter."""
    folder.mkdir()
    image, uncert, mask = product()
    header = fits.Header({"OBJECT": "M31"})
    write_product(folder / "plain.fits", image, uncert, mask, header)
    write_product(folder / "dropped.fits", image, uncert, mask, header, drop_cache=True)
    with BackgroundWriter(chunks=2) as writer:
        futures = [
            write_product(folder / f"background{i}.fits", image + i, uncert, mask, header, writer=writer)
            for i in range(3)
        ]
    assert [f.result() for f in futures] == [folder / f"background{i}.fits" for i in range(3)]
    hdul = fits.HDUList([fits.PrimaryHDU(image[:50]), fits.ImageHDU(mask[:50], name="MASK")])
    write_fits_atomic(hdul, folder / "atomic.fits", drop_cache=True)
    write_fits_atomic(hdul, folder / "atomic_nosum.fits", checksum=False)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert not [name for name in files if name.endswith(".tmp")]
    return files


def test_write_fits_atomic_and_the_background_writer_write_the_same_bytes_on_both_paths(tmp_path, monkeypatch):
    fast = write_every_way(tmp_path / "fast")
    portable(monkeypatch)
    no_fast_calls(monkeypatch)
    slow = write_every_way(tmp_path / "portable")
    assert fast.keys() == slow.keys() and len(fast) == 7
    for name in fast:
        assert fast[name] == slow[name], name
    assert fast["dropped.fits"] == fast["plain.fits"]


# ------------------------------------------------------------------ the output_dir lock
def test_claim_without_flock_goes_on_unlocked_and_warns_once(tmp_path, monkeypatch, caplog):
    portable(monkeypatch)
    no_fast_calls(monkeypatch)
    monkeypatch.setattr(output_dir, "_HELD", {})
    monkeypatch.setattr(output_dir, "_WARNED_UNLOCKED", False)
    with caplog.at_level(logging.WARNING, logger="ccdcal"):
        assert output_dir.claim(tmp_path / "a", "test") is False
        assert output_dir.claim(tmp_path / "a", "test") is False
        assert output_dir.claim(tmp_path / "b", "test") is False
    warnings = [r.getMessage() for r in caplog.records if "is not locked" in r.getMessage()]
    assert len(warnings) == 1 and "CCDCAL_PORTABLE_IO is set" in warnings[0] and "second ccdcal run" in warnings[0]
    record = json.loads((tmp_path / "a" / output_dir.LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["what"] == "test"
    assert output_dir.is_ccdcal_output(tmp_path / "b")
    for _, (fd, _locked) in output_dir._HELD.items():
        os.close(fd)


def test_a_file_system_that_refuses_flock_is_used_unlocked(tmp_path, monkeypatch, caplog):
    import errno

    if not platform_io.FLOCK:
        pytest.skip("no flock here")

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(platform_io.fcntl, "flock", refuse)
    monkeypatch.setattr(output_dir, "_HELD", {})
    monkeypatch.setattr(output_dir, "_WARNED_UNLOCKED", False)
    with caplog.at_level(logging.WARNING, logger="ccdcal"):
        assert output_dir.claim(tmp_path, "test") is False
    assert "the file system refuses flock (No locks available)" in caplog.text
    os.close(output_dir._HELD[tmp_path.resolve()][0])


def test_with_flock_a_second_claim_is_refused_naming_the_holder(tmp_path, monkeypatch):
    if not platform_io.FLOCK:
        pytest.skip("no flock here")
    monkeypatch.setattr(output_dir, "_HELD", {})
    code = "import sys; from ccdcal.output_dir import claim; print(claim(sys.argv[1], 'holder'), flush=True); input()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        with pytest.raises(output_dir.OutputDirError, match=f"in use by another ccdcal run \\(pid {holder.pid} "):
            output_dir.claim(tmp_path)
    finally:
        holder.communicate("\n")
    assert output_dir.claim(tmp_path) is True
    os.close(output_dir._HELD[tmp_path.resolve()][0])


# ------------------------------------------------------------------ the demo night
def test_the_demo_night_is_byte_identical_with_portable_io(demo_night, tmp_path):
    """CCDCAL_PORTABLE_IO=1 reaches every job (Snakemake passes the environment on): the
    masters, calibrated lights and tables are byte for byte those of the fast paths."""
    out = tmp_path / "out"
    result = run_snakemake(demo_night["raw"], out, env={"CCDCAL_PORTABLE_IO": "1"})
    assert "is not locked (CCDCAL_PORTABLE_IO is set)" in result.stderr
    fast, slow = tree_digests(demo_night["out"]), tree_digests(out)
    assert len(fast) > 20 and any(k.startswith("masters/") for k in fast)
    assert any(k.startswith("calibrated/") for k in fast)
    assert fast == slow
    job_logs = [p for p in (out / "logs").rglob("*.log") if "I/O paths:" in p.read_text(errors="replace")]
    assert len(job_logs) > 5  # every job took the portable paths
    for log_file in job_logs:
        assert "I/O paths: reads: file objects, writes: plain" in log_file.read_text(), log_file
