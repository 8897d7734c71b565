"""Calibration steps as data (ccdcal.steps): the list is checked, the Calibrator runs the
steps listed and only those, a step left out is neither done nor flagged, and the
default list gives what the fixed recipe gave."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from ccdcal import Calibrator
from ccdcal.config import camera_defaults
from ccdcal.overscan import layout_for
from ccdcal.products import write_product
from ccdcal.provenance import settings_digest, settings_for
from ccdcal.steps import DEFAULT_STEPS, STEPS, history, light_steps, steps_run

NY, NX, ROWS = 40, 50, 10  # image rows and columns; overscan rows at the bottom of the raw frame
OVERSCAN, BIAS, DARK_RATE, SIGNAL = 1000.0, 5.0, 2.0, 3000.0  # ADU, ADU, ADU/s, ADU


# ------------------------------------------------------------------ the list
def test_default_list_and_registry():
    assert (
        [s.name for s in light_steps()]
        == list(DEFAULT_STEPS)
        == ["overscan", "trim", "bias", "dark", "flat", "fringe", "cosmic_rays", "cosmetic"]
    )
    assert set(DEFAULT_STEPS) <= set(STEPS)
    # the image steps are off until their settings enable them: the fixed recipe of before
    assert history(steps_run(None, {})) == "overscan/trim, bias, dark, flat"
    assert history(steps_run(None, {"cosmetic": {"enabled": True}})) == "overscan/trim, bias, dark, flat, cosmetic"
    assert history(steps_run(None, {"fringe": {"filters": ["z"]}})) == "overscan/trim, bias, dark, flat, fringe"
    assert history(light_steps(["overscan", "bias", "flat"])) == "overscan, bias, flat"
    assert camera_defaults()["steps"] == list(DEFAULT_STEPS)  # the schema's default is the package's


@pytest.mark.parametrize(
    "names, words",
    [
        (["overscan", "trim", "bais"], ["unknown", "'bais'", "known: overscan"]),
        (["bias", "bias"], ["twice", "bias"]),
        (["overscan", "trim", "flat", "dark"], ["order", "dark, flat"]),
        (["bias", "trim"], ["raw steps", "first"]),
        (["overscan", "cosmetic", "flat"], ["raw steps", "image steps"]),
    ],
)
def test_a_wrong_list_is_refused_saying_why(names, words):
    with pytest.raises(ValueError) as info:
        light_steps(names)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_the_schema_refuses_an_unknown_step():
    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="cosmic"):
        camera_defaults(steps=["overscan", "cosmic"])


# ------------------------------------------------------------------ the Calibrator runs the list
@pytest.fixture
def night(tmp_path):
    """A raw light (overscan rows at the bottom) and masters with known values."""
    rng = np.random.default_rng(3)
    flat = np.linspace(0.9, 1.1, NX)[None, :] * np.ones((NY, 1))
    raw = np.empty((NY + ROWS, NX))
    raw[:ROWS] = OVERSCAN
    raw[ROWS:] = OVERSCAN + BIAS + DARK_RATE * 100.0 + flat * SIGNAL
    raw += rng.normal(0, 0.01, raw.shape)  # far below one ADU: rounding dominates
    header = fits.Header(
        {
            "EXPTIME": 100.0,
            "IMAGETYP": "LIGHT",
            "BIASSEC": f"[1:{NX},1:{ROWS}]",
            "DATASEC": f"[1:{NX},{ROWS + 1}:{NY + ROWS}]",
        }
    )
    fits.PrimaryHDU(np.round(raw).astype(np.uint16), header=header).writeto(tmp_path / "raw.fits")
    zeros = np.zeros((NY, NX), np.float32)
    mask = zeros.astype(np.uint8)
    write_product(tmp_path / "bias.fits", zeros + BIAS, zeros + 0.1, mask, fits.Header({"EXPTIME": 0.0}))
    write_product(
        tmp_path / "dark.fits", zeros + BIAS + DARK_RATE * 50.0, zeros + 0.1, mask, fits.Header({"EXPTIME": 50.0})
    )
    write_product(tmp_path / "flat.fits", flat.astype(np.float32), zeros + 0.001, mask, fits.Header(), unit="")
    return tmp_path, flat


def calibrated(night, name, **parameters):
    d, _ = night
    masters = {"master_bias": d / "bias.fits", "master_dark": d / "dark.fits", "master_flat": d / "flat.fits"}
    calibrate = Calibrator(
        camera_defaults(overscan={"method": "mean", "regions": "header"}),
        gain=2.0,
        read_noise=5.0,
        **{**masters, **parameters},
    )
    calibrate(raw=d / "raw.fits", calibrated=d / name)
    with fits.open(d / name) as hdul:
        return hdul[0].data.astype(np.float64), hdul[0].header


def test_default_steps_give_the_science_and_say_so(night):
    _, flat = night
    data, header = calibrated(night, "all.fits")
    np.testing.assert_allclose(data, SIGNAL, atol=0.6)
    assert header["CALFLAGS"] == "OK"
    assert "ccdcal: overscan/trim, bias, dark, flat;" in str(header["HISTORY"])
    assert (header["DARKMODE"], header["DARKSCAL"]) == ("scaled", 2.0)


def test_a_step_left_out_is_not_done_nor_flagged(night):
    _, flat = night
    no_dark, header = calibrated(night, "nodark.fits", steps=["overscan", "trim", "bias", "flat"])
    np.testing.assert_allclose(no_dark, SIGNAL + DARK_RATE * 100.0 / flat, atol=0.6)
    assert header["CALFLAGS"] == "OK"  # not NODARK: the profile does not want a dark
    assert "DARKFILE" not in header and "DARKMODE" not in header
    assert "ccdcal: overscan/trim, bias, flat;" in str(header["HISTORY"])

    no_flat, header = calibrated(night, "noflat.fits", steps=["overscan", "trim", "bias", "dark"])
    np.testing.assert_allclose(no_flat, SIGNAL * flat, atol=0.6)
    assert header["CALFLAGS"] == "OK" and "FLATFILE" not in header

    no_overscan, header = calibrated(night, "nooverscan.fits", steps=["trim", "bias", "dark", "flat"])
    np.testing.assert_allclose(no_overscan, SIGNAL + OVERSCAN / flat, atol=0.6)
    assert "OVSCLV1" not in header

    untrimmed, header = calibrated(
        night, "untrimmed.fits", steps=["overscan", "bias"], master_dark=None, master_flat=None, master_bias=None
    )
    assert untrimmed.shape == (NY + ROWS, NX)  # the overscan rows are kept
    np.testing.assert_allclose(untrimmed[ROWS:], BIAS + DARK_RATE * 100.0 + flat * SIGNAL, atol=0.6)
    np.testing.assert_allclose(untrimmed[:ROWS], OVERSCAN, atol=0.6)  # outside the data: as read
    assert header["CALFLAGS"] == "NOBIAS"  # bias is listed and missing: flagged


def test_the_layout_of_a_profile_follows_its_raw_steps():
    header = {"BIASSEC": f"[1:{NX},1:{ROWS}]", "DATASEC": f"[1:{NX},{ROWS + 1}:{NY + ROWS}]"}
    planned = layout_for(header, (NY + ROWS, NX), camera_defaults(overscan={"method": "mean"}))
    assert planned.shape == (NY, NX) and planned.corrects
    untrimmed = layout_for(
        header,
        (NY + ROWS, NX),
        camera_defaults(overscan={"method": "mean"}, steps=["overscan", "bias", "dark", "flat"]),
    )
    assert untrimmed.shape == (NY + ROWS, NX) and untrimmed.corrects
    uncorrected = layout_for(
        header, (NY + ROWS, NX), camera_defaults(overscan={"method": "mean"}, steps=["trim", "bias", "dark", "flat"])
    )
    assert uncorrected.shape == (NY, NX) and not uncorrected.corrects


def test_the_default_list_leaves_product_digests_as_they_were():
    camera = camera_defaults()
    default = settings_for(camera, "light")
    assert "steps" not in default  # products made before steps existed keep their CFGDIGST
    changed = settings_for({**camera, "steps": ["overscan", "trim", "bias", "flat"]}, "light")
    assert changed["steps"] == ["overscan", "trim", "bias", "flat"]
    assert settings_digest(changed) != settings_digest(default)


# ------------------------------------------------------------------ the image steps
@pytest.fixture
def sky_light(tmp_path):
    """A raw light (no overscan) of sky and noise with injected cosmic rays, a bias, and a
    dark whose hot pixels are flagged BADPIX; returns (folder, cosmic-ray truth, hot pixels)."""
    from ccdcal import simulate

    rng = np.random.default_rng(11)
    shape, gain, bias_level, sky_e = (200, 220), 2.0, 500.0, 400.0
    electrons = np.full(shape, sky_e)
    truth = simulate.inject_cosmic_rays(electrons, rng, 60, amplitude_e=(400.0, 5000.0))
    raw = bias_level + rng.poisson(electrons) / gain + rng.normal(0, 3.0, shape)
    hot = np.zeros(shape, bool)
    hot[rng.integers(0, shape[0], 30), rng.integers(0, shape[1], 30)] = True
    raw[hot] += 3000.0
    fits.PrimaryHDU(
        np.round(raw).astype(np.uint16), header=fits.Header({"EXPTIME": 60.0, "IMAGETYP": "LIGHT"})
    ).writeto(tmp_path / "raw.fits")
    zeros = np.zeros(shape, np.float32)
    write_product(
        tmp_path / "bias.fits", zeros + bias_level, zeros + 0.5, zeros.astype(np.uint8), fits.Header({"EXPTIME": 0.0})
    )
    dark_mask = np.where(hot, 1, 0).astype(np.uint8)  # BADPIX
    # the dark under-subtracts its hot pixels (they changed since it was made): 1500 ADU left
    write_product(
        tmp_path / "dark.fits",
        np.where(hot, bias_level + 1500.0, bias_level).astype(np.float32),
        zeros + 0.5,
        dark_mask,
        fits.Header({"EXPTIME": 60.0}),
    )
    return tmp_path, truth.mask & ~hot, hot


def run_light(d, name, **parameters):
    masters = {"master_bias": d / "bias.fits", "master_dark": d / "dark.fits"}
    calibrate = Calibrator(
        camera_defaults(overscan={"method": "none"}, trim="none"), gain=2.0, read_noise=6.0, **{**masters, **parameters}
    )
    calibrate(raw=d / "raw.fits", calibrated=d / name)
    with fits.open(d / name) as hdul:
        return hdul[0].data.astype(np.float64), hdul["MASK"].data, hdul[0].header, hdul["MASK"].header


def test_cosmic_rays_step_flags_the_hits_when_enabled(sky_light):
    d, hits, _ = sky_light
    off, off_mask, header, mask_header = run_light(d, "off.fits")
    assert not (off_mask & 16).any() and "NCOSMIC" not in header and "MASKB16" not in mask_header
    on, on_mask, header, mask_header = run_light(d, "on.fits", cosmic_rays={"enabled": True})
    flagged = (on_mask & 16) > 0
    assert flagged[hits].mean() > 0.9  # hits of 400-5000 e- on a 400 e- sky
    assert (flagged & ~hits).sum() <= 10  # of 44000 other pixels
    assert header["NCOSMIC"] == int(flagged.sum()) and mask_header["MASKB16"] == "COSMIC"
    assert "cosmic_rays" in str(header["HISTORY"])
    assert np.array_equal(on, off)  # flagged, not replaced
    replaced, _, header, _ = run_light(d, "replaced.fits", cosmic_rays={"enabled": True, "replace": True})
    assert header["CRREPL"] == header["NCOSMIC"]
    assert np.array_equal(replaced[~flagged], off[~flagged])
    assert np.median(np.abs(replaced[hits & flagged] - np.median(off))) < 30  # back to the sky (200 ADU)


def test_cosmetic_step_replaces_bad_pixels_and_keeps_their_flag(sky_light):
    d, hits, hot = sky_light
    plain, mask, header, _ = run_light(d, "plain.fits")
    assert np.median(plain[hot]) > 1000  # what the dark left of the hot pixels
    assert "NCOSMETC" not in header
    corrected, mask, header, _ = run_light(d, "corrected.fits", cosmetic={"enabled": True})
    flagged = (mask & 1) > 0  # BADPIX, from the dark
    assert flagged[hot].all() and header["NCOSMETC"] == int(flagged.sum())
    sky = np.median(plain[~flagged])
    assert np.abs(corrected[hot & ~hits] - sky).max() < 60  # neighbours' median: the sky, within its noise
    assert np.array_equal(corrected[~flagged], plain[~flagged])  # nothing else changes
    assert "cosmetic" in str(header["HISTORY"])


def test_step_settings_defaults_are_the_science_modules_defaults():
    from dataclasses import asdict

    from ccdcal.cosmetic import CosmeticSettings
    from ccdcal.cosmic import CosmicSettings

    camera = camera_defaults()
    for name, settings in (("cosmic_rays", CosmicSettings()), ("cosmetic", CosmeticSettings())):
        assert camera[name] == {"enabled": False, **asdict(settings)}, name
