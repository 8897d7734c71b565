"""A hostile night: the demo simulator's frames with the odd files, odd headers, config
mistakes and failures an unattended observatory meets, through Snakemake as a user runs
it. Every case ends with the night completed for everything that can be completed,
nothing lost, and a message that names the file and the fix.

Most file-level cases share one night (``hostile``, run once, then again to check that a
rerun has nothing to do); the others need a night of their own.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, fault_env, run_snakemake, sha256, small_night, tree_digests

from ccdcal.resources import light_group_memory_mb

# the hostile files make astropy warn as the tests write them; that is their point
pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")

LIGHT = "ccd/lights/NGC7331_R_001.fits"
FLAT = "ccd/flats/flat_R_001.fits"


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def copy_with(raw: Path, source: str, target: str, **cards) -> Path:
    """``source`` (in raw) copied to ``target`` with header cards changed (None: removed);
    the data written back as they were stored."""
    dest = raw / target
    dest.parent.mkdir(parents=True, exist_ok=True)
    with fits.open(raw / source, do_not_scale_image_data=True) as hdul:
        for key, value in cards.items():
            key = key.replace("__", "-")
            if value is None:
                hdul[0].header.remove(key, ignore_missing=True)
            else:
                hdul[0].header[key] = value
        hdul.writeto(dest)
    return dest


def patch_card(path: Path, keyword: str, value_text: str) -> None:
    """Write a raw 80-byte card image for ``keyword`` (whatever bytes it holds) into the file."""
    data = bytearray(path.read_bytes())
    where = data.find(keyword.ljust(8).encode() + b"= ")
    assert 0 <= where < 2880 * 4, keyword
    card = (keyword.ljust(8) + "= ").encode() + value_text.encode("latin-1")
    data[where : where + 80] = card.ljust(80)[:80]
    path.write_bytes(bytes(data))


def compressed_copy(raw: Path, source: str, target: str) -> Path:
    """``source`` written again as a tile-compressed (fpack) file."""
    dest = raw / target
    with fits.open(raw / source) as hdul:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hdul[0].data, header=hdul[0].header)]).writeto(dest)
    return dest


def corrupt_compressed(path: Path) -> None:
    """Garbage over the middle of a compressed file's data: its header reads, its data not."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = (bytes(range(256)) * 16)[:4000]
    path.write_bytes(bytes(data))


def without_dac_override() -> tuple[str, ...]:
    """A command prefix under which root obeys file permissions (a normal user does anyway)."""
    if os.geteuid() != 0:
        return ()
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to test unreadable files as root"
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


# ------------------------------------------------------------------ the shared night
LONG_READOUT = "slow-readout-" * 31  # 403 characters
LONG_FILTER = "Johnson-Cousins-R-" * 167  # 3006 characters


