"""Tests of the simulator (ccdcal.simulate) against its own truth: the demo night, and
the configurable camera nights (write_camera_night) with their presets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdcal import simulate
from ccdcal.simulate import (
    DEFAULT_SEED,
    CameraNight,
    CameraSpec,
    FrameSet,
    write_camera_night,
    write_demo_night,
)

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("night")
    raw, truth = base / "raw", base / "truth"
    manifest = write_demo_night(raw, truth)
    return raw, truth, manifest


def _truth_img(truth_dir, rel):
    return fits.getdata(truth_dir / rel).astype(float)


def _raw(raw_dir, rel):
    return fits.getdata(raw_dir / rel).astype(float)


def _level(entry, ny):
    """Overscan level per row (ADU), shape (ny, 1)."""
    return (entry["overscan_offset_adu"] + entry["overscan_slope_adu"] * np.arange(ny) / ny)[:, None]


def _dark_e(manifest, truth_dir, cam, entry):
    c = manifest["cameras"][cam]
    rate = _truth_img(truth_dir, c["dark_rate_e_per_s"])
    return rate * 2 ** ((entry["set_temp_c"] - c["temperature_c"]) / c["dark_doubling_c"]) * entry["exptime"]


def _calibrate_with_truth(raw_dir, truth_dir, manifest, rel):
    """Perfect calibration of a light using the truth; returns (calibrated, signal, sigma)."""
    entry, light = manifest["frames"][rel], manifest["lights"][rel]
    cam = manifest["cameras"][entry["camera"]]
    ny, nx = cam["shape"]
    data = _raw(raw_dir, rel)[:, :nx]
    flat = _truth_img(truth_dir, cam["flats"][entry["filter"]])
    bias2d = _truth_img(truth_dir, cam["bias2d"])
    dark_adu = _dark_e(manifest, truth_dir, entry["camera"], entry) / cam["gain"]
    cal = (data - _level(entry, ny) - bias2d - dark_adu) / flat
    return (
        cal,
        _truth_img(truth_dir, light["signal"]),
        _truth_img(truth_dir, light["ideal_sigma"]),
    )


def _all_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_byte_identical_when_written_twice(night, tmp_path):
    raw, truth, manifest = night
    manifest2 = write_demo_night(tmp_path / "raw", tmp_path / "truth", seed=DEFAULT_SEED)
    assert manifest2 == manifest
    for a, b in ((raw, tmp_path / "raw"), (truth, tmp_path / "truth")):
        fa, fb = _all_files(a), _all_files(b)
        assert sorted(fa) == sorted(fb)
        different = [k for k in fa if fa[k] != fb[k]]
        assert different == []
    assert len([k for k in _all_files(raw) if k.endswith(".fits")]) == 92


#: sha256 over (path, sha256 of bytes) of every file the demo night writes (raw/ then
#: truth/, sorted paths), computed with the simulator as of commit e82293b (numpy 2.4.6,
#: astropy 8.0.2). Changing the simulator must not change the demo night; an astropy or
#: numpy upgrade that rewrites headers or random streams would, and then this is
#: recomputed on purpose.
DEMO_NIGHT_DIGEST = "de8cb582c2c6e42932c864dbee24fc720012fea88d24a073e3bdde78142649c0"


def _tree_digest(base: Path) -> str:
    digest = hashlib.sha256()
    for root in ("raw", "truth"):
        for path in sorted((base / root).rglob("*")):
            if path.is_file():
                digest.update(f"{root}/{path.relative_to(base / root).as_posix()}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_demo_night_unchanged(night):
    raw, truth, _ = night
    assert raw.parent == truth.parent
    assert _tree_digest(raw.parent) == DEMO_NIGHT_DIGEST


def test_frame_counts_and_layout(night):
    raw, truth, manifest = night
    counts = Counter((e["camera"], e["type"]) for e in manifest["frames"].values())
    assert counts == {
        ("ccd", "bias"): 15,
        ("ccd", "dark"): 10,
        ("ccd", "flat"): 18,
        ("ccd", "light"): 6,
        ("cmos", "dark"): 18,
        ("cmos", "darkflat"): 10,
        ("cmos", "flat"): 10,
        ("cmos", "light"): 4,
    }
    for rel in manifest["frames"]:
        assert (raw / rel).is_file()
    assert len(list((raw / "ccd/flats").glob("flat_V_*.fits"))) == 9
    assert len(list((raw / "ccd/flats").glob("flat_R_*.fits"))) == 9
    assert len(list((raw / "cmos/darks").glob("dark_120s_-10C_*.fits"))) == 10
    assert len(list((raw / "cmos/darks").glob("dark_120s_-5C_*.fits"))) == 8
    assert not (raw / "cmos/bias").exists()
    spaced = sorted(p.name for p in (raw / "cmos/lights").glob("M 31_L_120s_*.fits"))
    assert spaced == [f"M 31_L_120s_{i:03d}.fits" for i in range(1, 5)]
    assert set(manifest["lights"]) == {k for k, e in manifest["frames"].items() if e["type"] == "light"}
    for light in manifest["lights"].values():
        assert (truth / light["signal"]).is_file() and (truth / light["ideal_sigma"]).is_file()
    assert json.loads((truth / "truth.json").read_text()) == manifest


def test_junk_files(night):
    raw, _, manifest = night
    assert manifest["junk"] == {
        "notes.txt": "not FITS",
        "ccd/lights/NGC7331_V_broken.fits": "truncated",
    }
    assert "SIMPLE" not in (raw / "notes.txt").read_text()
    broken = raw / "ccd/lights/NGC7331_V_broken.fits"
    good = raw / "ccd/lights/NGC7331_V_001.fits"
    assert broken.stat().st_size < 0.6 * good.stat().st_size
    failed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = fits.getdata(broken)
            np.asarray(data).sum()
        except Exception:
            failed = True
    assert failed or any("truncated" in str(w.message) for w in caught)


def test_headers(night):
    raw, _, manifest = night
    h = fits.getheader(raw / "ccd/lights/NGC7331_V_001.fits")
    assert (h["BITPIX"], h["BZERO"], h["NAXIS1"], h["NAXIS2"]) == (16, 32768, 544, 512)
    assert h["BIASSEC"] == "[517:544,1:512]" and h["DATASEC"] == "[1:512,1:512]"
    assert (h["EGAIN"], h["RDNOISE"], h["SET-TEMP"], h["IMAGETYP"]) == (
        1.5,
        9.0,
        -20.0,
        "Light Frame",
    )
    assert abs(h["CCD-TEMP"] + 20.0) <= 0.15 and h["EXPTIME"] == 120.0 and h["FILTER"] == "V"
    h = fits.getheader(raw / "cmos/lights/M 31_L_120s_001.fits")
    assert (h["NAXIS1"], h["NAXIS2"], h["EGAIN"], h["GAIN"], h["OFFSET"]) == (
        640,
        480,
        1.0,
        120,
        30,
    )
    assert h["EXPOSURE"] == 120.0 and h["IMAGETYP"] == "LIGHT" and h["OBJECT"] == "M 31"
    for key in ("EXPTIME", "BIASSEC", "DATASEC", "RDNOISE"):
        assert key not in h
    assert fits.getheader(raw / "cmos/darkflats/darkflat_2s_001.fits")["IMAGETYP"] == "DARKFLAT"
    assert fits.getheader(raw / "cmos/darks/dark_120s_-5C_001.fits")["SET-TEMP"] == -5.0
    # time order: all calibration frames before the lights; dates on the synthetic night
    for cam in ("ccd", "cmos"):
        entries = [e for e in manifest["frames"].values() if e["camera"] == cam]
        assert all(e["date_obs"].startswith("2026-11-20T") for e in entries)
        first_light = min(e["date_obs"] for e in entries if e["type"] == "light")
        assert all(e["date_obs"] < first_light for e in entries if e["type"] != "light")


def test_twilight_flats_fade(night):
    raw, truth, manifest = night
    for f in ("V", "R"):
        flats = sorted(
            (e["date_obs"], k, e)
            for k, e in manifest["frames"].items()
            if e["camera"] == "ccd" and e["type"] == "flat" and e["filter"] == f
        )
        exptimes = [e["exptime"] for _, _, e in flats]
        levels = np.array([e["sky_adu"] for _, _, e in flats])
        assert exptimes == sorted(exptimes) and exptimes[0] == 1.0 and exptimes[-1] == 8.0
        assert levels.min() > 11000 and levels.max() < 31000 and levels.max() / levels.min() > 1.8
        rates = levels / np.array(exptimes)
        assert np.all(np.diff(rates) < 0)  # sky fades
        # stars at different positions in every frame: brightest star positions differ
        flat = _truth_img(truth, manifest["cameras"]["ccd"]["flats"][f])
        peaks = set()
        for _, rel, e in flats:
            resid = (_raw(raw, rel)[:, :512] - _level(e, 512)) / flat - e["sky_adu"]
            assert resid.max() > 1500  # bright stars present
            peaks.add(np.unravel_index(np.argmax(resid), resid.shape))
        assert len(peaks) == len(flats)


def test_truth_maps(night):
    _, truth, manifest = night
    ccd, cmos = manifest["cameras"]["ccd"], manifest["cameras"]["cmos"]
    fv, fr = _truth_img(truth, ccd["flats"]["V"]), _truth_img(truth, ccd["flats"]["R"])
    assert fv.shape == (512, 512) and fits.getdata(truth / ccd["flats"]["V"]).dtype.kind == "f"
    assert np.median(fv) == pytest.approx(1.0, abs=1e-6)
    assert 0.7 < np.mean([fv[:5, :5].mean(), fv[-5:, -5:].mean()]) < 0.9
    assert np.std(fv - fr) > 0.003
    hot = fits.getdata(truth / ccd["hot_pixels"])
    assert hot.dtype == np.uint8 and 0.001 < hot.mean() < 0.004
    rate = _truth_img(truth, ccd["dark_rate_e_per_s"])
    assert rate[hot == 1].min() >= 0.5 and np.median(rate) == pytest.approx(0.02, rel=0.1)
    m10, m5 = _truth_img(truth, cmos["dark_rate_e_per_s"]), _truth_img(truth, cmos["dark_rate_e_per_s_m5"])
    assert m10.shape == (480, 640)
    np.testing.assert_allclose(m5 / m10, 2 ** (5 / 6), rtol=1e-5)
    assert np.median(_truth_img(truth, cmos["bias2d"])) == pytest.approx(300, abs=3)


def test_ccd_bias_minus_overscan_matches_bias2d(night):
    raw, truth, manifest = night
    bias2d = _truth_img(truth, manifest["cameras"]["ccd"]["bias2d"])
    diffs = []
    for rel, e in manifest["frames"].items():
        if e["camera"] == "ccd" and e["type"] == "bias":
            img = _raw(raw, rel)
            over = img[:, 516:544]  # BIASSEC [517:544,1:512]
            assert abs(np.mean(over) - (e["overscan_offset_adu"] + e["overscan_slope_adu"] / 2)) < 0.2
            diffs.append(np.median(img[:, :512]) - np.median(over))
    assert abs(np.mean(diffs) - np.median(bias2d)) < 1.0
    assert all(abs(d - np.median(bias2d)) < 1.5 for d in diffs)
    # overscan level drifts between frames by a few ADU
    offsets = [e["overscan_offset_adu"] for e in manifest["frames"].values() if e["camera"] == "ccd"]
    assert 2 < np.ptp(offsets) < 60 and all(abs(o - 1000) < 40 for o in offsets)


def test_ccd_darks_have_cosmic_rays(night):
    raw, truth, manifest = night
    darks = [(rel, e) for rel, e in manifest["frames"].items() if e["camera"] == "ccd" and e["type"] == "dark"]
    cube = np.array([_raw(raw, rel)[:, :512] - _level(e, 512) for rel, e in darks])
    med = np.median(cube, axis=0)
    for (_, e), img in zip(darks, cube):
        n_hits = np.count_nonzero(img - med > 400)  # >600 e- above the median
        assert e["n_cosmic_rays"] >= 25 and n_hits >= e["n_cosmic_rays"] * 0.8


def test_cmos_dark_temperature_scaling(night):
    raw, truth, manifest = night
    bias2d = _truth_img(truth, manifest["cameras"]["cmos"]["bias2d"])

    def master(tag):
        frames = [(rel, e) for rel, e in manifest["frames"].items() if f"dark_120s_{tag}_" in rel]
        return np.mean(
            [_raw(raw, rel) - e["overscan_offset_adu"] - bias2d for rel, e in frames],
            axis=0,
        )

    m10, m5 = np.median(master("-10C")), np.median(master("-5C"))
    assert m10 == pytest.approx(1.2, rel=0.25)  # 0.01 e-/s * 120 s, gain 1
    assert 1.5 < m5 / m10 < 2.1  # expected 2**(5/6) = 1.78


@pytest.mark.parametrize("rel", ["ccd/lights/NGC7331_V_001.fits", "ccd/lights/NGC7331_R_003.fits"])
def test_ccd_light_perfect_calibration_matches_truth(night, rel):
    raw, truth, manifest = night
    cal, signal, sigma = _calibrate_with_truth(raw, truth, manifest, rel)
    assert cal.shape == signal.shape == sigma.shape == (512, 512)
    assert cal.mean() == pytest.approx(signal.mean(), rel=0.005)
    assert np.std((cal - signal) / sigma) == pytest.approx(1.0, abs=0.03)
    # stars present but none saturated
    assert signal.max() > 5000 and _raw(raw, rel).max() < 65535
    assert np.median(signal) * 1.5 == pytest.approx(800, rel=0.1)  # sky ~800 e-


def test_cmos_light_hot_pixels_cancel(night):
    raw, truth, manifest = night
    rel = "cmos/lights/M 31_L_120s_002.fits"
    cal, signal, sigma = _calibrate_with_truth(raw, truth, manifest, rel)
    assert cal.mean() == pytest.approx(signal.mean(), rel=0.005)
    assert np.std((cal - signal) / sigma) == pytest.approx(1.0, abs=0.03)
    # with an empirical master dark (median of the -10 C darks: rejects cosmic rays) the hot pixels cancel
    cmos = manifest["cameras"]["cmos"]
    hot = fits.getdata(truth / cmos["hot_pixels"]).astype(bool)
    bias2d, flat = _truth_img(truth, cmos["bias2d"]), _truth_img(truth, cmos["flats"]["L"])
    darks = [(r, e) for r, e in manifest["frames"].items() if "dark_120s_-10C_" in r]
    master = np.median([_raw(raw, r) - e["overscan_offset_adu"] - bias2d for r, e in darks], axis=0)
    e = manifest["frames"][rel]
    light = _raw(raw, rel) - e["overscan_offset_adu"] - bias2d
    z_cal = ((light - master) / flat - signal)[hot] / sigma[hot]
    z_raw = (light / flat - signal)[hot] / sigma[hot]
    assert abs(z_cal.mean()) < 0.1 and z_cal.std() < 1.15
    assert z_raw.mean() > 10  # hot pixels really are in the light


def test_cli_and_cheap_import(tmp_path, night):
    code = "import sys, ccdcal.simulate; print('astropy.io.fits' in sys.modules)"
    env = {"PYTHONPATH": str(SRC), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ccdcal.simulate",
            str(tmp_path / "r"),
            str(tmp_path / "t"),
            "--seed",
            "7",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads((tmp_path / "t/truth.json").read_text())
    assert manifest["seed"] == 7 and len(manifest["frames"]) == len(night[2]["frames"])
    rel = "ccd/bias/bias_001.fits"
    assert (tmp_path / "r" / rel).read_bytes() != (night[0] / rel).read_bytes()


# ------------------------------------------------------------------ camera nights
PRESETS = (
    "night_gain_as_eadu",
    "night_gain_as_setting",
    "night_single_frame_darks",
    "night_temperature_jitter",
    "night_lamp_flats",
    "night_dark_subtracted",
)

#: What each preset's files hold, read from the files: (IMAGETYP, exposure s) -> count.
PRESET_FILES = {
    "night_gain_as_eadu": {
        ("Bias Frame", 0.0): 10,
        ("Dark Frame", 60.0): 10,
        ("Flat Field", 5.0): 10,
        ("Light Frame", 60.0): 5,
    },
    "night_gain_as_setting": {
        ("DARK", 120.0): 10,
        ("DARKFLAT", 2.0): 10,
        ("FLAT", 2.0): 10,
        ("LIGHT", 120.0): 5,
    },
    "night_single_frame_darks": {
        ("Bias Frame", 0.0): 10,
        ("Dark Frame", 20.0): 1,
        ("Dark Frame", 60.0): 11,
        ("Flat Field", 23.0): 6,
        ("Light Frame", 60.0): 3,
        ("Light Frame", 23.0): 3,
    },
    "night_temperature_jitter": {
        ("Dark Frame", 30.0): 8,
        ("Dark Frame", 60.0): 8,
        ("Dark Frame", 120.0): 8,
        ("Flat Field", 3.0): 8,
        ("Light Frame", 120.0): 5,
    },
    "night_lamp_flats": {
        ("Bias Frame", 0.0): 10,
        ("Dark Frame", 60.0): 5,
        ("Flat Field", 4.0): 16,
        ("Light Frame", 60.0): 4,
    },
    "night_dark_subtracted": {
        ("Bias Frame", 0.0): 10,
        ("Dark Frame", 120.0): 10,
        ("Flat Field", 2.0): 10,
        ("Light Frame", 120.0): 5,
    },
}

#: Gain and read-noise cards of every frame of each preset (None: absent).
PRESET_CARDS = {
    "night_gain_as_eadu": {"GAIN": 1.5, "EGAIN": None, "RDNOISE": 9.0},
    "night_gain_as_setting": {"GAIN": 100, "EGAIN": None, "RDNOISE": None},
    "night_single_frame_darks": {"GAIN": None, "EGAIN": 1.2, "RDNOISE": 7.0},
    "night_temperature_jitter": {"GAIN": None, "EGAIN": 1.0, "RDNOISE": 4.0},
    "night_lamp_flats": {"GAIN": None, "EGAIN": 1.3, "RDNOISE": 8.0},
    "night_dark_subtracted": {"GAIN": None, "EGAIN": 1.0, "RDNOISE": 3.0},
}


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Every preset written once: name -> (raw_dir, truth_dir, manifest)."""
    base = tmp_path_factory.mktemp("presets")
    written = {}
    for name in PRESETS:
        raw, truth = base / name / "raw", base / name / "truth"
        spec = getattr(simulate, name)()
        written[name] = (raw, truth, write_camera_night(raw, truth, spec))
    return written


