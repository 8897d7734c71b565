"""A library of masters across nights: matching rules, reasons, reuse, policies.

Night 1 (2026-01-10) has biases, darks and flats at -10 C, with darkflats 2.5 h before and
1.5 h after the flats; night 2 only lights and flats; night 3 lights at -15 C (no dark
within tolerance); night 4 a light 200 days after the darks. Frames follow a known model
(bias pattern, dark current with hot pixels, vignetted flat), so calibrated lights are
checked against the truth.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake

SHAPE = (96, 128)
GAIN, READ_NOISE = 1.0, 5.0  # e-/ADU, e-
SKY = 400.0  # e- per pixel in a 60 s light


def truth():
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    bias = 500.0 + 3.0 * np.sin(xx / 7.0)
    rate = np.full(SHAPE, 0.5)
    hot = rng.random(SHAPE) < 0.01
    rate[hot] = 20.0
    r2 = ((yy - 48) ** 2 + (xx - 64) ** 2) / 80.0**2
    flat = 1.0 - 0.15 * r2
    flat /= np.median(flat)
    return {"bias": bias, "rate": rate, "flat": flat, "hot": hot}


def dark_rate(model, temperature):
    return model["rate"] * 2.0 ** ((temperature + 10.0) / 6.0)


def write(path: Path, model, kind, when, exptime, temperature, signal=0.0, seed=0):
    rng = np.random.default_rng(seed)
    electrons = rng.poisson(dark_rate(model, temperature) * exptime + model["flat"] * signal)
    data = model["bias"] + (electrons + rng.normal(0, READ_NOISE, SHAPE)) / GAIN
    header = fits.Header(
        {
            "IMAGETYP": kind,
            "EXPTIME": exptime,
            "CCD-TEMP": temperature,
            "DATE-OBS": when.isoformat(timespec="seconds"),
            "FILTER": "R",
            "INSTRUME": "LibCam",
            "EGAIN": GAIN,
            "RDNOISE": READ_NOISE,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.clip(np.round(data), 0, 65535).astype(np.uint16), header=header).writeto(path)


def night(raw: Path, model, day: datetime, *, calibrations: bool, light_temperature=-10.0, n_lights=3):
    seed = int(day.strftime("%j")) * 1000
    at = lambda hours: day + timedelta(hours=hours)  # noqa: E731
    if calibrations:
        for i in range(10):
            write(raw / f"bias/bias_{i}.fits", model, "BIAS", at(18) + timedelta(minutes=i), 0.0, -10.0, seed=seed + i)
        for i in range(8):
            write(
                raw / f"dark/dark60_{i}.fits",
                model,
                "DARK",
                at(18.2) + timedelta(minutes=i),
                60.0,
                -10.0,
                seed=seed + 20 + i,
            )
        for i in range(6):  # darkflats before (16:30) and after (20:30) the flats (19:00)
            write(
                raw / f"darkflat/before_{i}.fits",
                model,
                "DARK",
                at(16.5) + timedelta(minutes=i),
                2.0,
                -10.0,
                seed=seed + 40 + i,
            )
            write(
                raw / f"darkflat/after_{i}.fits",
                model,
                "DARK",
                at(20.5) + timedelta(minutes=i),
                2.0,
                -10.0,
                seed=seed + 50 + i,
            )
    for i in range(8):
        write(
            raw / f"flat/flat_{i}.fits",
            model,
            "FLAT",
            at(19) + timedelta(minutes=i),
            2.0,
            -10.0,
            signal=15000.0,
            seed=seed + 60 + i,
        )
    for i in range(n_lights):
        write(
            raw / f"light/light_{i}.fits",
            model,
            "LIGHT",
            at(21) + timedelta(minutes=2 * i),
            60.0,
            light_temperature,
            signal=SKY,
            seed=seed + 80 + i,
        )


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def residual_noise(out: Path, model) -> list[float]:
    """std((calibrated - truth) / ideal sigma) of each calibrated light."""
    ideal = np.sqrt(READ_NOISE**2 + model["flat"] * SKY + model["rate"] * 60.0) / GAIN / model["flat"]
    ratios = []
    for path in sorted((out / "calibrated" / "light").glob("*.fits")):
        data = fits.getdata(path).astype(np.float64)
        ratios.append(float(np.std((data - SKY / GAIN) / ideal)))
    return ratios


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    base = tmp_path_factory.mktemp("library")
    model = truth()
    library = base / "library"
    days = {
        1: datetime(2026, 1, 10),
        2: datetime(2026, 1, 11),
        3: datetime(2026, 1, 12),
        4: datetime(2026, 1, 10) + timedelta(days=201),
    }
    night(base / "raw1", model, days[1], calibrations=True)
    night(base / "raw2", model, days[2], calibrations=False)
    night(base / "raw3", model, days[3], calibrations=False, light_temperature=-15.0, n_lights=2)
    night(base / "raw4", model, days[4], calibrations=False, n_lights=1)
    skip_darkless = base / "skip.yaml"
    skip_darkless.write_text("missing_calibration: {policy: skip, steps: [dark]}\n")
    runs = {}
    for n in (1, 2, 3, 4):
        extra = ("--configfile", str(skip_darkless)) if n == 3 else ()
        runs[n] = run_snakemake(base / f"raw{n}", base / f"out{n}", f"library_dir={library}", *extra)
    return {"base": base, "model": model, "library": library, "runs": runs}


def matches(nights, n, frame, step):
    rows = read_rows(nights["base"] / f"out{n}" / "matches.csv")
    return {r["candidate"]: (r["source"], r["result"]) for r in rows if r["frame"] == frame and r["step"] == step}


def test_masters_are_filed_by_type_camera_and_date_with_their_setup(nights):
    library = nights["library"]
    filed = sorted(p.relative_to(library).as_posix() for p in library.rglob("*.fits"))
    assert any(p.startswith("bias/LibCam/2026-01-10/bias_LibCam_1x1_-10.0C_") for p in filed)
    assert any(p.startswith("dark/LibCam/2026-01-10/dark_LibCam_1x1_-10.0C_60s_") for p in filed)
    assert sum(p.startswith("dark/LibCam/2026-01-10/dark_LibCam_1x1_-10.0C_2s_") for p in filed) == 2
    assert any(p.startswith("flat/LibCam/2026-01-11/flat_LibCam_1x1_R_") for p in filed)
    header = fits.getheader(next(library.glob("dark/LibCam/2026-01-10/dark_LibCam_1x1_-10.0C_60s_*.fits")))
    for key in (
        "CAMERA",
        "INSTRUME",
        "XBINNING",
        "YBINNING",
        "CCD-TEMP",
        "EXPTIME",
        "DATE-BEG",
        "DATE-END",
        "NCOMBINE",
        "MASTERID",
    ):
        assert key in header, key
    assert header["NCOMBINE"] == 8 and header["DATE-BEG"].startswith("2026-01-10T18:12")


def test_flats_use_the_later_darkflat(nights):
    rows = matches(nights, 1, "flat/flat_0.fits", "dark")
    used = [name for name, (_, result) in rows.items() if result.startswith("used (unscaled")]
    assert len(used) == 1 and used[0].endswith("_20260110T2030")
    before = next(name for name in rows if name.endswith("_20260110T1630"))
    assert rows[before][1].startswith("not preferred")
    assert rows["dark_LibCam_1x1_-10.0C_60s"][1] == "not preferred: a darkflat is preferred to a scaled dark"


def test_night_two_uses_the_library_and_tonights_flat(nights):
    bias = matches(nights, 2, "light/light_0.fits", "bias")
    dark = matches(nights, 2, "light/light_0.fits", "dark")
    flat = matches(nights, 2, "light/light_0.fits", "flat")
    (used_dark,) = [n for n, (_, r) in dark.items() if r.startswith("used")]
    assert used_dark.startswith("dark_LibCam_1x1_-10.0C_60s_") and dark[used_dark][0].startswith("library:")
    assert dark[used_dark][1] == "used (unscaled, x1)"
    assert not bias  # an unscaled dark includes the bias: no bias was needed
    assert flat["flat_LibCam_1x1_R"] == ("tonight", "used")
    (library_flat,) = [n for n in flat if n != "flat_LibCam_1x1_R"]
    assert flat[library_flat][1] == "not preferred: tonight's master preferred"
    assert not (nights["base"] / "out2" / "masters" / f"{used_dark}.fits").exists()  # used in place
    # calibrated as well as night 1 with its own same-night masters
    model = nights["model"]
    same_night, from_library = (
        residual_noise(nights["base"] / "out1", model),
        residual_noise(nights["base"] / "out2", model),
    )
    assert len(same_night) == 3 and len(from_library) == 3
    assert all(0.97 < r < 1.04 for r in same_night + from_library), (same_night, from_library)
    assert abs(np.mean(from_library) - np.mean(same_night)) < 0.02


def test_night_three_has_no_dark_at_minus_15_and_skips_its_lights(nights):
    dark = matches(nights, 3, "light/light_0.fits", "dark")
    reasons = {r for _, r in dark.values()}
    assert "rejected: temperature -10.0 C outside -15.0 C +-1 C" in reasons
    summary = {r["path"]: r for r in read_rows(nights["base"] / "out3" / "summary.csv")}
    light = summary["light/light_0.fits"]
    assert light["status"] == "skipped" and "no dark" in light["detail"]
    assert not (nights["base"] / "out3" / "calibrated" / "light" / "light_0.fits").exists()


def test_a_light_200_days_later_rejects_old_masters_by_age(nights):
    dark = matches(nights, 4, "light/light_0.fits", "dark")
    assert {r for _, r in dark.values()} >= {"rejected: age 201 d > 180 d"}
    summary = {r["path"]: r for r in read_rows(nights["base"] / "out4" / "summary.csv")}
    assert "NODARK" in summary["light/light_0.fits"]["flags"]  # default policy: calibrated, flagged


def test_an_identical_master_is_reused_never_rebuilt(nights, tmp_path):
    import shutil

    library = tmp_path / "library"  # its own copy: other tests count the shared library's files
    shutil.copytree(nights["library"], library)
    before = sorted(p.name for p in library.rglob("*.fits"))
    out = tmp_path / "again"
    result = run_snakemake(nights["base"] / "raw1", out, f"library_dir={library}")
    log = result.stdout + result.stderr
    built = [p for p in (out / "logs" / "masters").glob("*.log") if "combined" in p.read_text()]
    assert not built, f"rebuilt: {built}"
    assert all("identical to library master" in p.read_text() for p in (out / "logs" / "masters").glob("*.log"))
    assert sorted(p.name for p in library.rglob("*.fits")) == before  # not duplicated
    for path in (nights["base"] / "out1" / "calibrated").rglob("*.fits"):
        again = out / "calibrated" / path.relative_to(nights["base"] / "out1" / "calibrated")
        assert again.read_bytes() == path.read_bytes()
    assert "rule file_in_library" not in log
    # the same command again: the copies stay copies (it rebuilt them all, and the lights)
    copies = {p: p.stat().st_mtime_ns for p in (out / "masters").glob("*.fits")}
    rerun = run_snakemake(nights["base"] / "raw1", out, f"library_dir={library}")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr, rerun.stderr[-6000:]
    assert {p: p.stat().st_mtime_ns for p in copies} == copies


def test_a_new_dark_rebuilds_only_that_master_and_what_uses_it(nights, tmp_path):
    import shutil

    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(nights["base"] / "raw1", raw)
    run_snakemake(raw, out)  # no library: tonight's masters only
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "masters").glob("*.fits")}
    write(raw / "dark/dark60_extra.fits", nights["model"], "DARK", datetime(2026, 1, 10, 18, 20), 60.0, -10.0, seed=999)
    log = run_snakemake(raw, out).stderr
    changed = {name for name, t in mtimes.items() if (out / "masters" / name).stat().st_mtime_ns != t}
    assert changed == {"dark_LibCam_1x1_-10.0C_60s.fits"}, changed
    assert "rule calibrate_lights" in log  # the lights use that dark
    header = fits.getheader(out / "masters" / "dark_LibCam_1x1_-10.0C_60s.fits")
    assert header["NCOMBINE"] == 9


# ------------------------------------------------------------ damaged library files
def library_master(
    library: Path, kind: str, when: str, identity: str, exptime: float = 0.0, checksum: bool = True
) -> Path:
    """A master filed as the workflow files it (camera 'cam', 1x1, -10 C, 100 x 120 pixels)."""
    from ccdcal.products import write_product

    rng = np.random.default_rng(int(identity, 16) % 1000)
    header = fits.Header(
        {
            "CCDCALTY": kind,
            "MASTERID": identity,
            "CAMERA": "cam",
            "EXPTIME": exptime,
            "CCD-TEMP": -10.0,
            "DATE-BEG": when,
            "DATE-END": when,
            "NCOMBINE": 5,
        }
    )
    path = library / kind / "cam" / when[:10] / f"{kind}_cam_1x1_-10.0C_{identity}.fits"
    image = rng.normal(500.0, 3.0, (100, 120)).astype(np.float32)
    write_product(
        path, image, np.full(image.shape, 1.0, np.float32), np.zeros(image.shape, np.uint8), header, checksum=checksum
    )
    return path


def truncate(path: Path, by: int) -> tuple[int, int]:
    """Cut ``by`` bytes off the end; (size now, size before)."""
    whole = path.read_bytes()
    path.write_bytes(whole[:-by])
    return len(whole) - by, len(whole)


def flip_a_byte(path: Path, hdu: int) -> None:
    """Change one bit in the data of HDU ``hdu``, the size kept."""
    with fits.open(path) as hdul:
        where = hdul.fileinfo(hdu)["datLoc"] + 1001
    data = bytearray(path.read_bytes())
    data[where] ^= 0x08
    path.write_bytes(bytes(data))


def record(path: str, kind: str, exptime: float, when: str):
    from ccdcal.inventory import FrameRecord
    from ccdcal.library import iso_to_seconds

    return FrameRecord(
        path=path,
        status="ok",
        frame_type=kind,
        camera="cam",
        exptime=exptime,
        temperature_c=-10.0,
        binning="1x1",
        shape="100x120",
        date_obs=when,
        time_s=iso_to_seconds(when),
    )


def test_verify_master_tells_a_whole_file_from_a_truncated_a_changed_or_an_unsummed_one(tmp_path):
    from ccdcal.library import verify_master

    files = {
        name: library_master(
            tmp_path, "bias", f"2026-01-0{i + 1}T18:00:00", f"{i + 1:016x}", checksum=name != "no checksum"
        )
        for i, name in enumerate(["whole", "truncated", "flipped", "no checksum"])
    }
    now, before = truncate(files["truncated"], 5000)
    flip_a_byte(files["flipped"], 1)
    assert verify_master(files["whole"]) is None
    assert verify_master(files["truncated"]) == f"truncated: {now} bytes, the headers need {before}"
    assert verify_master(files["flipped"]) == "checksum mismatch in HDU UNCERT"
    assert verify_master(files["no checksum"]) == "no checksum in HDU PRIMARY"


def test_damaged_library_masters_are_rejected_with_the_reason_and_the_next_best_used(
    tmp_path, camera_profile, make_config
):
    """The two darks nearest in time are damaged (cut short; one bit changed): the plan
    says why each is rejected and uses the third."""
    from ccdcal.library import scan_library
    from ccdcal.plan import make_plan

    library = tmp_path / "library"
    truncated = library_master(library, "dark", "2026-01-12T18:00:00", "00000000000000a1", 60.0)
    flipped = library_master(library, "dark", "2026-01-11T18:00:00", "00000000000000a2", 60.0)
    whole = library_master(library, "dark", "2026-01-05T18:00:00", "00000000000000a3", 60.0)
    now, before = truncate(truncated, 3000)
    flip_a_byte(flipped, 0)
    masters = scan_library(library)
    assert {Path(m.file).name: m.damaged for m in masters} == {
        truncated.name: f"truncated: {now} bytes, the headers need {before}",
        flipped.name: "checksum mismatch in HDU PRIMARY",
        whole.name: None,
    }
    light = record("light/l1.fits", "light", 60.0, "2026-01-12T21:00:00")
    plan = make_plan([light], make_config(), {"cam": camera_profile(name="cam")}, masters)
    assert plan["lights"]["light/l1.fits"]["dark"] == whole.stem
    results = {r["candidate"]: r["result"] for r in plan["matches"] if r["step"] == "dark"}
    assert results == {
        truncated.stem: f"rejected: damaged library file (truncated: {now} bytes, the headers need {before})",
        flipped.stem: "rejected: damaged library file (checksum mismatch in HDU PRIMARY)",
        whole.stem: "used (unscaled, x1)",
    }


def test_tonights_master_is_rebuilt_not_linked_to_a_damaged_twin(tmp_path, camera_profile, make_config):
    """A library file with the identity of tonight's master links it (not rebuilt) only
    when whole; a damaged one is rejected, tonight's master is built from its frames and
    is filed at that very path (so the filing writes over the damaged file)."""
    from ccdcal.library import library_path, scan_library
    from ccdcal.plan import make_plan

    records = [record(f"bias/b{i}.fits", "bias", 0.0, f"2026-01-12T18:0{i}:00") for i in range(3)]
    records.append(record("light/l1.fits", "light", 60.0, "2026-01-12T21:00:00"))
    checksums = {r.path: f"{i:064x}" for i, r in enumerate(records)}
    config, cameras, library = make_config(), {"cam": camera_profile(name="cam")}, tmp_path / "library"
    tonight = make_plan(records, config, cameras, [], checksums)["masters"]["bias_cam_1x1_-10.0C"]
    filed = library_path(library, tonight)
    filed.parent.mkdir(parents=True)
    library_master(library, "bias", tonight["date_begin"], tonight["identity"]).rename(filed)

    linked = make_plan(records, config, cameras, scan_library(library), checksums)
    assert linked["masters"]["bias_cam_1x1_-10.0C"]["library_file"] == str(filed.resolve())

    truncate(filed, 3000)
    (twin,) = scan_library(library)
    plan = make_plan(records, config, cameras, [twin], checksums)
    master = plan["masters"]["bias_cam_1x1_-10.0C"]
    assert master["library_file"] is None and master["identity"] == tonight["identity"]
    assert [f["path"] for f in master["frames"]] == [f"bias/b{i}.fits" for i in range(3)]
    assert plan["lights"]["light/l1.fits"]["bias"] == "bias_cam_1x1_-10.0C"
    (row,) = [r for r in plan["matches"] if r["candidate"] == twin.name]
    assert row["result"].startswith("rejected: damaged library file (truncated: ")
    assert library_path(library, master) == Path(twin.file)


def test_each_library_file_is_verified_once_until_it_changes(tmp_path, monkeypatch):
    """With a cache file (the inventory's work/library.json), a rescan verifies no file
    again (verifying a 100 MB master reads it all) until its size or mtime changes."""
    import ccdcal.library as library_module

    real, verified = library_module.verify_master, []
    monkeypatch.setattr(library_module, "verify_master", lambda path: verified.append(Path(path).name) or real(path))
    library, cache = tmp_path / "library", tmp_path / "out" / "work" / "library.json"
    one = library_master(library, "bias", "2026-01-10T18:00:00", "00000000000000b1")
    two = library_master(library, "bias", "2026-01-11T18:00:00", "00000000000000b2")
    first = library_module.scan_library(library, cache)
    assert sorted(verified) == sorted([one.name, two.name]) and cache.exists()
    verified.clear()
    again = library_module.scan_library(library, cache)
    assert verified == [] and [m.damaged for m in again] == [m.damaged for m in first] == [None, None]
    flip_a_byte(two, 2)
    third = library_module.scan_library(library, cache)
    assert verified == [two.name]
    assert {Path(m.file).name: m.damaged for m in third} == {one.name: None, two.name: "checksum mismatch in HDU MASK"}


@pytest.mark.parametrize("damage", ["truncated", "a byte changed"])
def test_a_library_master_damaged_since_the_plan_is_not_copied(tmp_path, damage):
    """master_job verifies its copy of a linked library master: FrameError naming the
    library file and the damage, and no master left behind."""
    from ccdcal.frames import FrameError
    from ccdcal.jobs.build_master import master_job

    source = library_master(tmp_path / "library", "bias", "2026-01-10T18:00:00", "00000000000000c1")
    output = tmp_path / "out" / "masters" / "bias_cam_1x1_-10.0C.fits"
    spec = {"name": "bias_cam_1x1_-10.0C", "type": "bias", "library_file": str(source)}
    master_job(spec, {}, [], str(output), {})
    assert output.read_bytes() == source.read_bytes()
    if damage == "truncated":
        truncate(source, 2880)
    else:
        flip_a_byte(source, 1)
    with pytest.raises(FrameError) as info:
        master_job(spec, {}, [], str(output), {})
    message = str(info.value)
    assert str(source) in message
    assert ("truncated: " if damage == "truncated" else "checksum mismatch in HDU UNCERT") in message
    assert not output.exists() and not any(output.parent.iterdir())


def test_a_damaged_library_master_is_rebuilt_and_filed_again(nights, tmp_path):
    """Night 1 again, against a copy of the library where its 60 s dark is cut short (its
    header, MASTERID included, still readable): the file is rejected, with the reason in
    matches.csv, the dark is rebuilt from the night's frames and filed over the damaged
    file, and the lights come out as the first time (not a reshape error naming no file).
    The workflow's file_in_library rule does write over the damaged file: its input, the
    rebuilt master, is newer."""
    import shutil

    from ccdcal.library import verify_master

    library, out = tmp_path / "library", tmp_path / "out"
    shutil.copytree(nights["library"], library)
    (dark,) = library.glob("dark/LibCam/2026-01-10/dark_LibCam_1x1_-10.0C_60s_*.fits")
    now, before = truncate(dark, 3000)
    result = run_snakemake(nights["base"] / "raw1", out, f"library_dir={library}")
    rows = {
        r["candidate"]: r["result"]
        for r in read_rows(out / "matches.csv")
        if r["frame"] == "light/light_0.fits" and r["step"] == "dark"
    }
    assert rows[dark.stem] == f"rejected: damaged library file (truncated: {now} bytes, the headers need {before})"
    assert rows["dark_LibCam_1x1_-10.0C_60s"] == "used (unscaled, x1)"
    assert "combined" in (out / "logs" / "masters" / "dark_LibCam_1x1_-10.0C_60s.log").read_text()
    assert "rule file_in_library" in result.stdout + result.stderr
    assert verify_master(dark) is None and dark.stat().st_size == before
    first = sorted((nights["base"] / "out1" / "calibrated").rglob("*.fits"))
    assert len(first) == 3
    for path in first:  # the same pixels (headers differ: another library_dir, another config digest)
        with (
            fits.open(path) as was,
            fits.open(out / "calibrated" / path.relative_to(nights["base"] / "out1" / "calibrated")) as now,
        ):
            for plane in ("PRIMARY", "UNCERT", "MASK"):
                np.testing.assert_array_equal(now[plane].data, was[plane].data)