@pytest.fixture(scope="module")
def hostile(demo_raw, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    raw = small_night(demo_raw, base / "raw")
    library = base / "library"
    # 12: braces in names (Snakemake reads {x} as a wildcard)
    shutil.copyfile(raw / LIGHT, raw / "ccd/lights/NGC{1}.fits")
    (raw / "ccd/flats/flat_R_002.fits").rename(raw / "ccd/flats/flat_{x}_R.fits")
    # 13: names that are not ASCII
    shutil.copyfile(raw / "ccd/lights/NGC7331_R_002.fits", raw / "ccd/lights/NGC7331 é 2.fits")
    (raw / "ccd/flats/flat_R_003.fits").rename(raw / "ccd/flats/flat_é_R.fits")
    # 11: control characters in header values
    patch_card(shutil.copyfile(raw / LIGHT, raw / "ccd/lights/ctrl.fits"), "OBJECT", "'NGC\x01 7331\tcore\nx'")
    # 10 and 20: absurd and invalid header values
    copy_with(raw, LIGHT, "ccd/lights/exptime_huge.fits", EXPTIME=1e300)
    copy_with(raw, LIGHT, "ccd/lights/exptime_text.fits", EXPTIME="abc")
    copy_with(raw, LIGHT, "ccd/lights/cold.fits", CCD__TEMP="cold")
    copy_with(raw, LIGHT, "ccd/lights/binning_huge.fits", XBINNING=1e300)
    # 5: one light twice, plain and compressed
    shutil.copyfile(raw / LIGHT, raw / "ccd/lights/pair.fits")
    compressed_copy(raw, "ccd/lights/NGC7331_R_003.fits", "ccd/lights/pair.fits.fz")
    # 15: DATE-OBS with a space, and the old DD/MM/YY form, on second sessions
    for i in (1, 2, 3):
        copy_with(raw, f"ccd/bias/bias_00{i}.fits", f"ccd/bias/dawn_bias_{i}.fits", DATE__OBS=f"2026-11-21 06:0{i}:00")
        copy_with(
            raw,
            f"ccd/flats/flat_R_00{i + 3}.fits",
            f"ccd/flats/old_flat_{i}.fits",
            DATE__OBS="21/11/26",
            TIME__OBS=f"06:1{i}:00",
        )
    # 16: a 400-character readout mode, a 3000-character filter
    for i in (1, 2):
        copy_with(raw, LIGHT, f"ccd/lights/long_readout_{i}.fits", READOUTM=LONG_READOUT)
        copy_with(raw, f"ccd/bias/bias_00{i}.fits", f"ccd/bias/long_readout_{i}.fits", READOUTM=LONG_READOUT)
    copy_with(raw, LIGHT, "ccd/lights/long_filter.fits", FILTER=LONG_FILTER)
    for i in (6, 7, 8):
        copy_with(raw, f"ccd/flats/flat_R_00{i}.fits", f"ccd/flats/long_filter_{i}.fits", FILTER=LONG_FILTER)
    # 14: an unreadable file and an unreadable folder
    locked = shutil.copyfile(raw / LIGHT, raw / "ccd/lights/locked.fits")
    secret = raw / "ccd/secret"
    secret.mkdir()
    shutil.copyfile(raw / LIGHT, secret / "hidden_light.fits")
    locked.chmod(0)
    secret.chmod(0)
    before = {p: sha256(p) for p in raw.rglob("*") if p.is_file() and os.access(p, os.R_OK)}

    out = raw / "night-out"  # 1: an output_dir inside raw_dir is allowed, and not scanned
    args = (f"library_dir={library}",)
    prefix = without_dac_override()
    first = run_snakemake(raw, out, *args, check=False, prefix=prefix)
    second = run_snakemake(raw, out, *args, check=False, prefix=prefix)
    yield {
        "raw": raw,
        "out": out,
        "library": library,
        "first": first,
        "second": second,
        "before": before,
        "summary": read_csv(out / "summary.csv") if (out / "summary.csv").exists() else {},
    }
    locked.chmod(0o644)
    secret.chmod(0o755)


def test_the_hostile_night_completes_and_a_rerun_has_nothing_to_do(hostile):
    assert hostile["first"].returncode == 0, hostile["first"].stderr[-3000:]
    assert hostile["second"].returncode == 0, hostile["second"].stderr[-3000:]
    assert "Nothing to be done" in hostile["second"].stdout + hostile["second"].stderr
    calibrated = [r for r in hostile["summary"].values() if r["status"] == "calibrated"]
    assert len(calibrated) >= 10
    for row in calibrated:
        assert (hostile["out"] / row["output"]).is_file(), row["path"]


def test_raw_files_are_untouched(hostile):
    after = {p: sha256(p) for p in hostile["before"]}
    assert after == hostile["before"]


def test_braces_in_file_names(hostile):
    """12: '{1}' in a light's name and '{x}' in a flat's (Snakemake wildcards otherwise)."""
    light = hostile["summary"]["ccd/lights/NGC{1}.fits"]
    assert light["status"] == "calibrated" and light["flat"], light
    assert (hostile["out"] / "calibrated/ccd/lights/NGC{1}.fits").is_file()
    assert hostile["summary"]["ccd/flats/flat_{x}_R.fits"]["status"] == "combined"


def test_non_ascii_names_are_calibrated_with_ascii_headers(hostile):
    """13: the file names go into the headers %-encoded (RAWFILE, IMCMBnnn)."""
    rel = "ccd/lights/NGC7331 é 2.fits"
    assert hostile["summary"][rel]["status"] == "calibrated"
    header = fits.getheader(hostile["out"] / "calibrated" / rel)
    assert header["RAWFILE"] == "ccd/lights/NGC7331 %C3%A9 2.fits"
    assert unquote(header["RAWFILE"]) == rel
    flat_row = hostile["summary"]["ccd/flats/flat_é_R.fits"]
    assert flat_row["status"] == "combined"
    master = fits.getheader(hostile["out"] / "masters" / f"{flat_row['master']}.fits")
    inputs = [unquote(master[k]) for k in master if k.startswith("IMCMB")]
    assert "ccd/flats/flat_é_R.fits" in inputs and "ccd/flats/flat_{x}_R.fits" in inputs


def test_control_characters_in_a_header_are_repaired(hostile):
    """11: a newline, a tab and \\x01 in OBJECT: the file is read, the card repaired."""
    row = hostile["summary"]["ccd/lights/ctrl.fits"]
    assert row["status"] == "calibrated", row
    header = fits.getheader(hostile["out"] / "calibrated/ccd/lights/ctrl.fits")
    assert header["OBJECT"].startswith("NGC") and "\x01" not in header["OBJECT"]
    inventory = read_csv(hostile["out"] / "inventory.csv")
    assert "OBJECT" in inventory["ccd/lights/ctrl.fits"]["warnings"]


def test_absurd_and_invalid_values_are_refused_with_a_reason(hostile):
    """10 and 20: EXPTIME 1e300 would scale a dark by 3e297; 'abc' is not missing but invalid;
    XBINNING 1e300 would make a 300-digit master name; CCD-TEMP 'cold' leaves the
    temperature unknown (the light is still calibrated)."""
    huge = hostile["summary"]["ccd/lights/exptime_huge.fits"]
    assert huge["status"] == "excluded" and "not a physical exposure" in huge["detail"], huge
    text = hostile["summary"]["ccd/lights/exptime_text.fits"]
    assert text["status"] == "excluded" and "'abc' is not a number" in text["detail"], text
    binned = hostile["summary"]["ccd/lights/binning_huge.fits"]
    assert binned["status"] == "excluded" and "is not a binning factor" in binned["detail"], binned
    cold = hostile["summary"]["ccd/lights/cold.fits"]
    assert cold["status"] == "calibrated", cold
    inventory = read_csv(hostile["out"] / "inventory.csv")
    assert "'cold' is not a number" in inventory["ccd/lights/cold.fits"]["warnings"]
    assert inventory["ccd/lights/cold.fits"]["temperature_c"] == ""
    with open(hostile["out"] / "matches.csv", newline="", encoding="utf-8") as handle:
        dark = next(r for r in csv.DictReader(handle) if r["frame"] == "ccd/lights/cold.fits" and r["step"] == "dark")
    assert "the frame has no usable temperature" in dark["result"], dark  # not 'outside no temperature'


def test_a_light_and_its_compressed_twin_are_both_kept(hostile):
    """5: pair.fits and pair.fits.fz would both be calibrated/.../pair.fits."""
    plain, packed = (hostile["summary"][f"ccd/lights/pair.fits{s}"] for s in ("", ".fz"))
    assert plain["output"] == "calibrated/ccd/lights/pair.fits"
    assert packed["output"] == "calibrated/ccd/lights/pair_fz.fits"
    assert "pair_fz.fits" in packed["detail"]
    for row in (plain, packed):
        header = fits.getheader(hostile["out"] / row["output"])
        assert header["RAWFILE"] == row["path"]
    a, b = (fits.getdata(hostile["out"] / r["output"]) for r in (plain, packed))
    assert not np.array_equal(a, b)  # two different exposures, both there


def test_unreadable_file_and_folder_are_listed(hostile):
    """14: reported with the reason, the rest of the night runs, and reruns do not fail."""
    locked = hostile["summary"]["ccd/lights/locked.fits"]
    assert locked["status"] == "excluded" and "permission denied" in locked["detail"], locked
    folder = hostile["summary"]["ccd/secret/"]
    assert folder["status"] == "excluded" and "not seen" in folder["detail"], folder
    assert "Permission denied" not in hostile["second"].stderr


def test_dates_in_any_fits_form_make_safe_names(hostile):
    """15: sessions dated '2026-11-21 06:01:00' and '21/11/26' (1926), filed in a library."""
    names = sorted(p.name for p in (hostile["out"] / "masters").glob("*.fits"))
    assert any("20261121T06" in n for n in names), names
    assert all(re.fullmatch(r"[A-Za-z0-9._+\-]+\.fits", n) for n in names), names
    days = {p.parent.name for p in hostile["library"].rglob("*.fits")}
    assert "1926-11-21" in days and "2026-11-21" in days, days
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in days), days