def _set_frames(manifest, set_name):
    """(rel, frame entry) of a set, in the set's order."""
    return [(rel, manifest["frames"][rel]) for rel in manifest["sets"][set_name]["frames"]]


def _data(raw_dir, manifest, rel):
    """Trimmed data (ADU) of a raw frame with its true level(y) removed."""
    entry = manifest["frames"][rel]
    ny, nx = manifest["cameras"][entry["camera"]]["shape"]
    return _raw(raw_dir, rel)[:, :nx] - _level(entry, ny)


def _ptc_gain(flat1, flat2, bias1, bias2):
    """Photon-transfer gain (e-/ADU) from two flats and two biases (or darks), ADU."""
    signal = (flat1.mean() + flat2.mean()) - (bias1.mean() + bias2.mean())
    return signal / (np.var(flat1 - flat2) - np.var(bias1 - bias2))


def _assert_ptc_gains(gains, true_gain):
    """Pair gains of 128x160 frames scatter by ~1 %: each within 5 % of the truth, their
    mean within 3 %."""
    assert len(gains) == 5
    for gain in gains:
        assert gain == pytest.approx(true_gain, rel=0.05)
    assert np.mean(gains) == pytest.approx(true_gain, rel=0.03)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_files_and_header_cards(presets, name):
    raw, truth, manifest = presets[name]
    (cam,) = manifest["cameras"].values()
    ny, nx = cam["shape"]
    assert 128 <= ny <= 256 and 128 <= nx <= 256
    files = sorted(raw.rglob("*.fits"))
    assert len(files) == len(manifest["frames"]) <= 40
    found = Counter()
    for path in files:
        h = fits.getheader(path)
        found[(h["IMAGETYP"], h.get("EXPTIME", h.get("EXPOSURE")))] += 1
        assert {key: h.get(key) for key in PRESET_CARDS[name]} == PRESET_CARDS[name]
        assert type(h.get("GAIN")) is type(PRESET_CARDS[name]["GAIN"])  # 100, not 100.0
        assert h["XBINNING"] == 1 and h["INSTRUME"] and "SET-TEMP" in h
        assert h["NAXIS2"] == ny and h["NAXIS1"] >= nx
    assert dict(found) == PRESET_FILES[name]
    assert json.loads((truth / "truth.json").read_text()) == manifest
    for light in manifest["lights"].values():
        assert (truth / light["signal"]).is_file()
        assert (truth / light["ideal_sigma"]).is_file()
    assert cam["header"]["cards"] == {k: v for k, v in PRESET_CARDS[name].items() if v is not None}
    first_light = min(e["date_obs"] for e in manifest["frames"].values() if e["type"] == "light")
    assert all(e["date_obs"] < first_light for e in manifest["frames"].values() if e["type"] != "light")


