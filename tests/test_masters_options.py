"""XParallax viu's options in the masters and outputs, each failing if ignored."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits

from ccdcal.config import validated
from ccdcal.inventory import list_raw_files, take_inventory
from ccdcal.jobs.build_master import master_job
from ccdcal.plan import make_plan, master_inputs


@pytest.fixture(scope="module")
def ccd_night(tmp_path_factory):
    from ccdcal.simulate import write_demo_night

    base = tmp_path_factory.mktemp("options")
    manifest = write_demo_night(base / "raw", base / "truth")
    return base, manifest


def build_flat(base, camera_overrides, tag):
    config = validated(
        {
            "raw_dir": str(base / "raw"),
            "output_dir": str(base / tag),
            "cameras": [
                {
                    "name": "ccd",
                    "match": {"header": {"INSTRUME": "SimCam*"}},
                    "overscan": {"method": "polynomial"},
                    **camera_overrides,
                }
            ],
        }
    )
    records, cameras = take_inventory(base / "raw", list_raw_files(base / "raw"), config)
    plan = make_plan(records, config, cameras)
    out = base / tag / "masters"
    for kind in ("bias", "dark", "flat"):
        for name, spec in plan["masters"].items():
            if spec["type"] == kind and name.startswith(f"{kind}_ccd") and (kind != "flat" or name.endswith("_V")):
                needs = [str(out / f"{m}.fits") for m in master_inputs(plan, name)["masters"]]
                master_job(spec, plan["cameras"]["ccd"], needs, str(out / f"{name}.fits"), config, threads=2)
    return out / "flat_ccd_1x1_Normal_V.fits"


def binned_residual(path, truth):
    ratio = fits.getdata(path).astype(np.float64) / truth
    ratio /= np.median(ratio)
    binned = ratio.reshape(128, 4, 128, 4).mean(axis=(1, 3))  # 4x4 bins: noise ~0.05 %
    return np.abs(binned - 1).max()


def test_sky_flat_star_rejection_removes_the_stars_a_mean_keeps(ccd_night):
    base, manifest = ccd_night
    truth = fits.getdata(base / "truth" / manifest["cameras"]["ccd"]["flats"]["V"]).astype(np.float64)
    mean = {"combine": {"flat": {"method": "mean"}}}
    plain = build_flat(base, mean, "plain")
    rejected = build_flat(base, {**mean, "flat": {"star_rejection": {"method": "sigma", "k": 3.0}}}, "rejected")
    assert binned_residual(plain, truth) > 0.05  # stars left by a plain mean
    assert binned_residual(rejected, truth) < 0.005  # none above 0.5 % with the mesh rejection
    assert fits.getheader(rejected)["NSTARREJ"] > 1000


def test_minmax_rejection_uses_absolute_limits(ccd_night):
    base, manifest = ccd_night
    truth = fits.getdata(base / "truth" / manifest["cameras"]["ccd"]["flats"]["V"]).astype(np.float64)
    # the stars peak at thousands of ADU above the flats' sky: a high limit just above the
    # brightest flat's vignetted sky removes their cores (not their wings, which stay
    # below it): where a plain mean is furthest from the truth, the flat comes closer
    mean = {"combine": {"flat": {"method": "mean"}}}
    plain = build_flat(base, mean, "plain-minmax")
    flat = build_flat(
        base, {**mean, "flat": {"star_rejection": {"method": "minmax", "low": 1000, "high": 31000}}}, "minmax"
    )
    assert fits.getheader(flat)["NSTARREJ"] > 0

    def error(path):
        ratio = fits.getdata(path).astype(np.float64) / truth
        return (ratio / np.median(ratio) - 1).ravel()

    worst = np.argsort(error(plain))[-200:]
    assert error(flat)[worst].mean() < 0.8 * error(plain)[worst].mean()


def test_bias_from_darks_recovers_the_bias_and_lets_darks_scale(tmp_path):
    """No bias frames; darks of 30, 60 and 120 s: the fitted intercept is the bias within its
    own predicted noise, and a 90 s light gets bias + scaled dark."""
    from datetime import datetime, timedelta

    rng = np.random.default_rng(9)
    shape = (64, 80)
    bias = 300.0 + 4.0 * np.sin(np.arange(shape[1]) / 5.0)[None, :] + rng.normal(0, 1.0, shape)
    rate = np.where(rng.random(shape) < 0.02, 5.0, 0.2)  # e-/s, gain 1
    raw = tmp_path / "raw"
    raw.mkdir()
    start = datetime(2026, 3, 1, 20, 0)
    frames = [("DARK", t, i) for t in (30.0, 60.0, 120.0) for i in range(8)] + [("LIGHT", 90.0, 0)]
    for n, (kind, t, i) in enumerate(frames):
        data = bias + rng.poisson(rate * t + (500.0 if kind == "LIGHT" else 0.0)) + rng.normal(0, 4.0, shape)
        header = fits.Header(
            {
                "IMAGETYP": kind,
                "EXPTIME": t,
                "CCD-TEMP": -5.0,
                "EGAIN": 1.0,
                "RDNOISE": 4.0,
                "DATE-OBS": (start + timedelta(minutes=3 * n)).isoformat(),
                "FILTER": "L",
            }
        )
        fits.PrimaryHDU(np.round(data).astype(np.uint16), header=header).writeto(raw / f"{kind}_{t:g}_{i}.fits")
    config = validated(
        {"raw_dir": str(raw), "output_dir": str(tmp_path / "out"), "default_camera": {"overscan": {"method": "none"}}}
    )
    records, cameras = take_inventory(raw, list_raw_files(raw), config)
    plan = make_plan(records, config, cameras)
    (name,) = [n for n, m in plan["masters"].items() if m["derived_from"]]
    light = plan["lights"]["LIGHT_90_0.fits"]
    assert light["bias"] == name and light["dark_mode"] == "scaled"
    out = tmp_path / "out" / "masters"
    for master in sorted(plan["masters"], key=lambda n: bool(plan["masters"][n]["derived_from"])):
        spec = plan["masters"][master]
        needs = [str(out / f"{m}.fits") for m in master_inputs(plan, master)["masters"]]
        master_job(spec, plan["cameras"][spec["camera"]], needs, str(out / f"{master}.fits"), config)
    with fits.open(out / f"{name}.fits") as hdul:
        fitted, sigma = hdul[0].data.astype(np.float64), hdul["UNCERT"].data.astype(np.float64)
        assert hdul[0].header["BIASSRC"] == "darks" and hdul[0].header["NCOMBINE"] == 3
    z = (fitted - bias) / sigma
    # the std of N normal z scatters by 1/sqrt(2N) (1 % here): 4 of those, plus 1 % for the
    # model; the mean by 1/sqrt(N), and the clipped means of the skewed (Poisson, hot
    # pixels) darks pull the intercept by ~0.06 sigma: 0.1
    sampling = 1 / math.sqrt(2 * z.size)
    assert abs(np.std(z) - 1) < 4 * sampling + 0.01, (np.mean(z), np.std(z))
    assert abs(np.mean(z)) < 0.1, (np.mean(z), np.std(z))


def test_bias_from_darks_with_jittering_temperatures_through_snakemake(tmp_path):
    """Real dark masters sit at -14.895, -15.064 and -14.979 C: they never formed a group
    when grouped by exactly equal temperature, and when they did the workflow divided by
    zero sizing the fitted bias's job (it has no frames of its own)."""
    from datetime import datetime, timedelta

    from conftest import run_snakemake

    rng = np.random.default_rng(11)
    shape = (48, 64)
    bias = 300.0 + 4.0 * np.sin(np.arange(shape[1]) / 5.0)[None, :]
    raw = tmp_path / "raw"
    raw.mkdir()
    start = datetime(2026, 3, 1, 20, 0)
    centre = {30.0: -14.895, 60.0: -15.064, 120.0: -14.979}  # each set's mean reading
    frames = [("DARK", t, i) for t in centre for i in range(5)] + [("LIGHT", 90.0, 0)]
    for n, (kind, t, i) in enumerate(frames):
        temperature = round(centre.get(t, -15.0) + rng.uniform(-0.05, 0.05), 3)
        data = bias + rng.poisson(0.2 * t + (500.0 if kind == "LIGHT" else 0.0), shape) + rng.normal(0, 4.0, shape)
        header = fits.Header(
            {
                "IMAGETYP": kind,
                "EXPTIME": t,
                "CCD-TEMP": temperature,
                "EGAIN": 1.0,
                "RDNOISE": 4.0,
                "INSTRUME": "JitterCam",
                "FILTER": "L",
                "DATE-OBS": (start + timedelta(minutes=3 * n)).isoformat(),
            }
        )
        fits.PrimaryHDU(np.round(data).astype(np.uint16), header=header).writeto(raw / f"{kind}_{t:g}_{i}.fits")
    out = tmp_path / "out"
    run_snakemake(raw, out)
    plan = json.loads((out / "plan.json").read_text())
    (name,) = [n for n, m in plan["masters"].items() if m["derived_from"]]
    assert len(plan["masters"][name]["derived_from"]) == 3
    light = plan["lights"]["LIGHT_90_0.fits"]
    assert light["bias"] == name and light["dark_mode"] == "scaled" and light["flags"] == ["NOFLAT"]
    assert fits.getheader(out / "masters" / f"{name}.fits")["NCOMBINE"] == 3
    assert f"{name}: 3 dark masters fitted" in (out / "summary.txt").read_text()


