"""The light cache (ccdcal.light_cache): a light group's job that reruns takes the lights
whose calibrated file would not change from the cache and calibrates only the others;
the result is byte for byte a fresh run's. Its key changes with every input of a light's
bytes; an entry damaged in any way is never used; a cache that cannot be written is a
warning, not the night's failure; stale entries are pruned when calibrated/ is published.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake, sha256, small_night, tree_digests

from ccdcal import light_cache
from ccdcal.light_cache import GROUP_KEYS, LIGHT_FILE, RECORD, THUMBNAIL_FILE, LightCache, light_key
from ccdcal.output_dir import LIGHT_CACHE_DIR, find_incomplete

RAW_SHA = "ab" * 32
ENTRY = {
    "path": "lights/a.fits",
    "output": "lights/a.fits",
    "flags": [],
    "bias": "bias_x",
    "dark": "dark_x",
    "dark_mode": "scaled",
    "dark_scale": 0.4,
    "flat": "flat_x_R",
    "exptime": 120.0,
    "binning": "1x1",
    "shape": "64x64",
    "notes": [],
}
MASTERS = {"bias": ("bias_x.fits", "11" * 32), "dark": ("dark_x.fits", "22" * 32), "flat": ("flat_x_R.fits", "33" * 32)}
CAMERA = {"name": "cam", "output": {"format": "float32", "compression": "none"}, "saturation": {"value": None}}
NOISE = {"gain": 1.5, "gain_source": "measured", "read_noise": 9.0, "read_noise_source": "bias pair", "flags": []}


def key_of(entry=ENTRY, raw=RAW_SHA, masters=MASTERS, camera=CAMERA, noise=NOISE) -> str:
    return light_key(entry, raw, masters, camera, noise)[0]


# ------------------------------------------------------------------ the key
@pytest.mark.parametrize(
    "change",
    [
        {"raw": "cd" * 32},  # the raw file's bytes
        {"entry": {**ENTRY, "path": "lights/b.fits"}},  # its name (RAWFILE)
        {"entry": {**ENTRY, "output": "lights/a_fz.fits"}},
        {"entry": {**ENTRY, "flags": ["NOFLAT"]}},
        {"entry": {**ENTRY, "dark_scale": 0.5}},
        {"entry": {**ENTRY, "flat": "flat_y_R"}},
        {"masters": {**MASTERS, "bias": ("bias_x.fits", "44" * 32)}},  # a master's bytes
        {"masters": {**MASTERS, "dark": ("dark_y.fits", "22" * 32)}},  # its name (DARKFILE)
        {"masters": {k: v for k, v in MASTERS.items() if k != "bias"}},
        {"camera": {**CAMERA, "output": {"format": "float32", "compression": "rice"}}},  # in CFGDIGST
        {"camera": {**CAMERA, "saturation": {"value": 60000}}},
        {"noise": {**NOISE, "gain": 1.51}},
        {"noise": {**NOISE, "read_noise_source": "header RDNOISE"}},
        {"noise": {**NOISE, "flags": ["NORDNOISE"]}},
        {"noise": None},
    ],
)
def test_the_key_changes_with_every_input_of_the_lights_bytes(change):
    assert key_of(**change) != key_of()


def test_the_key_is_the_same_for_the_same_inputs_and_changes_with_the_software(monkeypatch):
    same = {**ENTRY, "notes": ["written as lights/a.fits: the notes are not in the file"]}
    key = key_of()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key_of(entry=same) == key
    assert key_of(entry=dict(reversed(ENTRY.items()))) == key
    for name, version in (("ccdcal_code", "0" * 64), ("numpy", "0.0"), ("ccdcal", "9.9")):
        software = {**light_cache.software_identity(), name: version}
        monkeypatch.setattr(light_cache, "software_identity", lambda software=software: software)
        assert key_of() != key


# ------------------------------------------------------------------ entries
def calibrated_light(folder: Path, rel: str = "lights/a.fits", rawsum: str = RAW_SHA[:16]) -> tuple[Path, Path]:
    """A small calibrated light (its header names its raw bytes, RAWSUM) and thumbnail, as a
    light job leaves them in its group's folder."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    header = fits.Header()
    header["RAWSUM"] = rawsum
    planes = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    fits.HDUList([fits.PrimaryHDU(planes, header), fits.ImageHDU(planes, name="UNCERT")]).writeto(path)
    thumbnail = folder / ".thumbnails" / "lights" / "a.jpg"
    thumbnail.parent.mkdir(parents=True, exist_ok=True)
    thumbnail.write_bytes(b"\xff\xd8 a thumbnail")
    return path, thumbnail