def test_camera_night_same_call_same_bytes(presets, tmp_path):
    raw, truth, manifest = presets["night_dark_subtracted"]
    again = write_camera_night(tmp_path / "raw", tmp_path / "truth", simulate.night_dark_subtracted())
    assert again == manifest
    for a, b in ((raw, tmp_path / "raw"), (truth, tmp_path / "truth")):
        fa, fb = _all_files(a), _all_files(b)
        assert sorted(fa) == sorted(fb) and [k for k in fa if fa[k] != fb[k]] == []
    other = write_camera_night(tmp_path / "r7", tmp_path / "t7", simulate.night_dark_subtracted(), seed=7)
    assert other["seed"] == 7
    rel = "cmos/bias/bias_001.fits"
    assert (tmp_path / "r7" / rel).read_bytes() != (raw / rel).read_bytes()


def test_default_camera_night_is_small(tmp_path):
    manifest = write_camera_night(tmp_path / "raw", tmp_path / "truth", CameraNight())
    counts = Counter(e["type"] for e in manifest["frames"].values())
    assert counts == {"bias": 5, "dark": 5, "flat": 4, "light": 3}
    assert manifest["cameras"]["cam"]["shape"] == [128, 160]
    assert fits.getdata(tmp_path / "raw/cam/lights/light_V_60s_001.fits").shape == (
        128,
        160,
    )
    assert {e["set"] for e in manifest["frames"].values()} == set(manifest["sets"])