def test_keep_intermediates_writes_the_overscan_corrected_frames(ccd_night, tmp_path):
    base, manifest = ccd_night
    for keep in (False, True):
        out = tmp_path / f"keep{keep}"
        config = validated(
            {
                "raw_dir": str(base / "raw"),
                "output_dir": str(out),
                "keep_intermediates": keep,
                "cameras": [
                    {"name": "ccd", "match": {"header": {"INSTRUME": "SimCam*"}}, "overscan": {"method": "polynomial"}}
                ],
            }
        )
        records, cameras = take_inventory(base / "raw", list_raw_files(base / "raw"), config)
        plan = make_plan(records, config, cameras)
        name = next(n for n in plan["masters"] if n.startswith("bias_ccd"))
        master_job(plan["masters"][name], plan["cameras"]["ccd"], [], str(out / "masters" / "b.fits"), config)
        kept = sorted((out / "work" / "frames").rglob("*.fits")) if (out / "work" / "frames").exists() else []
        if not keep:
            assert kept == []
            continue
        assert len(kept) == len(plan["masters"][name]["frames"])
        frame = fits.getdata(kept[0]).astype(np.float64)
        bias2d = fits.getdata(base / "truth" / manifest["cameras"]["ccd"]["bias2d"])
        assert frame.shape == (512, 512)  # trimmed
        assert abs(np.median(frame - bias2d)) < 1.0  # the overscan level is gone