STATISTICS = {"sky": "812.5", "noise_ratio": "1.002", "overscan_levels": "1000.120"}


@pytest.fixture
def filed(tmp_path):
    """A cache with one light filed: (cache, key, the group's folder)."""
    cache = LightCache(tmp_path / "cache")
    key, inputs = light_key(ENTRY, RAW_SHA, MASTERS, CAMERA, NOISE)
    light, thumbnail = calibrated_light(tmp_path / "group")
    assert cache.store(key, inputs, light, thumbnail, STATISTICS)
    assert cache.filed == 1 and not cache.problems
    return cache, key, tmp_path


def test_a_filed_light_is_linked_back_with_its_figures(filed):
    cache, key, base = filed
    entry = cache.root / key
    assert sorted(p.name for p in entry.iterdir()) == sorted([LIGHT_FILE, THUMBNAIL_FILE, RECORD])
    assert os.path.samefile(entry / LIGHT_FILE, base / "group/lights/a.fits")  # no second copy on the disk
    record = json.loads((entry / RECORD).read_text())
    assert record["inputs"]["raw"] == {"path": "lights/a.fits", "sha256": RAW_SHA}

    again = base / "again"
    assert cache.restore(key, again / "lights/a.fits", again / ".thumbnails/lights/a.jpg") == STATISTICS
    assert (again / "lights/a.fits").read_bytes() == (base / "group/lights/a.fits").read_bytes()
    assert (again / ".thumbnails/lights/a.jpg").read_bytes() == b"\xff\xd8 a thumbnail"
    assert cache.reused == 1 and not cache.problems
    assert cache.restore("0" * 64, again / "b.fits", again / "b.jpg") is None  # not there: no fuss
    assert not cache.problems