def test_bias_pair_variance_and_photon_transfer_gain(presets):
    raw, _, manifest = presets["night_gain_as_eadu"]
    cam = manifest["cameras"]["ccd"]
    gain, rn = cam["gain"], cam["read_noise_e"]
    assert cam["overscan"]["biassec"] == "[165:176,1:128]"
    b1, b2 = (_data(raw, manifest, rel) for rel, _ in _set_frames(manifest, "bias")[:2])
    expected = 2 * rn**2 / gain**2 + 1 / 6
    sampling = expected * np.sqrt(2 / (b1.size - 1))
    assert abs(np.var(b1 - b2) - expected) < 4 * sampling
    flats = _set_frames(manifest, "flat_V")
    levels = [e["level_adu"] for _, e in flats]
    assert levels == [2000, 2000, 5000, 5000, 10000, 10000, 20000, 20000, 30000, 30000]
    gains = []
    for (rel1, e1), (rel2, e2) in zip(flats[::2], flats[1::2]):
        assert e1["level_adu"] == e2["level_adu"]
        f1, f2 = _data(raw, manifest, rel1), _data(raw, manifest, rel2)
        gains.append(_ptc_gain(f1, f2, b1, b2))
    _assert_ptc_gains(gains, gain)


def test_gain_card_is_a_setting_and_darkflats_measure_the_gain(presets):
    raw, _, manifest = presets["night_gain_as_setting"]
    cam = manifest["cameras"]["cmos"]
    assert cam["gain"] == 0.8 and cam["header"]["cards"] == {"GAIN": 100}
    kinds = {s["kind"]: s for s in manifest["sets"].values()}
    assert "bias" not in kinds
    assert kinds["dark"]["exptime"] == kinds["light"]["exptime"] == 120.0
    assert kinds["darkflat"]["exptime"] == kinds["flat"]["exptime"] == 2.0
    d1, d2 = (_data(raw, manifest, rel) for rel in kinds["darkflat"]["frames"][:2])
    flats = kinds["flat"]["frames"]
    gains = []
    for rel1, rel2 in zip(flats[::2], flats[1::2]):
        f1, f2 = _data(raw, manifest, rel1), _data(raw, manifest, rel2)
        gains.append(_ptc_gain(f1, f2, d1, d2))
    _assert_ptc_gains(gains, 0.8)


