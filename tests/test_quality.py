"""Quality checks (qc.csv): every night gets verdicts, and a night with a known defect gets
``fail`` or ``warn`` on exactly the check that sees it, through the workflow as a user runs
it. The demo night gets no fail."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake, small_night

from ccdcal import simulate
from ccdcal.config import validated
from ccdcal.master_recipes import qc_star_flats
from ccdcal.qc import Check, judge, light_statistics, qc_csv, star_coverage

CCD_PROFILE = {
    "name": "demo-ccd",
    "match": {"header": {"INSTRUME": "SimCam CCD47"}},
    "overscan": {"method": "polynomial", "order": 1, "regions": "header"},
}


def read_qc(out: Path) -> list[dict[str, str]]:
    with open(out / "qc.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def not_passed(rows) -> dict[tuple[str, str], str]:
    """{(subject, check): verdict} of every check that did not pass."""
    return {(r["subject"], r["check"]): r["verdict"] for r in rows if r["verdict"] != "pass"}


def checks_of_edited_night(raw: Path, tmp_path: Path, pattern: str, change) -> list[dict[str, str]]:
    """qc.csv of the night in ``raw`` once ``edit_frames(raw, pattern, change)`` made its
    defect, calibrated with the demo CCD's profile."""
    edit_frames(raw, pattern, change)
    config, out = tmp_path / "night.yaml", tmp_path / "out"
    config.write_text(json.dumps({"cameras": [CCD_PROFILE]}))
    run_snakemake(raw, out, "--configfile", str(config))
    return read_qc(out)


def edit_frames(raw: Path, pattern: str, change) -> None:
    """Apply ``change(data, header)`` to copies of the night's frames (never the originals)."""
    for path in sorted(raw.glob(pattern)):
        with fits.open(path) as hdul:
            data, header = hdul[0].data.astype(np.float64), hdul[0].header.copy()
        data = change(data, header)
        fits.PrimaryHDU(np.clip(np.round(data), 0, 65535).astype(np.uint16), header=header).writeto(
            path, overwrite=True
        )


# ----------------------------------------------------------------------------- units


def test_judge_limits_on_both_sides_and_a_missing_value_fails():
    limit = {"warn_below": 0.9, "fail_below": 0.7, "warn_above": 1.15, "fail_above": 1.5}
    assert [judge(v, limit)[0] for v in (1.0, 0.85, 0.6, 1.2, 1.6)] == ["pass", "warn", "fail", "warn", "fail"]
    assert judge(1.0, limit)[1] == "warn < 0.9; fail < 0.7; warn > 1.15; fail > 1.5"
    assert judge(None, {"warn_above": 1})[0] == "fail" and judge(float("nan"), {})[0] == "fail"
    assert judge(5.0, {"warn_above": None})[0] == "pass"


def test_qc_csv_lists_fails_first_then_warns():
    checks = [
        Check("b", "x", 1.0, "", "pass", ""),
        Check("a", "y", 2.0, "", "warn", ""),
        Check("c", "z", 3.0, "", "fail", "bad"),
    ]
    rows = list(csv.DictReader(qc_csv(checks).splitlines()))
    assert [r["verdict"] for r in rows] == ["fail", "warn", "pass"]
    assert list(rows[0]) == ["subject", "check", "value", "limit", "verdict", "note"]


def test_light_statistics_see_noise_masks_a_gradient_and_a_vignetting_mismatch():
    rng = np.random.default_rng(3)
    shape = (512, 512)
    uncert = np.full(shape, 20.0, np.float32)
    mask = np.zeros(shape, np.uint8)
    flat_sky = (500 + rng.normal(0, 20, shape)).astype(np.float32)
    stats = light_statistics(flat_sky, uncert, mask)
    assert abs(stats["sky"] - 500) < 1 and abs(stats["noise_ratio"] - 1) < 0.03
    assert stats["gradient"] < 0.003 and stats["flatness"] < 0.01 and stats["masked"] == 0
    x = np.linspace(-0.5, 0.5, shape[1])[None, :]
    tilted = flat_sky * (1 + 0.06 * x)
    assert abs(light_statistics(tilted, uncert, mask)["gradient"] - 0.06) < 0.005
    yy, xx = np.mgrid[-1:1:512j, -1:1:512j]
    vignetted = flat_sky * (1 - 0.1 * (xx**2 + yy**2))  # a flat that left 10 % of vignetting
    assert light_statistics(vignetted, uncert, mask)["flatness"] > 0.03
    mask[:64] = 2  # saturated rows
    masked = light_statistics(flat_sky, uncert, mask)
    assert masked["masked"] == pytest.approx(0.125, abs=0.01) and masked["saturated"] == pytest.approx(0.125, abs=0.01)


