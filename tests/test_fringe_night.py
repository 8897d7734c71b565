"""A red-band night with fringes (``simulate.night_fringes``: 12 z lights dithered, 8 i
lights not, fringes at 2 % of the sky varying x0.6-1.4 from light to light) calibrated
end to end by the workflow with ``fringe: {filters: [z, i]}``: a fringe frame per band,
each light's fringes removed to under a tenth, UNCERT still the scatter; the frames are
filed in the library and a later night with too few lights of its own uses them."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake

from ccdcal import simulate
from ccdcal.fringe import FRINGEFILL

PROFILE = {
    "name": "red",
    "match": {"header": {"INSTRUME": "SimCam deep-depletion (fringes)"}},
    "overscan": {"method": "polynomial", "order": 1, "regions": "header"},
    "fringe": {"filters": ["z", "i"]},
}


def run_night(base: Path, spec: simulate.CameraNight, library: Path, profile=PROFILE):
    raw, truth, out = base / "raw", base / "truth", base / "out"
    manifest = simulate.write_camera_night(raw, truth, spec)
    (base / "config.yaml").write_text(json.dumps({"cameras": [profile], "library_dir": str(library)}))
    run_snakemake(raw, out, "--configfile", str(base / "config.yaml"))
    return manifest, truth, out


@pytest.fixture(scope="module")
def fringe_night(tmp_path_factory):
    base = tmp_path_factory.mktemp("fringes")
    return (*run_night(base, simulate.night_fringes(), base / "library"), base / "library")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def fringe_left(calibrated: Path, truth: Path, light: dict, pattern: np.ndarray, gain: float, frames: Path) -> dict:
    """What is left of the light's fringes (its projection on the true pattern over the
    sky pixels where the fringe frame had data of its own, not FRINGEFILL: with a plane)
    over what it had, and the robust scatter of (calibrated - truth) / UNCERT there.
    ``frames``: where its fringe frame (FRNGFILE) is."""
    with fits.open(calibrated) as hdul:
        header = hdul[0].header
        data, uncert, mask = (hdul[e].data.astype(np.float64) for e in (0, "UNCERT", "MASK"))
    filled = (fits.getdata(next(frames.rglob(header["FRNGFILE"])), "MASK") & FRINGEFILL) != 0
    signal = fits.getdata(truth / light["signal"]).astype(np.float64)
    sky = (mask == 0) & ~filled & (signal < 1.05 * np.median(signal)) & np.isfinite(data)
    scale = np.median(data[sky] / signal[sky])  # the flat's normalization
    residual = data - scale * signal
    yy, xx = np.nonzero(sky)
    design = np.stack([pattern[sky], np.ones(sky.sum()), xx, yy], axis=1)
    left = np.linalg.lstsq(design, residual[sky], rcond=None)[0][0]
    original = light["fringe_strength"] * light["sky_e"] / gain * scale
    z = residual[sky] / uncert[sky]
    return {
        "left": left / original,
        "z": float(1.4826 * np.median(np.abs(z - np.median(z)))),
        "header": header,
    }


def test_a_fringe_frame_per_band_from_tonight_s_lights(fringe_night):
    manifest, truth, out, library = fringe_night
    for band, count in (("z", 12), ("i", 8)):
        (path,) = (out / "masters").glob(f"fringe_*_{band}.fits")
        header = fits.getheader(path)
        assert header["CCDCALTY"] == "fringe" and header["FILTER"] == band
        assert header["NCOMBINE"] == count
        assert len([k for k in header if k.startswith("IMCMB")]) == count
        assert header["FRNGFILL"] > (0 if band == "i" else -1)  # the undithered stars' pixels, filled
    used = [r for r in rows(out / "matches.csv") if r["step"] == "fringe" and r["result"] == "used"]
    assert len(used) == len(manifest["lights"]) == 20
    filed = sorted(p.name.split("_")[0] for p in (library / "fringe").rglob("*.fits"))
    assert filed == ["fringe", "fringe"]


def test_fringes_are_removed_to_under_a_tenth_and_uncert_is_the_scatter(fringe_night):
    manifest, truth, out, _ = fringe_night
    camera = manifest["cameras"]["red"]
    pattern = fits.getdata(truth / camera["fringe_pattern"]).astype(np.float64)
    lefts = []
    for rel, light in sorted(manifest["lights"].items()):
        found = fringe_left(out / "calibrated" / rel, truth, light, pattern, camera["gain"], out / "masters")
        header = found["header"]
        assert abs(found["left"]) < 0.1, (rel, found["left"])
        assert 0.95 < found["z"] < 1.05, (rel, found["z"])
        lefts.append(abs(found["left"]))
        assert header["FRNGAFT"] < header["FRNGBEF"], rel  # the statistic: fringes and its noise floor
        assert header["FRNGFILE"].startswith(f"fringe_red_1x1_Normal_{light['filter']}")
        assert header["FRNGSELF"] is True
    print(f"fringes left: {min(lefts):.3f}-{max(lefts):.3f} of the original")
    summary = {r["path"]: r for r in rows(out / "summary.csv")}
    for rel, light in manifest["lights"].items():  # the frame and amplitude, in the night's summary
        assert summary[rel]["fringe"].startswith(f"fringe_red_1x1_Normal_{light['filter']}")
        assert float(summary[rel]["fringe_amplitude"]) == pytest.approx(
            fits.getheader(out / "calibrated" / rel)["FRNGAMP"], rel=1e-5
        )
    checks = [r for r in rows(out / "qc.csv") if r["check"] == "fringe_residual"]
    assert sorted(r["subject"] for r in checks) == sorted(manifest["lights"])
    assert {r["verdict"] for r in checks} == {"pass"} and all("before" in r["note"] for r in checks)


def test_the_same_night_again_copies_its_fringe_frames_from_the_library(fringe_night, tmp_path):
    """The night calibrated again into a new folder with the same library: its fringe
    frames are the library's (same MASTERID), copied, verified, their figures drawn, and
    the lights the same bytes."""
    manifest, truth, out, library = fringe_night
    config = out.parent / "config.yaml"
    again = tmp_path / "out"
    run_snakemake(out.parent / "raw", again, "--configfile", str(config))
    for band in ("z", "i"):
        (path,) = (again / "masters").glob(f"fringe_*_{band}.fits")
        report = json.loads((again / "work" / "masters" / f"{path.stem}.json").read_text())
        assert report["copied_from"] and Path(report["copied_from"]).parent.parent.parent == library / "fringe"
        assert len(report["used"]) == fits.getheader(path)["NCOMBINE"]
        assert (again / "work" / "previews" / f"{path.stem}.npy").is_file()
    for rel in manifest["lights"]:
        assert (again / "calibrated" / rel).read_bytes() == (out / "calibrated" / rel).read_bytes()


def test_the_library_s_fringe_frame_serves_a_night_with_too_few_lights(fringe_night, tmp_path):
    """Three z lights (fringe.min_frames is 5): no fringe frame of their own; the one
    filed last night is used (matches.csv: library) and removes their fringes."""
    _, _, _, library = fringe_night
    spec = simulate.night_fringes()
    sets = tuple(  # other lights than last night's: another sky, other names
        dataclasses.replace(fs, name="light_z_late", count=3, sky_e=2000.0) if fs.name == "light_z_120s" else fs
        for fs in spec.frame_sets
        if fs.name != "light_i_120s"
    )
    manifest, truth, out = run_night(tmp_path, dataclasses.replace(spec, frame_sets=sets), library)
    assert not list((out / "masters").glob("fringe_*.fits"))
    used = [r for r in rows(out / "matches.csv") if r["step"] == "fringe" and r["result"] == "used"]
    assert len(used) == 3 and all(r["source"].startswith("library:") for r in used)
    camera = manifest["cameras"]["red"]
    pattern = fits.getdata(truth / camera["fringe_pattern"]).astype(np.float64)
    for rel, light in manifest["lights"].items():
        found = fringe_left(out / "calibrated" / rel, truth, light, pattern, camera["gain"], library)
        assert abs(found["left"]) < 0.1, (rel, found["left"])
        assert found["header"]["FRNGSELF"] is False


def scatter_about(calibrated: Path, expected: np.ndarray, sky: np.ndarray) -> float:
    """Robust scatter (ADU) of a calibrated light about ``expected`` over ``sky`` pixels."""
    data = fits.getdata(calibrated).astype(np.float64)
    residual = (data - expected)[sky]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def test_the_noise_added_is_what_the_fringe_frame_s_n_predicts(fringe_night, tmp_path):
    """The same night without fringe.filters: no fringe frame, no fringe card; and against
    it, with the true fringes taken out of its lights, the corrected lights' scatter grows
    by no more than the fringe frame's own noise: UNCERT_F ~ its lights' relative noise /
    sqrt(N), smoothed (sum of the kernel's squared weights), subtracted x the amplitude:
    a per cent of the variance at most for 8-12 lights (it even falls a little)."""
    manifest, truth, out_with, _ = fringe_night
    profile = {k: v for k, v in PROFILE.items() if k != "fringe"}
    manifest, truth, out = run_night(tmp_path, simulate.night_fringes(), tmp_path / "library", profile)
    assert not list((out / "masters").glob("fringe_*.fits"))
    camera = manifest["cameras"]["red"]
    pattern = fits.getdata(truth / camera["fringe_pattern"]).astype(np.float64)
    ratios = []
    for rel, light in manifest["lights"].items():
        assert "FRNGAMP" not in fits.getheader(out / "calibrated" / rel)
        with fits.open(out_with / "calibrated" / rel) as hdul:
            mask, header = hdul["MASK"].data, hdul[0].header
        signal = fits.getdata(truth / light["signal"]).astype(np.float64)
        sky = (mask == 0) & (signal < 1.05 * np.median(signal))
        without = fits.getdata(out / "calibrated" / rel).astype(np.float64)
        scale = np.median(without[sky] / signal[sky])
        fringes = light["fringe_strength"] * light["sky_e"] / camera["gain"] * pattern * scale
        base = scatter_about(out / "calibrated" / rel, scale * (signal + fringes / scale), sky)
        corrected = scatter_about(out_with / "calibrated" / rel, scale * signal, sky)
        ratios.append(corrected / base)
        n = header["FRNGFILE"] and fits.getheader(next(out_with.rglob(header["FRNGFILE"])))["NCOMBINE"]
        assert n >= 8
    # below 1 a little: the frame holds the lights' shared master dark noise, / their sky,
    # and a subtraction of a x F (a ~ the sky) takes some of it away again
    assert 0.95 < min(ratios) and max(ratios) < 1.02, ratios
    print(f"scatter with the fringes removed / with the true fringes taken out: {min(ratios):.3f}-{max(ratios):.3f}")


def test_a_fringe_job_killed_leaves_nothing_the_next_run_keeps(fringe_night, tmp_path):
    """The scratch of a fringe-frame job (its lights calibrated, their residuals) is a
    killed writer's leftover for the next run, which removes it (find_incomplete)."""
    from ccdcal.output_dir import find_incomplete

    _, _, out, _ = fringe_night
    copy = tmp_path / "out"
    (copy / "masters").mkdir(parents=True)
    left = copy / "masters" / ".fringe_red_1x1_Normal_z-abc123.tmp"
    (left / "inner").mkdir(parents=True)
    assert [(path, why) for path, why in find_incomplete(copy)] == [(left, "left by a killed writer")]
    assert not [p for p in (out / "masters").iterdir() if p.name.startswith(".")]  # none left by a whole run