def test_read_noise_from_a_darkflat_pair(presets):
    raw, truth, manifest = presets["night_gain_as_setting"]
    cam = manifest["cameras"]["cmos"]
    gain, rn = cam["gain"], cam["read_noise_e"]
    d1, d2 = (_data(raw, manifest, rel) for rel in manifest["sets"]["darkflat_2s"]["frames"][:2])
    dark_e = _truth_img(truth, cam["dark_rate_e_per_s"]) * 2.0
    hot = fits.getdata(truth / cam["hot_pixels"]).astype(bool)
    quiet = dark_e < 0.1  # no hot pixel, no glow
    expected = 2 * (rn**2 + dark_e[quiet].mean()) / gain**2 + 1 / 6
    sampling = expected * np.sqrt(2 / (quiet.sum() - 1))
    assert abs(np.var((d1 - d2)[quiet]) - expected) < 4 * sampling
    # hot pixels and glow add their dark shot noise: a pair of darks is no bias pair
    assert np.var((d1 - d2)[hot]) > 2 * np.var((d1 - d2)[quiet])


def test_single_frame_dark_scaled_is_worse_than_scaled_master(presets):
    raw, truth, manifest = presets["night_single_frame_darks"]
    cam = manifest["cameras"]["ccd"]
    sets = manifest["sets"]
    assert [sets[s]["count"] for s in ("dark_20s", "dark_60s")] == [1, 11]
    assert sets["flat_V_23s"]["exptime"] == sets["light_V_23s"]["exptime"] == 23.0

    def cube(set_name):
        return np.array([_raw(raw, rel) for rel in sets[set_name]["frames"]])

    bias = cube("bias").mean(axis=0)
    dark60 = np.median(cube("dark_60s"), axis=0)
    dark20 = cube("dark_20s")[0]
    true_dark = _truth_img(truth, cam["dark_rate_e_per_s"]) * 23.0 / cam["gain"]
    true_total = _truth_img(truth, cam["bias2d"]) + true_dark  # no overscan, level ~0
    from_master = bias + 23 / 60 * (dark60 - bias)  # x0.38
    from_single = bias + 23 / 20 * (dark20 - bias)  # x1.15
    rms_master = np.std(from_master - true_total)
    rms_single = np.std(from_single - true_total)
    assert rms_master < rms_single / 3