def test_long_header_values_give_short_unique_names(hostile):
    """16: a 400-character READOUTM and a 3000-character FILTER."""
    for path in (hostile["out"] / "masters").glob("*.fits"):
        assert len(path.name.encode()) < 160, path.name
    for path in (hostile["out"] / "work/lights").iterdir():
        assert len(path.name.encode()) < 160, path.name
    long_filter = hostile["summary"]["ccd/lights/long_filter.fits"]
    assert long_filter["status"] == "calibrated" and long_filter["flat"], long_filter
    master = fits.getheader(hostile["out"] / "masters" / f"{long_filter['flat']}.fits")
    assert master["FILTER"] == LONG_FILTER
    readouts = [hostile["summary"][f"ccd/lights/long_readout_{i}.fits"] for i in (1, 2)]
    assert all(r["status"] == "calibrated" and r["bias"] for r in readouts), readouts
    assert fits.getheader(hostile["out"] / "masters" / f"{readouts[0]['bias']}.fits")["READOUTM"] == LONG_READOUT


# ----------------------------------------------------------------- where outputs go
def test_output_dir_equal_to_raw_dir_is_refused_before_any_work(demo_raw, tmp_path):
    """1: a raw tree with a calibrated/ folder and a summary.txt of its own."""
    raw = small_night(demo_raw, tmp_path / "raw")
    (raw / "calibrated").mkdir()
    shutil.copyfile(raw / LIGHT, raw / "calibrated/keep_me.fits")
    (raw / "summary.txt").write_text("my own notes\n")
    before = tree_digests(raw, ("**/*",))
    result = run_snakemake(raw, raw, check=False)
    assert result.returncode != 0
    assert "output_dir is raw_dir" in result.stderr + result.stdout
    assert tree_digests(raw, ("**/*",)) == before

    result = run_snakemake(raw, raw.parent, check=False)  # raw_dir inside output_dir
    assert result.returncode != 0 and "lies inside output_dir" in result.stderr + result.stdout

    foreign = tmp_path / "mine"
    (foreign / "calibrated").mkdir(parents=True)
    (foreign / "calibrated/precious.fits").write_bytes(b"x")
    result = run_snakemake(raw, foreign, check=False)
    assert result.returncode != 0 and "was not made by ccdcal" in result.stderr + result.stdout
    assert (foreign / "calibrated/precious.fits").read_bytes() == b"x"
    assert tree_digests(raw, ("**/*",)) == before


