"""Simulated nights of cameras as they are found in the field (ccdcal.simulate presets),
calibrated end to end by the workflow and checked against their truth: the gain measured
from the frames, the gain and read noise used and where they came from, and on every
light, that UNCERT is the actual scatter of the calibrated image about the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake

from ccdcal import simulate
from ccdcal.simulate import score_light, write_camera_night

#: Each preset's camera profile, as a user would write it for that camera.
NO_OVERSCAN = {"overscan": {"method": "none"}, "trim": "none"}
WITH_OVERSCAN = {"overscan": {"method": "polynomial", "order": 1, "regions": "header"}}
PROFILES = {
    "night_gain_as_eadu": WITH_OVERSCAN,
    "night_gain_as_setting": NO_OVERSCAN,
    "night_single_frame_darks": {},
    "night_temperature_jitter": NO_OVERSCAN,
    "night_lamp_flats": {**WITH_OVERSCAN, "flat": {"group_by": ["object"], "normalize_each": False}},
    "night_dark_subtracted": NO_OVERSCAN,
}
#: UNCERT must be the scatter: robust scatter of (calibrated - truth) / UNCERT in this range.
SCATTER_RANGE = (0.95, 1.05)
#: The measured gain is within this fraction of the truth.
GAIN_TOLERANCE = 0.03


def night_config(preset: str, spec: simulate.CameraNight) -> dict:
    camera = {"name": spec.camera.key, "match": {"header": {"INSTRUME": spec.camera.instrument}}, **PROFILES[preset]}
    return {"cameras": [camera]}


@pytest.fixture(scope="module")
def calibrated_night(tmp_path_factory):
    """``calibrated_night(preset, **profile)`` -> (preset, spec, manifest, truth, out): the
    preset's night written and calibrated by the workflow (once per module and profile)."""
    done = {}

    def run(preset: str, **profile):
        key = (preset, json.dumps(profile, sort_keys=True))
        if key not in done:
            spec = getattr(simulate, preset)()
            base = tmp_path_factory.mktemp(preset)
            raw, truth, out = base / "raw", base / "truth", base / "out"
            manifest = write_camera_night(raw, truth, spec)
            config = night_config(preset, spec)
            config["cameras"][0].update(profile)
            (base / "config.yaml").write_text(json.dumps(config))
            run_snakemake(raw, out, "--configfile", str(base / "config.yaml"))
            done[key] = preset, spec, manifest, truth, out
        return done[key]

    return run


@pytest.fixture(scope="module", params=sorted(PROFILES))
def night(request, calibrated_night):
    return calibrated_night(request.param)