def test_temperature_jitters_and_bias_comes_from_darks(presets):
    raw, truth, manifest = presets["night_temperature_jitter"]
    cam = manifest["cameras"]["cam"]
    temps = []
    for rel, entry in manifest["frames"].items():
        h = fits.getheader(raw / rel)
        assert h["SET-TEMP"] == -15.0 and h["CCD-TEMP"] == entry["temperature_c"]
        temps.append(h["CCD-TEMP"])
    temps = np.array(temps)
    assert np.all(np.abs(temps + 15.0) <= 0.2 + 1e-9)
    assert np.ptp(temps) > 0.2 and len(set(temps)) > len(temps) // 2
    assert not any(e["type"] == "bias" for e in manifest["frames"].values())
    exptimes = np.array([30.0, 60.0, 120.0])
    medians = np.array(
        [
            np.median(
                [_raw(raw, rel) for rel in manifest["sets"][f"dark_{t:g}s"]["frames"]],
                axis=0,
            )
            for t in exptimes
        ]
    )
    slope, intercept = np.polyfit(exptimes, medians.reshape(3, -1), 1)
    bias2d = _truth_img(truth, cam["bias2d"]).ravel()
    rate_adu = _truth_img(truth, cam["dark_rate_e_per_s"]).ravel() / cam["gain"]
    assert abs(np.median(intercept - bias2d)) < 0.5
    assert np.median(slope) == pytest.approx(np.median(rate_adu), rel=0.1)


