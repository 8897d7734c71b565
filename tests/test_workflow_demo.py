"""The demo night through Snakemake, checked against the simulator's known truth.

The night (ccdcal.simulate) has a CCD with a drifting serial overscan, darks at another
exposure than the lights and fading twilight flats with stars, and a CMOS camera with no
overscan and no bias (dark library at the lights' exposure, darkflats, and darks at a
second temperature that must not be used), a file name with a space and junk files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, SNAKEFILE, SNAKEMAKE, o_direct_available, run_snakemake, sha256, tree_digests

from ccdcal.products import BADPIX


@pytest.fixture(scope="module")
def night(demo_night):
    return demo_night


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_calibrated(night, rel):
    with fits.open(night["out"] / "calibrated" / rel) as hdul:
        return (
            hdul[0].data.astype(np.float64),
            hdul["UNCERT"].data.astype(np.float64),
            hdul["MASK"].data,
            hdul[0].header,
        )


def truth_image(night, rel):
    return fits.getdata(night["truth"] / rel).astype(np.float64)


def light_items(night):
    return sorted(night["manifest"]["lights"].items())


# ----------------------------------------------------------------------- physics
def test_residual_noise_is_what_uncert_says(night):
    """(calibrated - truth) / UNCERT has unit scatter: the std of N normal values scatters
    by 1/sqrt(2N) (0.14 % at 512x480 pixels); 4 of those and 1 % for the model. Measured:
    1.000-1.007. The residual over the raw frame's ideal noise is above 1 only by the
    masters' noise (0.2-0.6 %; at most 2 % allowed)."""
    for rel, t in light_items(night):
        data, uncert, mask, _ = load_calibrated(night, rel)
        signal = truth_image(night, t["signal"])
        ideal = truth_image(night, t["ideal_sigma"])
        good = mask == 0
        assert good.mean() > 0.97, f"{rel}: only {good.mean():.3f} of the pixels unmasked"
        z = ((data - signal) / uncert)[good]
        limit = 4 / np.sqrt(2 * z.size) + 0.01
        assert abs(z.std() - 1) < limit, f"{rel}: residual/UNCERT scatter {z.std():.4f}"
        ratio = ((data - signal) / ideal)[good]
        assert 1.0 - limit < ratio.std() < 1.02, f"{rel}: residual/ideal noise {ratio.std():.4f}"
        assert abs(ratio.mean()) < 0.02, f"{rel}: residual bias {ratio.mean():.4f} sigma"