def replace_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()  # a file of its own: the group's link keeps the whole one
    path.write_bytes(data[: len(data) // 2])


def rewrite_in_place(path: Path) -> None:
    time.sleep(0.05)  # past the file system clock's tick: the write gives it another time
    data = bytearray(path.read_bytes())
    data[-100:] = b"\x00" * 100
    with open(path, "r+b") as handle:  # same size, same inode: another tool's in-place update
        handle.write(bytes(data))


def utime_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


@pytest.mark.parametrize(
    "damage",
    {
        "light truncated": lambda e: replace_truncated(e / LIGHT_FILE),
        "light rewritten in place": lambda e: rewrite_in_place(e / LIGHT_FILE),
        "light touched": lambda e: utime_later(e / LIGHT_FILE),
        "light missing": lambda e: (e / LIGHT_FILE).unlink(),
        "thumbnail missing": lambda e: (e / THUMBNAIL_FILE).unlink(),
        "no record": lambda e: (e / RECORD).unlink(),
        "record cut short": lambda e: (e / RECORD).write_text((e / RECORD).read_text()[:100]),
        "record of another key": lambda e: (e / RECORD).write_text((e / RECORD).read_text().replace(e.name, "f" * 64)),
        "record garbled": lambda e: (e / RECORD).write_text(
            (e / RECORD).read_text().replace('"calibrated.fits": [', '"calibrated.fits": [1, ')
        ),
        "record of another format": lambda e: (e / RECORD).write_text(
            (e / RECORD).read_text().replace('"format": 1', '"format": 0')
        ),
    }.items(),
    ids=lambda item: item[0],
)
def test_a_damaged_entry_is_never_used_and_is_removed(filed, damage, caplog):
    cache, key, base = filed
    damage[1](cache.root / key)
    target = base / "again" / "lights/a.fits"
    assert cache.restore(key, target, base / "again/a.jpg") is None
    assert not target.exists() and not (cache.root / key).exists()
    assert cache.reused == 0 and len(cache.problems) == 1 and "is damaged" in caplog.text
    # calibrated again, it is filed again
    light, thumbnail = calibrated_light(base / "group2")
    assert cache.store(key, light_key(ENTRY, RAW_SHA, MASTERS, CAMERA, NOISE)[1], light, thumbnail, STATISTICS)
    assert cache.restore(key, target, base / "again/a.jpg") == STATISTICS


@pytest.mark.filterwarnings("ignore:File may have been truncated")  # astropy's, on the cut file
def test_a_light_not_whole_or_made_from_other_raw_bytes_is_not_filed(tmp_path):
    cache = LightCache(tmp_path / "cache")
    key, inputs = light_key(ENTRY, RAW_SHA, MASTERS, CAMERA, NOISE)
    other, thumbnail = calibrated_light(tmp_path / "other", rawsum="cd" * 8)  # the raw file changed meanwhile
    assert not cache.store(key, inputs, other, thumbnail, STATISTICS)
    cut, thumbnail = calibrated_light(tmp_path / "cut")
    with open(cut, "r+b") as handle:
        handle.truncate(cut.stat().st_size - 2880)
    assert not cache.store(key, inputs, cut, thumbnail, STATISTICS)
    assert cache.filed == 0 and len(cache.problems) == 2
    assert "other raw bytes" in cache.problems[0] and "truncated" in cache.problems[1]
    assert not cache.root.exists()


def test_a_cache_that_cannot_be_written_is_warned_about(tmp_path, monkeypatch, caplog):
    key, inputs = light_key(ENTRY, RAW_SHA, MASTERS, CAMERA, NOISE)
    light, thumbnail = calibrated_light(tmp_path / "group")
    (tmp_path / "work").write_text("a file where the cache's folder would be")
    blocked = LightCache(tmp_path / "work" / "cache")
    assert not blocked.store(key, inputs, light, thumbnail, STATISTICS)
    assert blocked.restore(key, tmp_path / "x.fits", tmp_path / "x.jpg") is None
    assert blocked.prune(set()) == (0, 0)

    full = LightCache(tmp_path / "cache")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(light_cache.os, "replace", no_space)
    assert not full.store(key, inputs, light, thumbnail, STATISTICS)
    assert not list((tmp_path / "cache").iterdir())  # no temporary folder left
    assert "could not file a.fits" in caplog.text and "No space left" in caplog.text


def test_pruning_keeps_what_the_groups_name_and_removes_the_rest(filed):
    cache, key, base = filed
    light, thumbnail = calibrated_light(base / "group2", "lights/b.fits")
    other, inputs = light_key({**ENTRY, "path": "lights/b.fits"}, RAW_SHA, MASTERS, CAMERA, NOISE)
    assert cache.store(other, inputs, light, thumbnail, STATISTICS)
    killed = cache.root / f".{other}.0123456789ab.tmp"  # a job killed while filing
    killed.mkdir()
    (killed / LIGHT_FILE).write_bytes(b"half")
    (cache.root / "README").write_text("not ccdcal's: left alone")
    light_cache.write_group_keys(base / "group", {"lights/a.fits": key})
    assert light_cache.group_keys([base / "group", base / "no-such-group"]) == {key}
    assert cache.prune(light_cache.group_keys([base / "group"])) == (1, 1)
    assert sorted(p.name for p in cache.root.iterdir()) == sorted([key, "README"])
    assert (base / "group" / GROUP_KEYS).is_file()


def test_a_killed_filing_leaves_a_temporary_folder_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    killed = out / LIGHT_CACHE_DIR / f".{'a' * 64}.0123456789ab.tmp"
    killed.mkdir(parents=True)
    (killed / LIGHT_FILE).write_bytes(b"half a light")
    assert (killed, "left by a killed writer") in find_incomplete(out)
    assert LightCache(out / LIGHT_CACHE_DIR).restore("a" * 64, tmp_path / "a.fits", tmp_path / "a.jpg") is None


# ------------------------------------------------------------------ through the workflow
#: A light added to the small night: a copy of one under a new name (same bytes, another
#: RAWFILE: another key).
NEW_LIGHT = "ccd/lights/NGC7331_R_004.fits"
#: Every output compared byte for byte (job logs and the cache's records, which hold file
#: times, left out).
OUTPUTS = (
    "**/*.fits",
    "**/*.csv",
    "**/*.jpg",
    "**/*.png",
    "**/*.html",
    "summary.txt",
    "work/lights/*/.light-cache.json",
)


def add_light(raw: Path, rel: str = NEW_LIGHT, like: str = "ccd/lights/NGC7331_R_003.fits") -> None:
    shutil.copyfile(raw / like, raw / rel)


def rules_run(result) -> set[str]:
    return set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", result.stdout + result.stderr, re.MULTILINE))


def cache_said(out: Path) -> tuple[int, int]:
    """(lights reused, lights calibrated now) that the light job (the small night has one)
    logged in its last run."""
    (log,) = (out / "logs" / "lights").glob("*.log")
    found = re.search(r"light cache: (\d+) lights reused, (\d+) calibrated now", log.read_text())
    assert found, log.read_text()
    return int(found[1]), int(found[2])


def cache_keys(out: Path) -> set[str]:
    return {p.name for p in (out / LIGHT_CACHE_DIR).iterdir()}


def hashed_lights(out: Path) -> set[str]:
    """The lights whose SHA-256 the inventory took (work/checksums.json)."""
    return {p for p in json.loads((out / "work" / "checksums.json").read_text()) if "/lights/" in p}


def stamps(paths) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def fresh_night_of_four(demo_raw, tmp_path_factory):
    """The small night with a fourth R light, calibrated from scratch: its outputs' digests."""
    base = tmp_path_factory.mktemp("four")
    raw = small_night(demo_raw, base / "raw")
    add_light(raw)
    run_snakemake(raw, base / "out")
    digests = tree_digests(base / "out", OUTPUTS)
    assert len(digests) > 30 and f"calibrated/{NEW_LIGHT}" in digests
    return digests


def test_adding_a_light_calibrates_it_alone_and_gives_a_fresh_runs_bytes(demo_raw, fresh_night_of_four, tmp_path):
    raw, out = small_night(demo_raw, tmp_path / "raw"), tmp_path / "out"
    run_snakemake(raw, out)
    assert cache_said(out) == (0, 3) and len(cache_keys(out)) == 3
    # a first run's inventory hashes the calibration frames only: the light jobs key the
    # lights from the bytes they calibrate
    assert hashed_lights(out) == set() and len(json.loads((out / "work/checksums.json").read_text())) > 3
    masters = stamps((out / "masters").glob("*.fits"))
    noise = stamps((out / "work" / "noise").glob("*.json"))

    add_light(raw)
    result = run_snakemake(raw, out)
    assert rules_run(result) == {"inventory", "calibrate_lights", "publish_calibrated", "summary", "all"}
    assert cache_said(out) == (3, 1)  # the three lights there before were linked, not calibrated
    assert len(hashed_lights(out)) == 4  # with lights in the cache, the inventory hashes them
    assert stamps((out / "masters").glob("*.fits")) == masters and stamps((out / "work/noise").glob("*.json")) == noise
    assert tree_digests(out, OUTPUTS) == fresh_night_of_four
    assert len(cache_keys(out)) == 4
    # hard links: the cache costs no disk space for the night's current lights
    entries = {p.stat().st_ino for p in (out / LIGHT_CACHE_DIR).glob(f"*/{LIGHT_FILE}")}
    assert entries == {p.stat().st_ino for p in (out / "calibrated").rglob("*.fits")}


def test_a_changed_raw_file_or_master_recalibrates_the_lights_it_changes(demo_raw, tmp_path):
    raw, out = small_night(demo_raw, tmp_path / "raw"), tmp_path / "out"
    run_snakemake(raw, out)
    before = cache_keys(out)

    # another raw file under an old name: that light alone is calibrated again, its old entry pruned
    changed = raw / "ccd/lights/NGC7331_R_002.fits"
    shutil.copyfile(raw / "ccd/lights/NGC7331_R_001.fits", changed)
    run_snakemake(raw, out)
    assert cache_said(out) == (2, 1)
    assert fits.getheader(out / "calibrated/ccd/lights/NGC7331_R_002.fits")["RAWSUM"] == sha256(changed)[:16]
    after_raw = cache_keys(out)
    assert len(after_raw) == 3 and len(after_raw & before) == 2

    # one more bias: a new master bias, every light calibrated again
    shutil.copyfile(raw / "ccd/bias/bias_015.fits", raw / "ccd/bias/bias_016.fits")
    result = run_snakemake(raw, out)
    assert "master_bias" in rules_run(result)
    assert cache_said(out) == (0, 3)
    assert len(cache_keys(out)) == 3 and not cache_keys(out) & after_raw

    run_snakemake(raw, tmp_path / "fresh")
    assert tree_digests(out, OUTPUTS) == tree_digests(tmp_path / "fresh", OUTPUTS)


def test_a_cache_that_cannot_be_written_does_not_stop_the_night(demo_raw, fresh_night_of_four, tmp_path):
    """The cache's folders read-only (root made to obey permissions): the new light is
    calibrated, not filed, with a warning in the job's log; the night is the same."""
    from test_hostile_night import without_dac_override

    raw, out = small_night(demo_raw, tmp_path / "raw"), tmp_path / "out"
    run_snakemake(raw, out)
    folders = [out / LIGHT_CACHE_DIR, *(out / LIGHT_CACHE_DIR).iterdir()]
    add_light(raw)
    for folder in folders:
        folder.chmod(0o555)
    try:
        run_snakemake(raw, out, prefix=without_dac_override())
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert cache_said(out) == (3, 1)
    (log,) = (out / "logs" / "lights").glob("*.log")
    assert "WARNING" in log.read_text() and "could not file NGC7331_R_004.fits" in log.read_text()
    assert len(cache_keys(out)) == 3

    def outputs(digests):
        return {k: v for k, v in digests.items() if not k.startswith(LIGHT_CACHE_DIR.as_posix())}

    assert outputs(tree_digests(out, OUTPUTS)) == outputs(fresh_night_of_four)