def test_lamp_flats_combined_without_normalizing_each(tmp_path):
    """flat.normalize_each: false: two lamp flats of different level and illumination
    slope, mean-combined as they are, give the flux-weighted shape (their sum,
    normalized); normalized one by one first (the default) they give each shape equal
    weight."""
    shape = (40, 60)
    xx = np.arange(shape[1])[None, :] / shape[1]
    raw = tmp_path / "raw"
    raw.mkdir()
    lamps = [20000.0 * (1 + 0.3 * (xx - 0.5)), 5000.0 * (1 - 0.3 * (xx - 0.5))]
    for i, lamp in enumerate(lamps):
        header = fits.Header(
            {
                "IMAGETYP": "FLAT",
                "EXPTIME": 10.0,
                "FILTER": "Clear",
                "EGAIN": 1.0,
                "RDNOISE": 1.0,
                "DATE-OBS": f"2026-03-01T20:0{i}:00",
            }
        )
        fits.PrimaryHDU(np.broadcast_to(lamp, shape).astype(np.float32), header=header).writeto(raw / f"flat_{i}.fits")
    masters = {}
    for each in (True, False):
        config = validated(
            {
                "raw_dir": str(raw),
                "output_dir": str(tmp_path / f"out{each}"),
                "default_camera": {
                    "overscan": {"method": "none"},
                    "trim": "none",
                    "combine": {"flat": {"method": "mean"}},
                    "flat": {"normalize_each": each},
                },
            }
        )
        records, cameras = take_inventory(raw, list_raw_files(raw), config)
        plan = make_plan(records, config, cameras)
        (name,) = [n for n, m in plan["masters"].items() if m["type"] == "flat"]
        out = tmp_path / f"out{each}" / f"{name}.fits"
        master_job(plan["masters"][name], plan["cameras"][plan["masters"][name]["camera"]], [], str(out), config)
        masters[each] = fits.getdata(out)[0].astype(np.float64)
    weighted = (lamps[0] + lamps[1])[0]
    np.testing.assert_allclose(masters[False], weighted / np.median(weighted), rtol=1e-5)
    equal = (lamps[0] / np.median(lamps[0]) + lamps[1] / np.median(lamps[1]))[0]
    np.testing.assert_allclose(masters[True], equal / np.median(equal), rtol=1e-5)
    assert np.abs(masters[True] - masters[False]).max() > 0.05