def test_no_spatial_systematics(night):
    """Residuals averaged over 32x32 blocks are consistent with noise alone, and do not
    follow the flat field (vignetting, dust donuts) or the overscan ramp."""
    for rel, t in light_items(night):
        data, _, mask, _ = load_calibrated(night, rel)
        signal = truth_image(night, t["signal"])
        ideal = truth_image(night, t["ideal_sigma"])
        cam = night["manifest"]["cameras"][t["camera"]]
        flat = truth_image(night, cam["flats"][t["filter"]])
        resid = data - signal
        ny, nx = (s // 32 * 32 for s in resid.shape)
        blocks = resid[:ny, :nx].reshape(ny // 32, 32, nx // 32, 32).mean(axis=(1, 3))
        sigma = np.sqrt((ideal[:ny, :nx] ** 2).reshape(ny // 32, 32, nx // 32, 32).mean(axis=(1, 3)) / 1024)
        z = blocks / sigma
        assert z.std() < 1.3, f"{rel}: block residual scatter {z.std():.2f} sigma"
        assert np.abs(z).max() < 5.5, f"{rel}: a block is off by {np.abs(z).max():.1f} sigma"
        corr = np.corrcoef(resid[mask == 0], flat[mask == 0])[0, 1]
        assert abs(corr) < 0.02, f"{rel}: residual correlates with the flat ({corr:.3f})"
        rows = resid.mean(axis=1) / np.sqrt((ideal**2).mean(axis=1) / resid.shape[1])
        slope = np.polyfit(np.arange(rows.size), rows, 1)[0] * rows.size
        assert abs(slope) < 1.0, f"{rel}: residual ramp along rows of {slope:.2f} sigma"


def test_uncertainty_plane_matches_ideal_noise(night):
    for rel, t in light_items(night):
        _, uncert, mask, _ = load_calibrated(night, rel)
        ideal = truth_image(night, t["ideal_sigma"])
        ratio = np.median(uncert[mask == 0] / ideal[mask == 0])
        # masters add a little noise on top of the raw frame's own: 0.2-0.4 % here
        assert 1.0 <= ratio < 1.02, f"{rel}: UNCERT/ideal = {ratio:.4f}"


def test_hot_pixels_cancelled_and_flagged(night):
    for rel, t in light_items(night):
        data, _, mask, _ = load_calibrated(night, rel)
        signal = truth_image(night, t["signal"])
        ideal = truth_image(night, t["ideal_sigma"])
        hot = truth_image(night, night["manifest"]["cameras"][t["camera"]]["hot_pixels"]) > 0
        z = ((data - signal) / ideal)[hot]
        assert hot.sum() > 100
        assert abs(np.median(z)) < 0.2 and z.std() < 1.3, f"{rel}: hot pixels left {np.median(z):.2f}"
        flagged = (mask & BADPIX) > 0
        assert flagged[hot].mean() > 0.95, f"{rel}: {flagged[hot].mean():.3f} of hot pixels flagged"
        assert flagged[~hot].mean() < 1e-3, f"{rel}: {flagged[~hot].mean():.5f} false hot pixels"


def test_master_flats_match_truth_without_star_residuals(night):
    masters = night["out"] / "masters"
    for camera, cam in night["manifest"]["cameras"].items():
        for filt, rel in cam["flats"].items():
            (path,) = masters.glob(f"flat_demo-{camera}_*_{filt}.fits")
            master = fits.getdata(path).astype(np.float64)
            truth = truth_image(night, rel)
            assert abs(np.median(master) - 1) < 1e-6
            ratio = master / truth
            ratio /= np.median(ratio)
            noise = 1.4826 * np.median(np.abs(ratio - 1))
            assert noise < 0.01, f"{path.name}: flat noise {noise:.4f}"
            assert np.abs(ratio - 1).max() < 6 * noise + 0.002, (
                f"{path.name}: worst pixel {np.abs(ratio - 1).max():.4f} (stars left?)"
            )


def test_master_bias_and_dark_match_truth(night):
    cam = night["manifest"]["cameras"]["ccd"]
    masters = night["out"] / "masters"
    (bias_path,) = masters.glob("bias_demo-ccd_*.fits")
    (dark_path,) = masters.glob("dark_demo-ccd_*_300s.fits")
    bias = fits.getdata(bias_path).astype(np.float64)
    dark = fits.getdata(dark_path).astype(np.float64)
    bias2d = truth_image(night, cam["bias2d"])
    rate = truth_image(night, cam["dark_rate_e_per_s"])
    resid = bias - bias2d
    # each master's scatter about the truth is its UNCERT: 1 within 4 times the sampling
    # error of a std (1/sqrt(2N), 0.14 % here) and 1 % for the model (measured: bias
    # 1.003, dark 0.998)
    limit = 4 / np.sqrt(2 * resid.size) + 0.01
    assert abs(np.median(resid)) < 0.1
    assert abs(resid.std() / np.median(fits.getdata(bias_path, "UNCERT")) - 1) < limit
    z = (dark - bias2d - rate * 300.0 / cam["gain"]) / fits.getdata(dark_path, "UNCERT")
    good = fits.getdata(dark_path, "MASK") == 0
    assert abs(z[good].std() - 1) < limit and abs(z[good].mean()) < 0.05
    current = (dark - bias) * cam["gain"] / 300.0
    # the median's own error is 3e-5 e-/s (0.0125 e-/s per pixel, 512x512 pixels);
    # measured 1.1e-4, i.e. 0.6 % of the 0.02 e-/s rate: 2.5 % allowed
    assert abs(np.median(current - rate)) < 0.025 * np.median(rate)  # e-/s
    header = fits.getheader(bias_path)
    assert abs(header["RDNOISE"] - cam["read_noise_e"]) < 0.5


# ----------------------------------------------------------------- the choices
def test_masters_chosen_per_strategy(night):
    plan = json.loads((night["out"] / "plan.json").read_text())
    for rel, light in plan["lights"].items():
        if rel.startswith("cmos/"):
            assert light["dark"] == "dark_demo-cmos_1x1_g120_o30_-10.0C_120s"
            assert light["dark_mode"] == "unscaled" and light["bias"] is None
            assert light["flags"] == []  # the unscaled dark holds the bias: no step missing
        else:
            assert light["dark"].startswith("dark_demo-ccd") and light["dark_mode"] == "scaled"
            assert light["dark_scale"] == pytest.approx(120 / 300)
            assert light["bias"].startswith("bias_demo-ccd")
        assert light["flat"].endswith("_" + ("L" if rel.startswith("cmos/") else rel.split("_")[-2]))
    minus5 = plan["masters"]["dark_demo-cmos_1x1_g120_o30_-5.0C_120s"]
    assert minus5["used"] is False and len(minus5["frames"]) == 8
    cmos_flat = plan["masters"]["flat_demo-cmos_1x1_g120_o30_L"]
    for frame in cmos_flat["frames"]:
        assert frame["calibration"]["dark"] == "dark_demo-cmos_1x1_g120_o30_-10.0C_2s"
        assert frame["calibration"]["dark_mode"] == "unscaled"
    for name, master in plan["masters"].items():
        if name.startswith("flat_demo-ccd"):
            for frame in master["frames"]:
                cal = frame["calibration"]
                assert cal["dark_mode"] == "scaled" and cal["bias"]
                assert cal["dark_scale"] == pytest.approx(frame["exptime"] / 300, rel=1e-5)


def test_inventory_lists_every_file_with_reasons(night):
    rows = {r["path"]: r for r in read_csv(night["out"] / "inventory.csv")}
    files = {p.relative_to(night["raw"]).as_posix() for p in night["raw"].rglob("*") if p.is_file()}
    assert set(rows) == files
    assert rows["notes.txt"]["status"] == "excluded" and "not a FITS" in rows["notes.txt"]["reason"]
    broken = rows["ccd/lights/NGC7331_V_broken.fits"]
    assert broken["status"] == "excluded" and "truncated" in broken["reason"]
    for rel, frame in night["manifest"]["frames"].items():
        row = rows[rel]
        assert row["status"] == "ok", (rel, row["reason"])
        expected = "dark" if frame["type"] == "darkflat" else frame["type"]
        assert row["frame_type"] == expected, rel
        assert "IMAGETYP=" in row["type_source"]
    cmos_light = rows["cmos/lights/M 31_L_120s_001.fits"]
    assert cmos_light["exptime"] == "120.0"  # from EXPOSURE, not EXPTIME
    assert cmos_light["gain_setting"] == "120" and cmos_light["offset"] == "30"
    assert cmos_light["shape"] == "480x640"
    assert rows["ccd/bias/bias_001.fits"]["shape"] == "512x512"  # overscan trimmed


def test_matches_report_says_why_each_candidate_was_not_used(night):
    rows = read_csv(night["out"] / "matches.csv")
    cmos = [r for r in rows if r["frame"] == "cmos/lights/M 31_L_120s_001.fits" and r["step"] == "dark"]
    results = {r["candidate"]: r["result"] for r in cmos}
    assert results["dark_demo-cmos_1x1_g120_o30_-10.0C_120s"] == "used (unscaled, x1)"
    assert results["dark_demo-cmos_1x1_g120_o30_-5.0C_120s"].startswith("rejected: temperature -5.0 C outside -10.")
    # the CMOS camera has no bias frames: a bias is fitted from its 2 s and 120 s darks at
    # -10 C (their readings jitter, within the tolerance), so the 2 s dark could be scaled
    assert any(m.endswith("_fromdarks") for m in json.loads((night["out"] / "plan.json").read_text())["masters"])
    assert results["dark_demo-cmos_1x1_g120_o30_-10.0C_2s"] == (
        "not preferred: an exposure match is preferred to a scaled dark"
    )
    flat = [r for r in rows if r["frame"] == "cmos/flats/flat_L_001.fits" and r["step"] == "dark"]
    assert {r["candidate"]: r["result"] for r in flat}["dark_demo-cmos_1x1_g120_o30_-10.0C_2s"] == (
        "used (unscaled, x1)"
    )


def test_summary_lists_lights_and_exclusions(night):
    rows = read_csv(night["out"] / "summary.csv")
    lights = [r for r in rows if r["frame_type"] == "light" and r["status"] != "excluded"]
    assert len(lights) == 10 and all(r["status"] == "calibrated" for r in lights)
    assert all(r["dark"] and r["flat"] for r in lights)
    excluded = {r["path"]: r["detail"] for r in rows if r["status"] == "excluded"}
    assert set(excluded) == {"notes.txt", "ccd/lights/NGC7331_V_broken.fits"}
    text = (night["out"] / "summary.txt").read_text()
    assert "M 31_L_120s_001.fits" in text and "truncated" in text
    assert "ccdcal night summary" in night["result"].stdout  # printed at the end of the run


# -------------------------------------------------------------- the files
def test_outputs_carry_provenance(night):
    out = night["out"]
    for rel, _ in light_items(night):
        _, _, _, header = load_calibrated(night, rel)
        assert header["RAWFILE"] == rel
        assert header["RAWSUM"] == sha256(night["raw"] / rel)[:16]
        for step in ("DARK", "FLAT"):
            master = out / "masters" / header[f"{step}FILE"]
            assert header[f"{step}SUM"] == sha256(master)[:16]
        assert header["CCDCALV"] and header["NUMPYV"] and header["ASTROPYV"]
        assert len(header["CFGDIGST"]) == 16
        assert "DARKMODE" in header and "DARKSCAL" in header and "OVSCMETH" in header
        assert not any(card.keyword.startswith("HIERARCH") or len(card.keyword) > 8 for card in header.cards)
        assert "BIASSEC" not in header and "DATASEC" not in header
        assert "CHECKSUM" not in header  # off by default for lights (output.checksum)
    with fits.open(next((out / "masters").glob("flat_demo-ccd_*_V.fits")), checksum=True) as hdul:
        header = hdul[0].header
        assert header["IMAGETYP"] == "MASTER FLAT" and header["FILTER"] == "V"
        flats = [f for f in night["manifest"]["frames"].values() if f["type"] == "flat" and f["filter"] == "V"]
        assert header["EXPTIME"] == pytest.approx(np.mean([f["exptime"] for f in flats]))  # it said 0.0
        assert header["NCOMBINE"] == 9 and header["IMCMB001"].startswith("ccd/flats/")
        assert header["CALFLAGS"] == "OK"  # every flat had its bias and dark
        assert header["INSTRUME"] == "SimCam CCD47" and header["XBINNING"] == 1
        assert [h.name for h in hdul] == ["PRIMARY", "UNCERT", "MASK"]
        assert hdul[0].data.dtype == np.dtype(">f4")


def test_calibrated_tree_mirrors_raw(night):
    calibrated = night["out"] / "calibrated"
    found = sorted(p.relative_to(calibrated).as_posix() for p in calibrated.rglob("*.fits"))
    assert found == sorted(night["manifest"]["lights"])
    with fits.open(calibrated / "cmos/lights/M 31_L_120s_001.fits") as hdul:
        assert hdul[0].data.dtype == np.dtype(">f4") and hdul["MASK"].data.dtype == np.uint8


def test_raw_files_untouched(night):
    after = {
        p.relative_to(night["raw"]).as_posix(): (sha256(p), p.stat().st_mtime_ns)
        for p in night["raw"].rglob("*")
        if p.is_file()
    }
    assert after == night["raw_before"]


def test_same_inputs_give_byte_identical_outputs(night, tmp_path):
    out2 = tmp_path / "out2"
    run_snakemake(night["raw"], out2)
    first, second = tree_digests(night["out"]), tree_digests(out2)
    assert len(first) > 20 and first == second


def test_incremental_rerun_only_touches_what_changed(night, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(night["raw"], raw)
    out = tmp_path / "out"
    run_snakemake(raw, out)
    again = run_snakemake(raw, out, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
    masters_before = {p.name: p.stat().st_mtime_ns for p in (out / "masters").glob("*.fits")}
    ccd_before = tree_digests(out / "calibrated" / "ccd")
    # a new CMOS light arrives: only its group, the inventory, publishing and the summary rerun
    shutil.copy(raw / "cmos/lights/M 31_L_120s_004.fits", raw / "cmos/lights/M 31_L_120s_005.fits")
    result = run_snakemake(raw, out)
    log = result.stdout + result.stderr
    assert "master_" not in log, "a master was rebuilt"
    assert log.count("rule calibrate_lights") == 1
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masters").glob("*.fits")} == masters_before
    assert tree_digests(out / "calibrated" / "ccd") == ccd_before
    assert (out / "calibrated/cmos/lights/M 31_L_120s_005.fits").exists()


def test_invalid_config_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = run_snakemake(tmp_path, out, "memory_limit_mb=12", check=False)
    assert result.returncode != 0
    assert "memory_limit_mb" in result.stderr
    assert not out.exists()


def snapshot(folder: Path) -> dict[str, int]:
    return {p.as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_a_run_without_output_dir_stops_saying_how_to_give_it(tmp_path):
    """config/config.yaml has no output_dir: a forgotten one used to calibrate the night
    into the repository's demo/out."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bias_001.fits").write_bytes(b"")
    demo_before = snapshot(REPO / "demo")
    result = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / SNAKEFILE), "--directory", str(REPO)]
        + ["--cores", "1", "--config", f"raw_dir={raw}"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert result.returncode != 0
    assert "config: output_dir is not set: pass --config output_dir=FOLDER" in result.stderr
    assert len(result.stderr.splitlines()) < 10, result.stderr
    assert snapshot(REPO / "demo") == demo_before


@pytest.mark.parametrize("names", [[], ["notes.txt", "log.txt", "sub/list.txt"]])
def test_a_raw_dir_without_fits_files_stops_naming_it(tmp_path, names):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    for name in names:
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_text("not a frame\n")
    result = run_snakemake(raw, out, check=False)
    assert result.returncode != 0
    expected = f"raw_dir {raw} holds 3 file(s) but no FITS file" if names else f"raw_dir {raw} holds no files"
    assert expected in result.stderr, result.stderr
    if names:
        assert "extensions seen: .txt (3)" in result.stderr
    assert len(result.stderr.splitlines()) < 10, result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "config, words",
    [
        ("thread: 2\n", ["unknown key thread (value 2)", "did you mean 'threads'"]),
        (
            "cameras:\n  - {name: c, overscan: {metod: polynomial}}\n",
            ["unknown key cameras[0].overscan.metod (value 'polynomial')", "method, order, axis, regions"],
        ),
        ("qc: {on_fail: halt}\n", ["qc.on_fail is 'halt'", "allowed values: 'flag', 'stop'"]),
    ],
)
def test_a_refused_configuration_stops_the_workflow_in_a_few_lines(tmp_path, config, words):
    """The workflow validates with ccdcal.config.validated: the same short message, not the
    schema (744-1095 lines from snakemake.utils.validate)."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    (tmp_path / "bad.yaml").write_text(config)
    result = run_snakemake(raw, out, "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    assert all(word in result.stderr for word in words), result.stderr
    assert len(result.stderr.splitlines()) < 10, result.stderr
    assert not out.exists()


def test_required_step_missing_stops_the_night_naming_the_lights(night, tmp_path):
    """With dark scaling forbidden, the 120 s CCD lights have no dark (only 300 s darks):
    requiring darks stops the night before any master is built, naming each light and why."""
    out = tmp_path / "out"
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "missing_calibration: {policy: stop, steps: [dark]}\n"
        "cameras:\n"
        "  - {name: demo-ccd, match: {header: {INSTRUME: 'SimCam CCD47'}}, dark: {scale: never}}\n"
        "  - {name: demo-cmos, match: {header: {INSTRUME: 'SimCMOS*'}}, overscan: {method: none}}\n"
    )
    result = run_snakemake(night["raw"], out, "--configfile", str(strict), check=False)
    assert result.returncode != 0
    log = (out / "logs" / "inventory.log").read_text() + result.stderr
    assert "missing_calibration is 'stop' and these lights lack a calibration step" in log
    assert (
        "ccd/lights/NGC7331_V_001.fits: no dark (no dark: dark_demo-ccd_1x1_Normal_-20.0C_300s: "
        "exposure 300 s != 120 s (scaling disabled))"
    ) in log
    assert "cmos/lights" not in log.split("lack")[1]  # the dark-library lights are fine
    assert not (out / "masters").exists()


def test_light_without_a_flat_is_calibrated_and_flagged(night, tmp_path):
    """A light whose filter has no flat: still bias/dark-calibrated, flagged NOFLAT."""
    from ccdcal.lights import calibrate_group

    plan = json.loads((night["out"] / "plan.json").read_text())
    group = next(g for g in plan["light_groups"].values() if g["camera"] == "demo-ccd")
    entry = dict(group["lights"][0], flat=None, flags=["NOFLAT"])
    masters = {m: night["out"] / "masters" / f"{m}.fits" for m in (entry["bias"], entry["dark"])}
    rows = calibrate_group(
        {**group, "flat": None, "lights": [entry]}, plan["cameras"]["demo-ccd"], night["raw"], masters, tmp_path
    )
    assert rows[0]["status"] == "calibrated" and rows[0]["flags"] == "NOFLAT"
    with fits.open(tmp_path / entry["path"]) as hdul:
        assert hdul[0].header["CALFLAGS"] == "NOFLAT" and "FLATFILE" not in hdul[0].header
        unflat = hdul[0].data.astype(np.float64)
    flat = fits.getdata(night["out"] / "masters" / f"{group['flat']}.fits").astype(np.float64)
    flattened, _, _, _ = load_calibrated(night, entry["path"])
    np.testing.assert_allclose(unflat / flat, flattened, rtol=1e-5, atol=1e-3)


def test_summary_says_which_binnings_were_calibrated(night):
    text = (night["out"] / "summary.txt").read_text()
    assert "Binnings (frames of another binning are never combined or applied):" in text
    assert "demo-ccd: lights 1x1; calibration frames 1x1" in text


def test_camera_output_settings_reach_the_light_jobs(night, tmp_path):
    """output.format 'same' and output.normalize from the camera profile, through the
    workflow's light-group job."""
    from ccdcal.lights import calibrate_group

    plan = json.loads((night["out"] / "plan.json").read_text())
    group = next(g for g in plan["light_groups"].values() if g["camera"] == "demo-cmos")
    files = {m: night["out"] / "masters" / f"{m}.fits" for m in (group["dark"], group["flat"])}
    camera = {**plan["cameras"]["demo-cmos"], "output": {"format": "same", "normalize": 500.0}}
    rows = calibrate_group({**group, "lights": group["lights"][:1]}, camera, night["raw"], files, tmp_path)
    with fits.open(tmp_path / rows[0]["output"]) as hdul:
        assert hdul[0].data.dtype == np.uint16
        assert hdul[0].header["NORMVAL"] == 500.0 and hdul[0].header["OUTFMT"] == "same"
        assert abs(hdul[0].data.mean() - 500.0) < 1.0


def test_an_unexpected_error_fails_one_light_and_a_full_disk_fails_the_job(night, tmp_path, monkeypatch):
    """Whatever goes wrong with one light (here a KeyError from deep inside) is that light's
    failure, reported with its type; the others are calibrated. A full disk is nobody's
    frame: the job stops (so Snakemake fails it and it can be run again), also when
    another exception masks the ENOSPC (as astropy's clean-up after a failed write does)."""
    import errno

    from ccdcal.calibrator import Calibrator
    from ccdcal.lights import calibrate_group, stops_the_job

    plan = json.loads((night["out"] / "plan.json").read_text())
    group = next(g for g in plan["light_groups"].values() if g["camera"] == "demo-ccd")
    group = {**group, "lights": group["lights"][:3]}
    files = {m: night["out"] / "masters" / f"{m}.fits" for m in (group["bias"], group["dark"], group["flat"])}
    bad = group["lights"][1]["path"]
    real = Calibrator.calibrate

    def calibrate(self, raw, calibrated, **kwargs):
        if str(raw).endswith(bad):
            raise KeyError("NAXIS1")
        return real(self, raw, calibrated, **kwargs)

    monkeypatch.setattr(Calibrator, "calibrate", calibrate)
    rows = calibrate_group(group, plan["cameras"]["demo-ccd"], night["raw"], files, tmp_path / "a", threads=2)
    assert [r["status"] for r in rows] == ["calibrated", "failed", "calibrated"]
    assert rows[1]["error"] == "KeyError: 'NAXIS1'" and rows[1]["path"] == bad

    def masked_full_disk(self, raw, calibrated, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # astropy's clean-up masks the disk-full error, chained as context only
            raise AttributeError("'list' object has no attribute '_file'")  # noqa: B904

    monkeypatch.setattr(Calibrator, "calibrate", masked_full_disk)
    with pytest.raises(OSError, match="no space left on the file system at /") as raised:
        calibrate_group(group, plan["cameras"]["demo-ccd"], night["raw"], files, tmp_path / "b")
    assert raised.value.errno == errno.ENOSPC  # the masking AttributeError said nothing of it
    assert stops_the_job(MemoryError()) and not stops_the_job(OSError(errno.EIO, "I/O error"))


def test_a_light_whose_file_the_disk_refuses_fails_alone_and_a_full_disk_fails_the_job(night, tmp_path, monkeypatch):
    """The light job's files are written by a thread of their own (BackgroundWriter): a
    write that fails there is still that light's failure, in its row, with no file left
    behind; a full disk met there still stops the job."""
    import errno

    from ccdcal.lights import calibrate_group, thumbnail_name
    from ccdcal.writers import _DirectWriter

    if not o_direct_available(tmp_path):
        pytest.skip(
            "the file system under the tests' temporary folder has no O_DIRECT, "
            "and only files written around the page cache are written in the background"
        )
    plan = json.loads((night["out"] / "plan.json").read_text())
    group = next(g for g in plan["light_groups"].values() if g["camera"] == "demo-ccd")
    group = {**group, "lights": group["lights"][:3]}
    files = {m: night["out"] / "masters" / f"{m}.fits" for m in (group["bias"], group["dark"], group["flat"])}
    bad = Path(group["lights"][1]["path"]).name
    real = _DirectWriter._write_staged
    failure = OSError(errno.EIO, "Input/output error")

    def write_staged(self, staging, length):
        if f".{bad}." in self.name:
            raise failure
        return real(self, staging, length)

    monkeypatch.setattr(_DirectWriter, "_write_staged", write_staged)
    rows = calibrate_group(group, plan["cameras"]["demo-ccd"], night["raw"], files, tmp_path / "a", threads=2)
    assert [r["status"] for r in rows] == ["calibrated", "failed", "calibrated"]
    assert rows[1]["error"] == "[Errno 5] Input/output error" and rows[1]["output"] == ""
    left = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    written = [r["output"] for r in rows if r["output"]]
    assert left == sorted(written + [f".thumbnails/{thumbnail_name(o)}" for o in written])

    failure = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="no space left on the file system at /"):
        calibrate_group(group, plan["cameras"]["demo-ccd"], night["raw"], files, tmp_path / "b", threads=2)
    assert not list((tmp_path / "b").rglob(".*.tmp"))  # no temporary file left