def test_lamp_flat_sets_differ_in_illumination_only(presets):
    raw, truth, manifest = presets["night_lamp_flats"]
    sets = manifest["sets"]
    a, b = sets["flat_lamp_A"], sets["flat_lamp_B"]
    headers = [fits.getheader(raw / s["frames"][0]) for s in (a, b)]
    assert headers[0]["FILTER"] == headers[1]["FILTER"] == "R"
    assert headers[0]["EXPTIME"] == headers[1]["EXPTIME"]
    assert (headers[0]["OBJECT"], headers[1]["OBJECT"]) == (
        "flat lamp A",
        "flat lamp B",
    )
    assert a["flat"] == b["flat"] == manifest["cameras"]["ccd"]["flats"]["R"]
    illum_a, illum_b = _truth_img(truth, a["illumination"]), _truth_img(truth, b["illumination"])
    assert illum_a[0, -1] / illum_a[0, 0] == pytest.approx(1.03 / 0.97, rel=1e-6)
    bias = np.mean([_data(raw, manifest, rel) for rel in sets["bias"]["frames"]], axis=0)

    def master(s):
        return np.mean([_data(raw, manifest, rel) for rel in s["frames"]], axis=0) - bias

    measured = master(a).mean(axis=0) / master(b).mean(axis=0)  # per column
    expected = (illum_a / illum_b)[0]
    assert np.abs(measured - expected).max() < 0.01
    # the shapes really differ: A/B rises ~12 % from the left edge to the right
    assert measured[-10:].mean() / measured[:10].mean() > 1.08


