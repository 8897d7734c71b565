"""Tests of the demo-night simulator (ccdcal.simulate) against its own truth."""

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

from ccdcal.simulate import DEFAULT_SEED, write_demo_night

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
    return (
        entry["overscan_offset_adu"] + entry["overscan_slope_adu"] * np.arange(ny) / ny
    )[:, None]


def _dark_e(manifest, truth_dir, cam, entry):
    c = manifest["cameras"][cam]
    rate = _truth_img(truth_dir, c["dark_rate_e_per_s"])
    return (
        rate
        * 2 ** ((entry["set_temp_c"] - c["temperature_c"]) / c["dark_doubling_c"])
        * entry["exptime"]
    )


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
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_byte_identical_when_written_twice(night, tmp_path):
    raw, truth, manifest = night
    manifest2 = write_demo_night(
        tmp_path / "raw", tmp_path / "truth", seed=DEFAULT_SEED
    )
    assert manifest2 == manifest
    for a, b in ((raw, tmp_path / "raw"), (truth, tmp_path / "truth")):
        fa, fb = _all_files(a), _all_files(b)
        assert sorted(fa) == sorted(fb)
        different = [k for k in fa if fa[k] != fb[k]]
        assert different == []
    assert len([k for k in _all_files(raw) if k.endswith(".fits")]) == 92


#: sha256 over (path, sha256 of bytes) of every file the demo night writes (raw/ then truth/,
#: sorted paths), computed with the simulator as of commit e82293b (numpy 2.4.6, astropy 8.0.2).
#: Changing the simulator must not change the demo night; an astropy or numpy upgrade that
#: rewrites headers or random streams would, and then this is recomputed on purpose.
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
    assert set(manifest["lights"]) == {
        k for k, e in manifest["frames"].items() if e["type"] == "light"
    }
    for light in manifest["lights"].values():
        assert (truth / light["signal"]).is_file() and (
            truth / light["ideal_sigma"]
        ).is_file()
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
    assert (
        abs(h["CCD-TEMP"] + 20.0) <= 0.15
        and h["EXPTIME"] == 120.0
        and h["FILTER"] == "V"
    )
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
    assert (
        fits.getheader(raw / "cmos/darkflats/darkflat_2s_001.fits")["IMAGETYP"]
        == "DARKFLAT"
    )
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
        assert (
            exptimes == sorted(exptimes) and exptimes[0] == 1.0 and exptimes[-1] == 8.0
        )
        assert (
            levels.min() > 11000
            and levels.max() < 31000
            and levels.max() / levels.min() > 1.8
        )
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
    assert (
        fv.shape == (512, 512)
        and fits.getdata(truth / ccd["flats"]["V"]).dtype.kind == "f"
    )
    assert np.median(fv) == pytest.approx(1.0, abs=1e-6)
    assert 0.7 < np.mean([fv[:5, :5].mean(), fv[-5:, -5:].mean()]) < 0.9
    assert np.std(fv - fr) > 0.003
    hot = fits.getdata(truth / ccd["hot_pixels"])
    assert hot.dtype == np.uint8 and 0.001 < hot.mean() < 0.004
    rate = _truth_img(truth, ccd["dark_rate_e_per_s"])
    assert rate[hot == 1].min() >= 0.5 and np.median(rate) == pytest.approx(
        0.02, rel=0.1
    )
    m10, m5 = _truth_img(truth, cmos["dark_rate_e_per_s"]), _truth_img(
        truth, cmos["dark_rate_e_per_s_m5"]
    )
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
            assert (
                abs(
                    np.mean(over)
                    - (e["overscan_offset_adu"] + e["overscan_slope_adu"] / 2)
                )
                < 0.2
            )
            diffs.append(np.median(img[:, :512]) - np.median(over))
    assert abs(np.mean(diffs) - np.median(bias2d)) < 1.0
    assert all(abs(d - np.median(bias2d)) < 1.5 for d in diffs)
    # overscan level drifts between frames by a few ADU
    offsets = [
        e["overscan_offset_adu"]
        for e in manifest["frames"].values()
        if e["camera"] == "ccd"
    ]
    assert 2 < np.ptp(offsets) < 60 and all(abs(o - 1000) < 40 for o in offsets)


def test_ccd_darks_have_cosmic_rays(night):
    raw, truth, manifest = night
    darks = [
        (rel, e)
        for rel, e in manifest["frames"].items()
        if e["camera"] == "ccd" and e["type"] == "dark"
    ]
    cube = np.array([_raw(raw, rel)[:, :512] - _level(e, 512) for rel, e in darks])
    med = np.median(cube, axis=0)
    for (rel, e), img in zip(darks, cube):
        n_hits = np.count_nonzero(img - med > 400)  # >600 e- above the median
        assert e["n_cosmic_rays"] >= 25 and n_hits >= e["n_cosmic_rays"] * 0.8


def test_cmos_dark_temperature_scaling(night):
    raw, truth, manifest = night
    bias2d = _truth_img(truth, manifest["cameras"]["cmos"]["bias2d"])

    def master(tag):
        frames = [
            (rel, e)
            for rel, e in manifest["frames"].items()
            if f"dark_120s_{tag}_" in rel
        ]
        return np.mean(
            [_raw(raw, rel) - e["overscan_offset_adu"] - bias2d for rel, e in frames],
            axis=0,
        )

    m10, m5 = np.median(master("-10C")), np.median(master("-5C"))
    assert m10 == pytest.approx(1.2, rel=0.25)  # 0.01 e-/s * 120 s, gain 1
    assert 1.5 < m5 / m10 < 2.1  # expected 2**(5/6) = 1.78


@pytest.mark.parametrize(
    "rel", ["ccd/lights/NGC7331_V_001.fits", "ccd/lights/NGC7331_R_003.fits"]
)
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
    bias2d, flat = _truth_img(truth, cmos["bias2d"]), _truth_img(
        truth, cmos["flats"]["L"]
    )
    darks = [(r, e) for r, e in manifest["frames"].items() if "dark_120s_-10C_" in r]
    master = np.median(
        [_raw(raw, r) - e["overscan_offset_adu"] - bias2d for r, e in darks], axis=0
    )
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