# ------------------------------------------------------------ changes and deletions
def test_a_config_change_redoes_exactly_what_it_affects(demo_raw, tmp_path):
    """4: combine.flat.method median -> mean: the flat and the lights are redone, the bias
    and the dark are not, and the result is what a fresh run with the new config gives."""
    raw = small_night(demo_raw, tmp_path / "raw")
    out = tmp_path / "out"
    base = (REPO / "config/config.yaml").read_text()
    median, mean = tmp_path / "median.yaml", tmp_path / "mean.yaml"
    median.write_text(base)
    mean.write_text(base.replace("flat: {method: median}", "flat: {method: mean}"))
    assert mean.read_text() != base
    run_snakemake(raw, out, "--configfile", str(median))
    masters = {p.name: p.stat().st_mtime_ns for p in (out / "masters").glob("*.fits")}
    light = out / "calibrated" / LIGHT
    light_before = sha256(light)

    run_snakemake(raw, out, "--configfile", str(mean))
    for name, mtime in masters.items():
        changed = (out / "masters" / name).stat().st_mtime_ns != mtime
        assert changed == name.startswith("flat_"), name
    assert fits.getheader(next((out / "masters").glob("flat_*.fits")))["COMBMETH"] == "mean"
    assert sha256(light) != light_before

    fresh = tmp_path / "fresh"
    run_snakemake(raw, fresh, "--configfile", str(mean))
    assert tree_digests(out) == tree_digests(fresh)