@pytest.mark.parametrize(
    "count, chosen", [(1, {0}), (5, {0, 1, 2, 3, 4}), (6, {0, 1, 2, 4, 5}), (20, {0, 5, 10, 14, 19})]
)
def test_stars_are_looked_for_in_five_flats_at_most_spread_over_them(count, chosen):
    assert qc_star_flats(count) == chosen


def test_star_coverage_counts_pixels_starred_in_half_the_flats():
    shape = (10, 10)
    same = np.zeros(shape, bool)
    same[2, 2:5] = True
    moved = [np.roll(same, 3 * k, axis=0) for k in range(4)]
    assert star_coverage([same] * 4, shape) == pytest.approx(0.03)
    assert star_coverage(moved, shape) == 0.0
    assert star_coverage([None, None], shape) is None


def test_camera_overrides_of_the_limits():
    from ccdcal.qc import limits_for

    config = validated(
        {
            "raw_dir": ".",
            "output_dir": ".",
            "cameras": [{"name": "spectro", "qc": {"gradient": {"warn_above": None, "fail_above": None}}}],
        }
    )
    limits = limits_for(config, config["cameras"][0])
    assert limits["gradient"] == {"warn_above": None, "fail_above": None}
    assert limits["flatness"] == config["qc"]["limits"]["flatness"]


# ----------------------------------------------------------------------------- nights


@pytest.fixture(scope="module")
def demo_checks(demo_night):
    return read_qc(demo_night["out"])


def test_the_demo_night_gets_no_fail_and_a_verdict_on_every_subject(demo_checks, demo_night):
    assert [r for r in demo_checks if r["verdict"] == "fail"] == []
    subjects = {r["subject"] for r in demo_checks}
    plan = json.loads((demo_night["out"] / "plan.json").read_text())
    assert set(plan["noise"]) <= subjects
    assert {n for n, m in plan["masters"].items() if m["source"] == "tonight"} <= subjects
    assert {rel for rel, light in plan["lights"].items() if light.get("group")} <= subjects
    checks = {r["check"] for r in demo_checks}
    assert {
        "overscan_light_1",
        "overscan_noise_1",
        "overscan_bias_level_1",
        "overscan_drift_1",
        "gain",
        "read_noise",
        "bias_noise",
        "hot_pixels",
        "dark_current",
        "flat_level",
        "flat_near_saturation",
        "weak_pixels",
        "star_coverage",
        "sky_level",
        "noise_vs_uncert",
        "masked",
        "saturated",
        "gradient",
        "flatness",
        "calibration_flags",
        "failed_jobs",
    } <= checks
    summary = (demo_night["out"] / "summary.txt").read_text()
    warned = sum(r["verdict"] == "warn" for r in demo_checks)
    assert f"Quality checks: none failed, {warned} warn, {len(demo_checks) - warned} pass (qc.csv)" in summary