@pytest.mark.parametrize("n_flats", [2, 3])
def test_master_flat_uncertainty_equals_its_scatter_for_few_flats(ccd_night, tmp_path, n_flats):
    """A median of 2 flats is their mean (variance factor 1, not pi/2), of 3 the exact 1.346:
    the master's UNCERT equals its scatter about the true flat. CMOS panel flats (~20000
    ADU, dark-subtracted with the darkflats): z = (master - s * truth) / UNCERT over the
    unflagged pixels has variance 1 within 4 standard errors of a sample variance (from
    z's own kurtosis: ~0.26 % for 307k pixels); the old pi/2 would give 0.64 and 0.86."""
    base, manifest = ccd_night
    config = validated({"raw_dir": str(base / "raw"), "output_dir": str(tmp_path)})
    records, cameras = take_inventory(base / "raw", list_raw_files(base / "raw"), config)
    plan = make_plan(records, config, cameras)
    (name,) = [n for n, m in plan["masters"].items() if m["type"] == "flat" and m["camera"].startswith("SimCMOS")]
    out = tmp_path / "masters"
    for master in master_inputs(plan, name)["masters"]:  # the darkflat master
        spec = plan["masters"][master]
        master_job(spec, plan["cameras"][spec["camera"]], [], str(out / f"{master}.fits"), config)
    spec = {**plan["masters"][name], "frames": plan["masters"][name]["frames"][:n_flats]}
    needs = [str(out / f"{m}.fits") for m in master_inputs(plan, name)["masters"]]
    master_job(spec, plan["cameras"][spec["camera"]], needs, str(out / "flat.fits"), config)
    with fits.open(out / "flat.fits") as hdul:
        flat, uncert = hdul[0].data.astype(np.float64), hdul["UNCERT"].data.astype(np.float64)
        good = hdul["MASK"].data == 0
        assert hdul[0].header["NCOMBINE"] == n_flats
    truth = fits.getdata(base / "truth" / manifest["cameras"]["cmos"]["flats"]["L"]).astype(np.float64)
    z = ((flat - np.median(flat / truth) * truth) / uncert)[good]
    dev = z - z.mean()
    m2, m4 = np.mean(dev**2), np.mean(dev**4)
    assert abs(m2 - 1) < 4 * math.sqrt((m4 / m2**2 - 1) / z.size), (m2, z.size)


def test_a_single_frame_dark_takes_the_read_noise_of_its_bias_never_zero(tmp_path):
    """One 20 s dark has no pair to measure its read noise on: it said RDNOISE = 0.0 and its
    UNCERT lacked the read noise. It now takes its bias master's (measured on a pair), and
    without a bias it says so (CALFLAGS NORDNOISE)."""
    rng = np.random.default_rng(5)
    shape = (40, 50)
    for with_bias in (True, False):
        raw = tmp_path / f"raw{with_bias}"
        raw.mkdir()
        frames = ([("BIAS", 0.0, i) for i in range(4)] if with_bias else []) + [("DARK", 20.0, 0)]
        for kind, t, i in frames:
            data = 500.0 + rng.poisson(0.5 * t, shape) + rng.normal(0, 6.0, shape)
            header = fits.Header(
                {"IMAGETYP": kind, "EXPTIME": t, "CCD-TEMP": -10.0, "EGAIN": 1.0, "DATE-OBS": f"2026-03-01T20:0{i}:00"}
            )
            fits.PrimaryHDU(np.round(data).astype(np.uint16), header=header).writeto(raw / f"{kind}_{i}.fits")
        config = validated(
            {
                "raw_dir": str(raw),
                "output_dir": str(tmp_path / f"out{with_bias}"),
                "default_camera": {"overscan": {"method": "none"}, "trim": "none", "dark": {"bias_from_darks": False}},
            }
        )
        records, cameras = take_inventory(raw, list_raw_files(raw), config)
        plan = make_plan(records, config, cameras)
        out = tmp_path / f"out{with_bias}"
        for name in sorted(plan["masters"], key=lambda n: n.startswith("dark")):
            spec = plan["masters"][name]
            needs = [str(out / f"{m}.fits") for m in master_inputs(plan, name)["masters"]]
            master_job(spec, plan["cameras"][spec["camera"]], needs, str(out / f"{name}.fits"), config)
        (dark,) = out.glob("dark_*.fits")
        header = fits.getheader(dark)
        if with_bias:
            (bias,) = out.glob("bias_*.fits")
            assert header["RDNOISE"] == fits.getheader(bias)["RDNOISE"] and header["RDNOISE"] > 4
            assert header["RNSOURCE"] == "master bias" and header["CALFLAGS"] == "OK"
        else:
            assert header["CALFLAGS"] == "NORDNOISE" and header["RNSOURCE"] == "unknown"