def test_deleted_outputs_are_restored(demo_raw, tmp_path):
    """6: a deleted calibrated frame, then a deleted light group folder."""
    raw = small_night(demo_raw, tmp_path / "raw")
    out = tmp_path / "out"
    run_snakemake(raw, out)
    reference = tree_digests(out)
    (out / "calibrated" / LIGHT).unlink()
    dry = run_snakemake(raw, out, "-n")  # says what a real run redoes, removes nothing
    assert "a real run redoes calibrated" in dry.stdout + dry.stderr
    assert (out / "calibrated" / "ccd/lights/NGC7331_R_002.fits").is_file()
    result = run_snakemake(raw, out)
    assert "Nothing to be done" not in result.stdout + result.stderr
    assert tree_digests(out) == reference
    for group in (out / "work/lights").iterdir():
        shutil.rmtree(group)
    run_snakemake(raw, out)
    assert tree_digests(out) == reference


# ------------------------------------------------------------------------ failures
def test_failed_jobs_do_not_block_the_rest_of_the_night(demo_raw, tmp_path):
    """17 and 9: a dark master whose only frame is corrupt (its lights cannot be made), a
    corrupt flat among nine (dropped), a light job that runs out of memory. Everything
    else is calibrated and published, and the summary says what failed and why."""
    raw = small_night(demo_raw, tmp_path / "raw")
    # lights of another readout mode get the only dark of that mode, whose only frame is corrupt
    for i in (1, 2):
        copy_with(
            raw, f"ccd/lights/NGC7331_R_00{i}.fits", f"ccd/lights60/short_{i}.fits", EXPTIME=60.0, READOUTM="Fast"
        )
    copy_with(raw, "ccd/darks/dark_300s_001.fits", "ccd/darks/dark_60s.fits", EXPTIME=60.0, READOUTM="Fast")
    compressed_copy(raw, "ccd/darks/dark_60s.fits", "ccd/darks/dark_60s.fits.fz")
    (raw / "ccd/darks/dark_60s.fits").unlink()
    corrupt_compressed(raw / "ccd/darks/dark_60s.fits.fz")
    # one flat of nine is corrupt
    compressed_copy(raw, FLAT, "ccd/flats/flat_R_001.fits.fz")
    (raw / FLAT).unlink()
    corrupt_compressed(raw / "ccd/flats/flat_R_001.fits.fz")
    # a light of its own group (another binning) whose job runs out of memory
    copy_with(raw, LIGHT, "ccd/binned/oom.fits", XBINNING=2, YBINNING=2)
    out = tmp_path / "out"
    env = fault_env(tmp_path / "faults", CCDCAL_FAIL_OPEN=r"binned/oom\.fits$", CCDCAL_FAIL_IN="calibrate_lights")

    result = run_snakemake(raw, out, check=False, env=env)
    assert result.returncode != 0
    summary = read_csv(out / "summary.csv")
    for rel in ("ccd/lights/NGC7331_R_001.fits", "ccd/lights/NGC7331_R_002.fits"):
        assert summary[rel]["status"] == "calibrated", summary[rel]
        assert (out / summary[rel]["output"]).is_file()
    for i in (1, 2):
        row = summary[f"ccd/lights60/short_{i}.fits"]
        assert row["status"] == "failed", row
        assert "dark_" in row["detail"] and "failed" in row["detail"] and "cannot read" in row["detail"], row
    oom = summary["ccd/binned/oom.fits"]
    assert oom["status"] == "failed" and "MemoryError" in oom["detail"], oom
    flat = summary["ccd/flats/flat_R_001.fits.fz"]
    assert flat["status"] == "dropped" and "cannot read image data" in flat["detail"], flat
    text = (out / "summary.txt").read_text()
    assert "8 of 9 frames (1 dropped)" in text and "SOME JOBS FAILED" in text
    dark_row = summary["ccd/darks/dark_60s.fits.fz"]
    assert dark_row["status"] == "failed", dark_row
    log = (out / "logs/masters" / f"{dark_row['master']}.log").read_text()
    assert "Traceback" in log and "dark_60s.fits.fz" in log

    # the same command again: the same failures, the same complete rest
    again = run_snakemake(raw, out, check=False, env=env)
    assert again.returncode != 0 and read_csv(out / "summary.csv") == summary

    # the bad files removed: the night completes
    (raw / "ccd/darks/dark_60s.fits.fz").unlink()
    (raw / "ccd/flats/flat_R_001.fits.fz").unlink()
    run_snakemake(raw, out)
    summary = read_csv(out / "summary.csv")
    assert {r["status"] for r in summary.values()} == {"calibrated", "combined"}, summary