def test_an_overscan_that_sees_light_fails_and_with_stop_the_camera_is_not_calibrated(demo_raw, tmp_path):
    """The overscan put inside the illuminated area (a wrong section in the profile): its
    level rises with the flats' signal. The check fails naming the camera and section;
    with qc.on_fail: stop no master or light of that setup is made and the run fails."""
    raw = small_night(demo_raw, tmp_path / "raw")
    wrong = {
        **CCD_PROFILE,
        "overscan": {
            "method": "polynomial",
            "order": 1,
            "regions": [{"overscan": "[481:512,1:512]", "data": "[1:480,1:512]"}],
        },
        "trim": "[1:480,1:512]",
    }
    config = tmp_path / "wrong.yaml"
    config.write_text(json.dumps({"cameras": [wrong]}))
    out = tmp_path / "out"
    run_snakemake(raw, out, "--configfile", str(config))
    rows = read_qc(out)
    failed = {(r["subject"], r["check"]) for r in rows if r["verdict"] == "fail"}
    assert ("demo-ccd_1x1_512x480_Normal", "overscan_light_1") in failed
    (row,) = [r for r in rows if r["check"] == "overscan_light_1"]
    assert "camera demo-ccd, amplifier 1, overscan [481:512,1:512]" in row["note"]
    assert "it sees light" in row["note"]
    summary = (out / "summary.txt").read_text()
    assert "QUALITY CHECKS: " in summary and "FAIL demo-ccd_1x1_512x480_Normal overscan_light_1" in summary

    stopped = tmp_path / "stopped"
    config.write_text(json.dumps({"cameras": [wrong], "qc": {"on_fail": "stop"}}))
    result = run_snakemake(raw, stopped, "--configfile", str(config), check=False)
    assert result.returncode != 0
    assert list((stopped / "masters").glob("*.fits")) == []
    assert list((stopped / "calibrated").rglob("*.fits")) == []
    failures = sorted((stopped / "work" / "failures").rglob("*.txt"))
    assert failures  # the first job of the setup refused (Snakemake then starts no other)
    assert all("qc.on_fail is 'stop'" in f.read_text() for f in failures)
    # the night's checks and summary are still written, the fail first
    assert ("demo-ccd_1x1_512x480_Normal", "overscan_light_1") in {
        (r["subject"], r["check"]) for r in read_qc(stopped) if r["verdict"] == "fail"
    }
    assert "FAIL demo-ccd_1x1_512x480_Normal overscan_light_1" in (stopped / "summary.txt").read_text()


def test_an_overscan_noisier_than_the_read_noise_fails(demo_raw, tmp_path):
    raw = small_night(demo_raw, tmp_path / "raw")
    rng = np.random.default_rng(11)

    def noisy_overscan(data, header):
        data[:, 516:544] += rng.normal(0, 15.0, (data.shape[0], 28))  # [517:544,1:512]
        return data

    bad = not_passed(checks_of_edited_night(raw, tmp_path, "ccd/*/*.fits", noisy_overscan))
    assert bad[("demo-ccd_1x1_512x512_Normal", "overscan_noise_1")] == "fail"
    assert not [k for k in bad if k[1].startswith("overscan") and k[1] != "overscan_noise_1"]


def test_sky_flats_taken_without_moving_the_telescope_fail_the_star_coverage(demo_raw, tmp_path):
    raw = small_night(demo_raw, tmp_path / "raw")
    field = np.random.default_rng(12)
    x, y = field.uniform(20, 490, 150), field.uniform(20, 490, 150)
    stars = simulate.render_stars((512, 512), x, y, np.full(150, 8000.0), 3.0)

    def same_stars(data, header):
        data[:, :512] += stars
        return data

    bad = not_passed(checks_of_edited_night(raw, tmp_path, "ccd/flats/*.fits", same_stars))
    assert bad[("flat_demo-ccd_1x1_Normal_R", "star_coverage")] == "fail"
    assert [k for k in bad if k[0].startswith("flat_")] == [("flat_demo-ccd_1x1_Normal_R", "star_coverage")]


def test_a_flat_near_saturation_fails_on_that_flat(demo_raw, tmp_path):
    raw = small_night(demo_raw, tmp_path / "raw")
    first = sorted(raw.glob("ccd/flats/*.fits"))[0]

    def bright(data, header):
        return (data - 1000.0) * 2.2 + 1000.0  # ~61000 ADU at the centre

    bad = not_passed(checks_of_edited_night(raw, tmp_path, f"ccd/flats/{first.name}", bright))
    rel = f"ccd/flats/{first.name}"
    assert bad[(rel, "flat_near_saturation")] == "fail"
    assert [k for k in bad if k[1].startswith("flat_")] == [(rel, "flat_near_saturation")]