def test_dark_subtracted_lights_calibrate_with_pedestal_only(presets):
    raw, truth, manifest = presets["night_dark_subtracted"]
    cam = manifest["cameras"]["cmos"]
    lights = manifest["sets"]["light_L_120s"]
    camera_dark = lights["camera_dark"]
    assert camera_dark["frames"] == 8 and camera_dark["pedestal_adu"] == 100
    assert manifest["sets"]["dark_120s"]["exptime"] == 120.0  # present, not to be used
    flat = _truth_img(truth, cam["flats"]["L"])
    hot = fits.getdata(truth / cam["hot_pixels"]).astype(bool)
    for rel in lights["frames"]:
        h = fits.getheader(raw / rel)
        assert h["PEDESTAL"] == -100 and h["CALSTAT"] == "D"
        assert "Auto-Dark Subtraction" in str(h["HISTORY"])
        written = _raw(raw, rel)
        signal = _truth_img(truth, manifest["lights"][rel]["signal"])
        sigma = _truth_img(truth, manifest["lights"][rel]["ideal_sigma"])
        cal = (written + h["PEDESTAL"]) / flat
        z = (cal - signal) / sigma
        assert cal.mean() == pytest.approx(signal.mean(), rel=0.005)
        assert np.std(z) == pytest.approx(1.0, abs=0.03)
        assert abs(z[hot].mean()) < 0.5  # the camera's dark removed the hot pixels
    # ideal sigma as documented: the raw light's, plus the camera's master dark of 8
    # frames (one dark's variance / 8) and a second rounding (1/12 ADU^2)
    gain, rn = cam["gain"], cam["read_noise_e"]
    dark_e = _dark_e(manifest, truth, "cmos", manifest["frames"][rel])
    raw_var = (rn**2 + flat * signal * gain + dark_e) / gain**2 + 1 / 12
    master_var = ((rn**2 + dark_e) / gain**2 + 1 / 12) / 8
    np.testing.assert_allclose((sigma * flat) ** 2 - raw_var, master_var + 1 / 12, rtol=1e-3, atol=0.01)


@pytest.mark.parametrize("name", ["night_gain_as_eadu", "night_lamp_flats", "night_single_frame_darks"])
def test_camera_night_light_perfect_calibration_matches_truth(presets, name):
    raw, truth, manifest = presets[name]
    for rel in manifest["lights"]:
        cal, signal, sigma = _calibrate_with_truth(raw, truth, manifest, rel)
        assert cal.mean() == pytest.approx(signal.mean(), rel=0.005)
        assert np.std((cal - signal) / sigma) == pytest.approx(1.0, abs=0.03)
        assert signal.max() > 2000 and _raw(raw, rel).max() < 65535


def test_twilight_flats_fade_with_stars_at_random_positions(tmp_path):
    levels = (30000.0, 24000.0, 19000.0, 15000.0, 12000.0)
    spec = CameraNight(
        CameraSpec(key="tw"),
        (
            FrameSet("bias", "bias", 3, start_h=15.0),
            FrameSet("flat_B", "flat", 5, 3.0, filter="B", levels_adu=levels, n_stars=25),
        ),
    )
    manifest = write_camera_night(tmp_path / "raw", tmp_path / "truth", spec)
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    flat = _truth_img(truth, manifest["cameras"]["tw"]["flats"]["B"])
    bias2d = _truth_img(truth, manifest["cameras"]["tw"]["bias2d"])
    peaks = set()
    for (rel, entry), level in zip(_set_frames(manifest, "flat_B"), levels):
        assert entry["level_adu"] == level and entry["n_stars"] == 25
        resid = (_data(raw, manifest, rel) - bias2d) / flat - level
        assert np.median(resid) == pytest.approx(0, abs=0.01 * level)
        assert resid.max() > 1500  # bright stars present
        peaks.add(np.unravel_index(np.argmax(resid), resid.shape))
    assert len(peaks) == len(levels)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FrameSet("f", "flat", 3, 1.0, filter="V", levels_adu=(1000.0,)),
        lambda: FrameSet("x", "zero", 3),
        lambda: FrameSet("d", "dark", 3, 60.0, camera_dark_frames=4),
        lambda: CameraSpec(gain_keyword="GAIN", gain_setting=100),
        lambda: CameraSpec(shape=(64, 64)),
        lambda: CameraNight(frame_sets=(FrameSet("a", "bias"), FrameSet("a", "bias"))),
    ],
)
def test_inconsistent_specs_are_refused(make):
    with pytest.raises(ValueError):
        make()