def noise_record(out: Path) -> dict:
    records = sorted((out / "work" / "noise").glob("*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def light_illumination(manifest: dict, header) -> str | None:
    """The truth illumination of the lamp flats a light was calibrated with."""
    master = header["FLATFILE"]
    for entry in manifest["sets"].values():
        if entry["kind"] == "flat" and entry["object"] and entry["illumination"]:
            if simulate_object_label(entry["object"]) in master:
                return entry["illumination"]
    return None


def simulate_object_label(obj: str) -> str:
    from ccdcal.camera import safe_name

    return safe_name(obj)


def test_every_light_uncertainty_is_its_actual_scatter(night):
    """On every light, the robust scatter of (calibrated - truth) / UNCERT is within
    0.95-1.05 (the masters' noise included), and so is the robust scatter of
    calibrated - truth over the median UNCERT."""
    preset, spec, manifest, truth, out = night
    assert manifest["lights"], preset
    for rel, light in sorted(manifest["lights"].items()):
        calibrated = out / "calibrated" / rel
        header = fits.getheader(calibrated)
        score = score_light(calibrated, truth, light, light_illumination(manifest, header))
        lo, hi = SCATTER_RANGE
        assert lo <= score.z_scatter <= hi, f"{preset} {rel}: scatter/UNCERT {score.z_scatter:.4f}"
        assert lo <= score.scatter_ratio <= hi, f"{preset} {rel}: scatter / median UNCERT {score.scatter_ratio:.4f}"
        assert score.pixels > 0.9 * header["NAXIS1"] * header["NAXIS2"]


def test_gain_is_measured_and_said_where_it_came_from(night):
    """The gain is measured on every night with two flats and a zero pair, within 3 % of
    the truth; the gain used and its source are in the noise record, the masters' and
    the lights' headers and the summary; a header GAIN that is a setting is never used."""
    preset, spec, manifest, truth, out = night
    true_gain = spec.camera.gain
    record = noise_record(out)
    header_cards = manifest["cameras"][spec.camera.key]["header"]["cards"]
    measured = record["measured"].get("gain")
    has_zero_pair = preset != "night_temperature_jitter"  # no bias, no darkflats
    assert (measured is not None) == has_zero_pair, (preset, record["problems"])
    if measured:
        assert abs(measured["value"] / true_gain - 1) < GAIN_TOLERANCE, (preset, measured)
        # its error says how far it may be from the truth
        assert abs(measured["value"] - true_gain) < 4 * max(measured["error"], 0.005 * true_gain)
    if header_cards.get("EGAIN") is not None:
        expected_source, expected_gain = "header EGAIN", header_cards["EGAIN"]
        assert record["warnings"] == [], record["warnings"]  # header and measurement agree
    else:
        expected_source, expected_gain = "measured: photon transfer", round(measured["value"], 6)
    assert record["gain_source"].startswith(expected_source), record
    assert record["gain"] == expected_gain
    assert record["flags"] == []
    for rel in manifest["lights"]:
        header = fits.getheader(out / "calibrated" / rel)
        assert header["GAINUSED"] == pytest.approx(expected_gain, rel=1e-12)
        assert header["GAINSRC"] == record["gain_source"][:68]
        assert "NOGAIN" not in header["CALFLAGS"]
    for master in sorted((out / "masters").glob("*.fits")):
        header = fits.getheader(master)
        if header.get("BIASSRC") != "darks":
            assert header["EGAIN"] == pytest.approx(expected_gain, rel=1e-12), master.name
            assert header["GAINSRC"] == record["gain_source"][:68], master.name
    summary = (out / "summary.txt").read_text()
    assert f"gain {expected_gain:.4g} e-/ADU ({record['gain_source']}" in summary


def test_read_noise_is_measured_from_the_right_frames(night):
    """Read noise: measured on a bias pair when there is one; else the header's when it
    gives one; else measured on dark pairs at two or more exposures (the intercept: no
    dark-current noise in it). Measured within 5 % of the truth (and no warning: the
    header agrees), the same value in every light."""
    preset, spec, manifest, truth, out = night
    record = noise_record(out)
    true_rn = spec.camera.read_noise_e
    measured = record["measured"]["read_noise_adu"]
    m_rn = measured["value"] * record["gain"]
    assert abs(m_rn / true_rn - 1) < 0.05, (preset, m_rn, true_rn, measured["method"])
    has_bias = any(s["kind"] == "bias" for s in manifest["sets"].values())
    if has_bias:
        assert measured["method"].startswith("bias pair "), measured
    else:
        assert " dark pairs at " in measured["method"] and "intercept" in measured["method"], measured
    assert not measured["upper_limit"]
    assert not any(w.startswith("read noise") for w in record["warnings"]), record["warnings"]
    header_rn = manifest["cameras"][spec.camera.key]["header"]["cards"].get("RDNOISE")
    if header_rn is not None and not has_bias:
        assert (record["read_noise_e"], record["read_noise_source"]) == (header_rn, "header RDNOISE")
    else:  # a bias pair tonight comes before the header
        assert record["read_noise_e"] == round(m_rn, 4)  # as RDNOISE and RNUSED show it
        assert record["read_noise_source"].startswith("measured: ")
    for rel in manifest["lights"]:
        header = fits.getheader(out / "calibrated" / rel)
        assert header["RNUSED"] == round(record["read_noise_e"], 4)
        assert "NORDNOISE" not in header["CALFLAGS"]


def test_frames_the_camera_dark_subtracted_get_only_their_pedestal_removed_and_the_flat(calibrated_night):
    """MaxIm DL auto-dark lights (HISTORY, PEDESTAL = -100): no bias or dark again, the
    pedestal added back (PEDAPPL, and no PEDESTAL card left to apply twice), the level
    right: mean residual within 0.05 sigma."""
    _, _, manifest, truth, out = calibrated_night("night_dark_subtracted")
    for rel, light in sorted(manifest["lights"].items()):
        path = out / "calibrated" / rel
        header = fits.getheader(path)
        assert "BIASFILE" not in header and "DARKFILE" not in header, rel
        assert header["PEDAPPL"] == -100 and "PEDESTAL" not in header
        assert header["CALFLAGS"] == "OK"
        data = fits.getdata(path).astype(float)
        signal = fits.getdata(truth / light["signal"]).astype(float)
        uncert = fits.getdata(path, "UNCERT").astype(float)
        good = fits.getdata(path, "MASK") == 0
        z = ((data - signal) / uncert)[good]
        assert abs(float(np.median(z))) < 0.05, f"{rel}: level off by {np.median(z):.3f} sigma"


def test_lamp_flat_sets_make_one_master_each_that_follows_its_lamp(calibrated_night):
    """Two lamp-flat sets of one filter (illumination tilted +6 % and -6 % across x),
    kept apart by OBJECT: each master is its lamp's flat field, not their average."""
    _, spec, manifest, truth, out = calibrated_night("night_lamp_flats")
    pixel_response = fits.getdata(truth / manifest["cameras"]["ccd"]["flats"]["R"]).astype(float)
    for lamp in ("A", "B"):
        entry = manifest["sets"][f"flat_lamp_{lamp}"]
        master = fits.getdata(out / "masters" / f"flat_ccd_1x1_Normal_R_flat_lamp_{lamp}.fits").astype(float)
        expected = pixel_response * fits.getdata(truth / entry["illumination"]).astype(float)
        ratio = master / expected
        ratio /= np.median(ratio)
        left, right = np.median(ratio[:, :20]), np.median(ratio[:, -20:])
        assert abs(right - left) < 0.003, f"lamp {lamp}: master tilted by {right - left:+.4f} vs its lamp"


def test_a_gain_keyword_holding_a_setting_is_caught_by_the_measurement(calibrated_night):
    """A profile reading GAIN as e-/ADU on a camera that writes its gain setting there
    (GAIN = 100, true gain 0.8): the measurement is used, the summary warns, and UNCERT is
    still the scatter."""
    _, spec, manifest, truth, out = calibrated_night("night_gain_as_setting", gain={"keyword": "GAIN"})
    record = noise_record(out)
    assert record["gain"] == pytest.approx(0.8, rel=GAIN_TOLERANCE)
    assert record["gain_source"].startswith("measured: photon transfer")
    assert record["warnings"][0].startswith(f"header GAIN = 100 is not the measured gain {record['gain']:.4g} +- ")
    assert record["warnings"][0].endswith("the measured gain is used")
    summary = (out / "summary.txt").read_text()
    assert "    warning: header GAIN = 100 is not the measured gain" in summary
    for rel, light in sorted(manifest["lights"].items()):
        score = score_light(out / "calibrated" / rel, truth, light)
        assert SCATTER_RANGE[0] <= score.z_scatter <= SCATTER_RANGE[1], (rel, score)