def test_a_failed_job_has_its_error_and_traceback_in_its_log(demo_raw, tmp_path):
    """A job that fails (the bias master: no memory to open one of its frames) has the
    error naming the file, with its traceback, in its log, not only on stderr; Snakemake
    reports the job failed and points to that log."""
    raw = small_night(demo_raw, tmp_path / "raw")
    frame = raw / "ccd/bias/bias_002.fits"
    env = fault_env(tmp_path / "faults", CCDCAL_FAIL_OPEN=r"bias/bias_002\.fits$", CCDCAL_FAIL_IN="build_master")
    out = tmp_path / "out"
    result = run_snakemake(raw, out, check=False, env=env)
    assert result.returncode != 0
    failed = [p for p in (out / "logs").rglob("*.log") if "Traceback" in p.read_text()]
    assert [p.name.split("_")[0] for p in failed] == ["bias"], failed
    log = failed[0].read_text()
    assert f"MemoryError: injected: no memory to open {frame}" in log, log
    assert "Traceback (most recent call last)" in log and "in build_master" in log, log
    said = result.stdout + result.stderr
    assert "Error in rule" in said and str(failed[0].relative_to(out)) in said, said[-3000:]


def test_a_light_job_asks_for_the_memory_of_its_largest_light(demo_raw, tmp_path):
    """17: a light with no masters was sized as 4096^2 whatever its size."""
    raw = tmp_path / "raw"
    (raw / "big").mkdir(parents=True)
    data = np.zeros((5000, 5200), dtype=np.uint8)
    fits.PrimaryHDU(data, header=fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 10.0, "INSTRUME": "Big"})).writeto(
        raw / "big/wide.fits"
    )
    out = tmp_path / "out"
    run_snakemake(raw, out, "--until", "inventory")
    dry = run_snakemake(raw, out, "-n")
    requests = [int(m) for m in re.findall(r"mem_mb=(\d+)", dry.stdout + dry.stderr)]
    expected = light_group_memory_mb((5000, 5200), 0, 2, 1)
    assert expected in requests, (expected, requests)


def test_a_config_section_outside_the_frame_stops_before_any_work(demo_raw, tmp_path):
    """21: a trim section larger than the frame, then an overscan overlapping the data."""
    raw = small_night(demo_raw, tmp_path / "raw")
    for name, camera in (
        ("outside", {"trim": "[1:600,1:512]"}),
        (
            "overlap",
            {
                "overscan": {"method": "median", "regions": [{"overscan": "[500:544,1:512]", "data": "[1:512,1:512]"}]},
                "trim": "[1:512,1:512]",
            },
        ),
    ):
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            json.dumps({"cameras": [{"name": "demo-ccd", "match": {"header": {"INSTRUME": "SimCam CCD47"}}, **camera}]})
        )
        out = tmp_path / name
        result = run_snakemake(raw, out, "--configfile", str(config), check=False)
        said = result.stderr + result.stdout
        assert result.returncode != 0, name
        assert "demo-ccd" in said and ("544x512" in said or "overlap" in said), said[-2000:]
        assert not (out / "masters").exists() and not (out / "calibrated").exists()


def test_a_full_disk_is_reported_as_such_and_the_same_command_then_completes(demo_raw, tmp_path):
    """19: a master job on a full disk said AttributeError ('list' has no '_file')."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    raw = small_night(demo_raw, tmp_path / "raw")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        out = disk / "out"
        result = run_snakemake(raw, out, check=False)
        assert result.returncode != 0
        logs = "\n".join(p.read_text() for p in (out / "logs").rglob("*.log"))
        assert "no space left on the file system at " + str(disk) in logs, logs[-3000:]
        assert "AttributeError" not in logs
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        run_snakemake(raw, out)
        fresh = tmp_path / "fresh"
        run_snakemake(raw, fresh)
        assert tree_digests(out) == tree_digests(fresh)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