def test_a_header_gain_the_frames_contradict_is_warned_about(demo_raw, tmp_path):
    raw = small_night(demo_raw, tmp_path / "raw")

    def wrong_gain(data, header):
        header["EGAIN"] = 2.5  # true 1.5
        return data

    rows = checks_of_edited_night(raw, tmp_path, "ccd/*/*.fits", wrong_gain)
    assert not_passed(rows).get(("demo-ccd_1x1_512x512_Normal", "gain")) == "warn"
    (gain,) = [r for r in rows if r["check"] == "gain"]
    assert "disagrees with the measured 1.5" in gain["note"]


def test_lights_calibrated_with_a_lamp_flat_of_another_illumination_are_flagged(tmp_path):
    """The lamp-flat night: each lamp's flat is tilted 6 % across the frame against the
    sky the lights see (a flat that does not match them): every light warns on its
    gradient, and on nothing about its noise."""
    raw, truth, out = tmp_path / "raw", tmp_path / "truth", tmp_path / "out"
    spec = simulate.night_lamp_flats()
    simulate.write_camera_night(raw, truth, spec)
    config = tmp_path / "lamp.yaml"
    config.write_text(
        json.dumps(
            {
                "cameras": [
                    {
                        "name": "ccd",
                        "match": {"header": {"INSTRUME": spec.camera.instrument}},
                        "overscan": {"method": "polynomial", "order": 1, "regions": "header"},
                        "flat": {"group_by": ["object"], "normalize_each": False},
                    }
                ]
            }
        )
    )
    run_snakemake(raw, out, "--configfile", str(config))
    rows = read_qc(out)
    lights = [r for r in rows if r["subject"].startswith("ccd/lights/")]
    assert {r["subject"] for r in lights if r["check"] == "gradient" and r["verdict"] == "warn"} == {
        r["subject"] for r in lights
    }
    assert all(abs(float(r["value"]) - 0.06) < 0.01 for r in lights if r["check"] == "gradient")
    assert all(r["verdict"] == "pass" for r in lights if r["check"] == "noise_vs_uncert")


def test_a_cameras_dark_current_is_followed_across_the_librarys_nights(tmp_path):
    """Two nights filed into one library, the camera's dark current 4 times higher on the second
    (a failing cooler): its dark master fails the change check against the first night's
    at the same temperature, and the report's trend plot follows the library's nights."""
    from datetime import datetime

    from test_library import night, truth

    library = tmp_path / "library"
    model = truth()
    night(tmp_path / "raw1", model, datetime(2026, 1, 10), calibrations=True)
    warm = {**model, "rate": model["rate"] * 4.0}
    night(tmp_path / "raw2", warm, datetime(2026, 1, 11), calibrations=True)
    for n in (1, 2):
        run_snakemake(tmp_path / f"raw{n}", tmp_path / f"out{n}", f"library_dir={library}")
    first = {(r["subject"], r["check"]) for r in read_qc(tmp_path / "out1")}
    assert not [c for c in first if c[1] == "dark_current_change"]  # nothing earlier to compare with
    rows = [r for r in read_qc(tmp_path / "out2") if r["check"] == "dark_current_change"]
    assert [r["verdict"] for r in rows] == ["fail"] * 3  # the 60 s darks, the 2 s before and after
    (sixty,) = [r for r in rows if "_60s" in r["subject"]]
    assert 3.6 < float(sixty["value"]) < 4.4
    (hot,) = [r for r in read_qc(tmp_path / "out2") if r["check"] == "hot_pixels_change" and "_60s" in r["subject"]]
    assert hot["note"].endswith("(2026-01-10)") and "hot pixels against" in hot["note"]
    trends = tmp_path / "out2" / "work" / "report" / "plots" / "library_trends.png"
    from PIL import Image

    with Image.open(trends) as image:
        assert image.size[0] == 640 and image.size[1] >= 400
