"""A PixInsight master library (ANAWBPPS's layout) as read-only input.

The library is made as PixInsight would make it from a simulated night with known truth
(bias pattern, dark current with hot pixels, vignetted flat; gain 1.5 e-/ADU, read noise
5 e-): each master the mean of its frames, stored as float in [0, 1] (XISF written with the
``xisf`` package, one flat as a FITS file with no keywords at all), filed as the guide
shows. A night of lights only is calibrated with it: no master is built, the PixInsight
masters are converted and used, the lights match the truth, and UNCERT matches the scatter.
"""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, run_snakemake

from ccdcal.pixinsight_library import instrument_of_setup, kind_of_imagetyp, parse_folders, parse_name

SHAPE = (96, 128)
GAIN, READ_NOISE = 1.5, 5.0  # e-/ADU, e-
SKY = 400.0  # e- per pixel in a light (times the flat)
FULL = 65535.0  # ADU of 1.0 in a [0, 1] master
SETUP = "Edge_HD_8__QHY600M"
DAY = datetime(2025, 11, 10)
COUNTS = {"bias": 20, "dark": 10, "darkflat": 10, "flat": 12}
FLAT_EXPOSURE = 0.5
FLAT_SIGNAL = 30000.0  # e-


# ------------------------------------------------------------------ names and folders
GUIDE_NAMES = {
    "Edge_HD_8__QHY600M_MasterBias_0s_Gain56_Offset10_1x1_-10C.xisf": ("Bias", 0.0, "", -10.0),
    "Edge_HD_8__QHY600M_MasterDark_120s_Gain56_Offset10_1x1_-10C.xisf": ("Dark", 120.0, "", -10.0),
    "Edge_HD_8__QHY600M_MasterDark_300s_Gain56_Offset10_1x1_-10C.xisf": ("Dark", 300.0, "", -10.0),
    "Edge_HD_8__QHY600M_MasterDarkFlat_0.5s_Gain56_Offset10_1x1_-10C.xisf": ("DarkFlat", 0.5, "", -10.0),
    "Edge_HD_8__QHY600M_MasterFlat_B_Gain56_Offset10_1x1_-10C.xisf": ("Flat", None, "B", -10.0),
    "Edge_HD_8__QHY600M_MasterFlat_G_Gain56_Offset10_1x1_-10C.xisf": ("Flat", None, "G", -10.0),
    "Edge_HD_8__QHY600M_MasterFlat_R_Gain56_Offset10_1x1_-10C.xisf": ("Flat", None, "R", -10.0),
}


@pytest.mark.parametrize("name", sorted(GUIDE_NAMES))
def test_every_name_of_the_guide_is_parsed(name):
    parts, why = parse_name(name)
    assert why == "" and parts is not None
    kind, exptime, filt, temperature = GUIDE_NAMES[name]
    assert (parts.kind, parts.exptime, parts.filter, parts.temperature_c) == (kind, exptime, filt, temperature)
    assert (parts.setup, parts.gain, parts.offset, parts.binning) == (SETUP, "56", "10", "1x1")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("RedCat51_ASI2600MM_Pro_MasterDark_0.5s_Gain100_Offset50_2x2_+5C.fits", ("Dark", 0.5, "", 5.0, "2x2")),
        ("RedCat51_ASI2600MM_Pro_MasterDark_60s_Gain100_Offset50_1x1_5C.fit", ("Dark", 60.0, "", 5.0, "1x1")),
        ("Tak_FSQ__ASI6200_MasterBias_0s_Gain0_Offset30_1x1_-7.5C.xisf", ("Bias", 0.0, "", -7.5, "1x1")),
        ("Tak_FSQ__ASI6200_MasterFlat_Ha_7nm_Gain0_Offset30_1x1_0C.xisf", ("Flat", None, "Ha_7nm", 0.0, "1x1")),
        ("Tak_FSQ__ASI6200_MasterDark_300s_Gain0_Offset30_1x1_NO_TEMP.xisf", ("Dark", 300.0, "", None, "1x1")),
    ],
)
def test_names_with_underscores_signs_decimals_filters(name, expected):
    parts, why = parse_name(name)
    assert why == "", why
    assert (parts.kind, parts.exptime, parts.filter, parts.temperature_c, parts.binning) == expected


@pytest.mark.parametrize(
    "name, says",
    [
        ("bias_001.xisf", "is not <SETUP>_Master"),
        ("Edge_HD_8__QHY600M_MasterDark_long_Gain56_Offset10_1x1_-10C.xisf", "exposure 'long' is not a number"),
        ("Edge_HD_8__QHY600M_MasterLight_120s_Gain56_Offset10_1x1_-10C.xisf", "is not <SETUP>_Master"),
        ("Edge_HD_8__QHY600M_MasterDark_120s_Gain56_Offset10_1x1_cold.xisf", "is not <SETUP>_Master"),
    ],
)
def test_garbage_names_give_a_reason(name, says):
    parts, why = parse_name(name)
    assert parts is None and says in why and name in why


def test_folders_give_kind_setup_and_date():
    found = parse_folders(f"/lib/!!!DARKFLATS_LIB/{SETUP}/DARKFLATS_2025_11_10/x.xisf", "/lib")
    assert (found.kind, found.setup, found.date) == ("DarkFlat", SETUP, "2025-11-10")
    assert parse_folders("/lib/elsewhere/x.xisf", "/lib").date == ""


def test_instrument_of_a_setup_name():
    assert instrument_of_setup(SETUP, []) == "QHY600M"  # 'Edge HD 8 ' + '_' + QHY600M
    assert instrument_of_setup("RedCat51_ASI2600MM_Pro", ["ASI2600MM Pro", "Pro"]) == "ASI2600MM_Pro"
    assert kind_of_imagetyp("Master DarkFlat") == "DarkFlat" and kind_of_imagetyp("MASTER FLAT") == "Flat"
    assert kind_of_imagetyp("Light Frame") is None


# ------------------------------------------------------------------ the simulated night
def truth():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    bias = 500.0 + 3.0 * np.sin(xx / 7.0) + 2.0 * np.cos(yy / 5.0)
    rate = np.full(SHAPE, 0.5)  # e-/s
    hot = rng.random(SHAPE) < 0.01
    rate[hot] = 20.0
    r2 = ((yy - 48) ** 2 + (xx - 64) ** 2) / 80.0**2
    flat = 1.0 - 0.15 * r2
    flat /= np.median(flat)
    return {"bias": bias, "rate": rate, "flat": flat, "hot": hot}


def frame(model, rng, exptime, signal=0.0):
    """One raw frame (ADU, integers as a camera writes them)."""
    electrons = rng.poisson(model["rate"] * exptime + model["flat"] * signal)
    data = model["bias"] + (electrons + rng.normal(0, READ_NOISE, SHAPE)) / GAIN
    return np.clip(np.round(data), 0, 65535)


def keywords(kind, exptime, filt="", count=None, history=None):
    """The FITS keywords PixInsight keeps on a master (its first frame's, IMAGETYP 'Master ...')."""
    cards = {
        "IMAGETYP": f"'Master {kind}'",
        "TELESCOP": "'Edge HD 8 '",
        "INSTRUME": "'QHY600M'",
        "EXPTIME": repr(float(exptime)),
        "CCD-TEMP": "-10.0",
        "GAIN": "56",
        "OFFSET": "10",
        "XBINNING": "1",
        "YBINNING": "1",
        "EGAIN": repr(GAIN),
        "DATE-OBS": f"'{(DAY + timedelta(hours=18)).isoformat()}'",
    }
    if filt:
        cards["FILTER"] = f"'{filt}'"
    if count is not None:
        cards["NCOMBINE"] = str(count)
    found = {k: [{"value": v, "comment": ""}] for k, v in cards.items()}
    if history:
        found["HISTORY"] = [{"value": "", "comment": history}]
    return found


def write_xisf(path: Path, image01: np.ndarray, fits_keywords) -> None:
    from xisf import XISF  # test-only (GPL): ccdcal reads XISF with its own reader

    path.parent.mkdir(parents=True, exist_ok=True)
    XISF.write(str(path), image01.astype(np.float32)[:, :, None], image_metadata={"FITSKeywords": fits_keywords})


def make_library(root: Path, model) -> dict[str, np.ndarray]:
    """The guide's library from a simulated calibration night; returns the truth of each
    master (ADU; the flats normalised to median 1)."""
    rng = np.random.default_rng(11)

    def mean_of(n, exptime, signal=0.0):
        return np.mean([frame(model, rng, exptime, signal) for _ in range(n)], axis=0)

    def where(lib, kind):
        return root / f"!!!{lib}_LIB" / SETUP / f"{lib}_{DAY:%Y_%m_%d}"

    bias = mean_of(COUNTS["bias"], 0.0)
    write_xisf(
        where("BIASES", "Bias") / f"{SETUP}_MasterBias_0s_Gain56_Offset10_1x1_-10C.xisf",
        bias / FULL,
        keywords("Bias", 0.0, count=COUNTS["bias"]),
    )
    truths = {"bias": model["bias"]}
    for exptime in (120, 300):
        dark = mean_of(COUNTS["dark"], exptime)
        # the 300 s master says its N only in PixInsight's history
        count, history = (COUNTS["dark"], None)
        if exptime == 300:
            count, history = None, f"ImageIntegration.numberOfImages: {COUNTS['dark']}"
        write_xisf(
            where("DARKS", "Dark") / f"{SETUP}_MasterDark_{exptime}s_Gain56_Offset10_1x1_-10C.xisf",
            dark / FULL,
            keywords("Dark", exptime, count=count, history=history),
        )
        truths[f"dark{exptime}"] = model["bias"] + model["rate"] * exptime / GAIN
    darkflat = mean_of(COUNTS["darkflat"], FLAT_EXPOSURE)
    write_xisf(
        where("DARKFLATS", "DarkFlat") / f"{SETUP}_MasterDarkFlat_0.5s_Gain56_Offset10_1x1_-10C.xisf",
        darkflat / FULL,
        keywords("Dark", FLAT_EXPOSURE, count=COUNTS["darkflat"]),
    )
    for filt in ("B", "G", "R"):
        flat = mean_of(COUNTS["flat"], FLAT_EXPOSURE, FLAT_SIGNAL) - darkflat  # calibrated by the darkflat
        name = f"{SETUP}_MasterFlat_{filt}_Gain56_Offset10_1x1_-10C"
        if filt == "R":  # a FITS master, floats in [0, 1], no keyword at all: the name and folders say everything
            path = where("FLATS", "Flat") / f"{name}.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU((flat / FULL).astype(np.float32)).writeto(path)
        else:
            write_xisf(where("FLATS", "Flat") / f"{name}.xisf", flat / FULL, keywords("Flat", FLAT_EXPOSURE, filt, 12))
    truths["flat"] = model["flat"]
    return truths


LIGHTS = {"R": 120.0, "B": 300.0}


def write_lights(raw: Path, model) -> None:
    rng = np.random.default_rng(23)
    for i, (filt, exptime) in enumerate([(f, t) for f, t in LIGHTS.items() for _ in range(2)]):
        data = frame(model, rng, exptime, SKY)
        header = fits.Header(
            {
                "IMAGETYP": "Light Frame",
                "EXPTIME": exptime,
                "CCD-TEMP": -10.0,
                "DATE-OBS": (DAY + timedelta(days=1, hours=21, minutes=5 * i)).isoformat(),
                "FILTER": filt,
                "INSTRUME": "QHY600M",
                "TELESCOP": "Edge HD 8 ",
                "GAIN": 56,
                "OFFSET": 10,
                "XBINNING": 1,
                "YBINNING": 1,
                "EGAIN": GAIN,
                "RDNOISE": READ_NOISE,
            }
        )
        path = raw / "lights" / f"M31_{filt}_{i}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(data.astype(np.uint16), header=header).writeto(path)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime, every folder's mtime (a file made and removed there shows)."""
    return {
        p.relative_to(root).as_posix(): (b"" if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted([root, *root.rglob("*")])
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("pixinsight")
    model = truth()
    library = base / "Masters_Library"
    truths = make_library(library, model)
    write_lights(base / "raw", model)
    before = snapshot(library)
    result = run_snakemake(base / "raw", base / "out", f"pixinsight_library={library}")
    return {
        "base": base,
        "model": model,
        "library": library,
        "truths": truths,
        "before": before,
        "after": snapshot(library),
        "result": result,
    }


def used(out: Path, frame: str, step: str) -> list[dict[str, str]]:
    rows = read_rows(out / "matches.csv")
    return [r for r in rows if r["frame"] == frame and r["step"] == step and r["result"].startswith("used")]


def test_the_pixinsight_masters_are_chosen_in_matches_csv(night):
    out, library = night["base"] / "out", night["library"]
    (dark,) = used(out, "lights/M31_R_0.fits", "dark")
    assert dark["candidate"].endswith("_MasterDark_120s_Gain56_Offset10_1x1_-10C")
    expected = library / "!!!DARKS_LIB" / SETUP / "DARKS_2025_11_10"
    assert dark["source"] == f"pixinsight:{expected / (SETUP + '_MasterDark_120s_Gain56_Offset10_1x1_-10C.xisf')}"
    assert dark["result"] == "used (unscaled, x1)"
    (flat,) = used(out, "lights/M31_R_0.fits", "flat")
    assert flat["candidate"] == f"pi_20251110_{SETUP}_MasterFlat_R_Gain56_Offset10_1x1_-10C"
    assert flat["source"].endswith(".fits")  # the FITS master
    (dark_b,) = used(out, "lights/M31_B_2.fits", "dark")
    assert "_MasterDark_300s_" in dark_b["candidate"]
    (flat_b,) = used(out, "lights/M31_B_2.fits", "flat")
    assert "_MasterFlat_B_" in flat_b["candidate"] and flat_b["source"].endswith(".xisf")
    rows = read_rows(out / "matches.csv")
    others = {r["candidate"]: r["result"] for r in rows if r["frame"] == "lights/M31_R_0.fits" and r["step"] == "dark"}
    darkflat = next(v for k, v in others.items() if "DarkFlat" in k)
    assert darkflat.startswith("not preferred"), others


def test_no_master_is_built_and_the_used_ones_are_converted(night):
    out = night["base"] / "out"
    assert not list((out / "masters").glob("*.fits")), "a master was built"
    assert not (out / "logs" / "masters").exists()
    imported = sorted(p.name for p in (out / "masters" / "imported").glob("*.fits"))
    # the two darks, the two flats of the lights' filters, and the bias of the darks' UNCERT
    assert len(imported) == 5, imported
    assert not any("_G_" in n or "DarkFlat" in n for n in imported)
    header = fits.getheader(
        out / "masters" / "imported" / f"pi_20251110_{SETUP}_MasterDark_300s_Gain56_Offset10_1x1_-10C.fits"
    )
    assert header["NCOMBINE"] == COUNTS["dark"]  # from ImageIntegration's HISTORY
    assert header["CCDCALTY"] == "dark" and header["DARKBIAS"] == "included" and header["IMPORTED"] == "pixinsight"
    assert header["PISCALE"] == FULL and header["EXPTIME"] == 300.0 and header["CALFLAGS"] == "OK"
    source = Path(header["PISOURCE"])
    import hashlib

    assert header["PISHA256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert header["MASTERID"] == header["PISHA256"][:16]
    assert "CHECKSUM" in header and "DATASUM" in header


def test_the_library_is_not_written_to(night):
    assert night["after"] == night["before"]


def z_scatter(product: Path, truth: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """std((master - truth) / UNCERT) over the pixels not excluded: 1 when UNCERT is right."""
    with fits.open(product) as hdul:
        data, uncert = hdul[0].data.astype(np.float64), hdul["UNCERT"].data.astype(np.float64)
    keep = np.ones(data.shape, bool) if exclude is None else ~exclude
    return float(np.std(((data - truth) / uncert)[keep]))


def test_uncert_of_imported_masters_matches_their_scatter(night):
    """N, r and g known: UNCERT / actual scatter within 0.95-1.05; the FITS flat, whose N
    nothing says, gets N = 1 (the largest UNCERT) and says so."""
    folder, truths = night["base"] / "out" / "masters" / "imported", night["truths"]
    stem = f"pi_20251110_{SETUP}_Master"
    ratios = {
        "bias": z_scatter(folder / f"{stem}Bias_0s_Gain56_Offset10_1x1_-10C.fits", truths["bias"]),
        "dark120": z_scatter(folder / f"{stem}Dark_120s_Gain56_Offset10_1x1_-10C.fits", truths["dark120"]),
        "dark300": z_scatter(folder / f"{stem}Dark_300s_Gain56_Offset10_1x1_-10C.fits", truths["dark300"]),
        "flatB": z_scatter(folder / f"{stem}Flat_B_Gain56_Offset10_1x1_-10C.fits", truths["flat"]),
    }
    print("std((master - truth) / UNCERT):", {k: round(v, 4) for k, v in ratios.items()})
    assert all(0.95 < r < 1.05 for r in ratios.values()), ratios
    flat_r = folder / f"{stem}Flat_R_Gain56_Offset10_1x1_-10C.fits"
    header = fits.getheader(flat_r)
    assert header["CALFLAGS"] == "NOCOUNT" and header["NCOMBINE"] == 1 and "unknown" in header["UNCNOTE"]
    conservative = z_scatter(flat_r, truths["flat"])
    assert conservative < 1 / np.sqrt(COUNTS["flat"]) * 1.1, conservative  # UNCERT sqrt(12) times too large


def test_calibrated_lights_match_the_truth(night):
    """Calibrated lights equal SKY / GAIN, within the noise of an ideal calibration (the
    truth tests' 0.97-1.04), with the scatter UNCERT says (0.95-1.05): a dark used as is
    (bias included) on a night with no darks to measure its shot noise on gets it from
    the imported master's median dark current (DARKCUR, measured against the library's
    bias; DARKVAR and DARKVSRC say so). Without it, UNCERT was short by 8-18 %."""
    model, out = night["model"], night["base"] / "out"
    found = sorted((out / "calibrated" / "lights").glob("*.fits"))
    assert len(found) == 4
    for path in found:
        exptime = LIGHTS[path.name.split("_")[1]]
        with fits.open(path) as hdul:
            header = hdul[0].header
            data, uncert = hdul[0].data.astype(np.float64), hdul["UNCERT"].data.astype(np.float64)
        ideal = np.sqrt(READ_NOISE**2 + model["flat"] * SKY + model["rate"] * exptime) / GAIN / model["flat"]
        residual = data - SKY / GAIN
        assert abs(np.median(residual)) < 0.02 * SKY / GAIN, path.name
        ideal_ratio = float(np.std(residual / ideal))
        uncert_ratio = float(np.std(residual / uncert))
        print(path.name, "scatter / ideal", round(ideal_ratio, 4), "scatter / UNCERT", round(uncert_ratio, 4))
        assert 0.97 < ideal_ratio < 1.04, (path.name, ideal_ratio)
        assert 0.95 < uncert_ratio < 1.05, (path.name, uncert_ratio)
        assert header["DARKVSRC"].startswith("DARKCUR of "), header["DARKVSRC"]
        assert header["DARKVAR"] == pytest.approx(np.median(model["rate"]) * exptime / GAIN**2, rel=0.05)


# ------------------------------------------------------------------ hostile library
@pytest.fixture(scope="module")
def hostile(night, tmp_path_factory):
    base = tmp_path_factory.mktemp("pixinsight-hostile")
    library = base / "lib"
    shutil.copytree(night["library"], library)
    darks = library / "!!!DARKS_LIB" / SETUP
    good = darks / "DARKS_2025_11_10" / f"{SETUP}_MasterDark_120s_Gain56_Offset10_1x1_-10C.xisf"
    # a damaged copy a day later (nearer the lights: it would be preferred if it could be read)
    damaged = darks / "DARKS_2025_11_11" / good.name
    damaged.parent.mkdir()
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size - 5000])
    # a flat of another shape, a day later
    flats = library / "!!!FLATS_LIB" / SETUP / "FLATS_2025_11_11"
    write_xisf(
        flats / f"{SETUP}_MasterFlat_B_Gain56_Offset10_1x1_-10C.xisf",
        np.full((64, 64), 0.4),
        keywords("Flat", 0.5, "B", 12),
    )
    # no name scheme, no keyword
    fits.PrimaryHDU(np.zeros(SHAPE, np.float32)).writeto(library / "notes.fits")
    # a colour master
    from xisf import XISF

    XISF.write(
        str(flats / "colour_master.xisf"),
        np.full((*SHAPE, 3), 0.5, np.float32),
        image_metadata={"FITSKeywords": keywords("Flat", 0.5, "R", 12)},
    )
    before = snapshot(library)
    result = run_snakemake(night["base"] / "raw", base / "out", f"pixinsight_library={library}")
    return {"base": base, "library": library, "before": before, "result": result, "damaged": damaged}


def test_hostile_masters_are_listed_with_their_reason_and_not_used(hostile, night):
    out = hostile["base"] / "out"
    rows = read_rows(out / "matches.csv")
    dark = {r["candidate"]: r["result"] for r in rows if r["frame"] == "lights/M31_R_0.fits" and r["step"] == "dark"}
    damaged = dark[f"pi_20251111_{SETUP}_MasterDark_120s_Gain56_Offset10_1x1_-10C"]
    assert damaged.startswith("rejected: unusable PixInsight master (not a readable XISF file"), damaged
    assert "truncated" in damaged
    (chosen,) = used(out, "lights/M31_R_0.fits", "dark")
    assert chosen["candidate"] == f"pi_20251110_{SETUP}_MasterDark_120s_Gain56_Offset10_1x1_-10C"
    flat = {r["candidate"]: r["result"] for r in rows if r["frame"] == "lights/M31_B_2.fits" and r["step"] == "flat"}
    assert flat[f"pi_20251111_{SETUP}_MasterFlat_B_Gain56_Offset10_1x1_-10C"] == "rejected: shape 64x64 != 96x128"
    unusable = {r["candidate"]: r["result"] for r in rows if r["frame"] == ""}
    assert unusable["pi_notes"].startswith("unusable: name 'notes.fits' is not <SETUP>_Master"), unusable
    assert "no IMAGETYP keyword" in unusable["pi_notes"]
    colour = {r["result"] for r in rows if "colour" in r["candidate"]}
    assert colour == {
        "rejected: unusable PixInsight master (multi-channel image (3 channels); ccdcal masters are one channel)"
    }
    log = (out / "logs" / "inventory.log").read_text()
    assert "notes.fits" in log and "colour_master.xisf" in log
    # the night still calibrates with what is usable, as well as with the whole library
    assert len(list((out / "calibrated" / "lights").glob("*.fits"))) == 4
    for path in sorted((out / "calibrated" / "lights").glob("*.fits")):
        clean = night["base"] / "out" / "calibrated" / "lights" / path.name
        assert np.array_equal(fits.getdata(path), fits.getdata(clean)), path.name
    assert snapshot(hostile["library"]) == hostile["before"]


def test_watch_uses_the_pixinsight_library_as_the_batch_run_does(night, tmp_path):
    """``ccdcal watch`` over the same lights finds the same PixInsight masters, converts
    them into its own output folder (never into the library) and writes lights byte for
    byte as the batch workflow did."""
    import threading

    import yaml

    from ccdcal.config import validated
    from ccdcal.watch import Watcher, WatchSettings

    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(night["base"] / "raw", raw)
    user = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config = validated(
        {
            **user,
            "raw_dir": str(raw),
            "output_dir": str(out),
            "library_dir": str(tmp_path / "library"),
            "pixinsight_library": str(night["library"]),
        }
    )
    watcher = Watcher(WatchSettings(config, settle_seconds=0.1, poll_seconds=0.2), say=lambda line: None)
    lights = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.fits"))
    deadline = threading.Event()
    threading.Timer(180, deadline.set).start()
    watcher.run(until=lambda: all(r in watcher.state.frames for r in lights) or deadline.is_set())
    deadline.set()
    batch = night["base"] / "out"
    assert len(lights) == 4
    for rel in lights:
        assert watcher.state.frames[rel]["status"] == "calibrated", watcher.state.frames[rel]
        assert (out / "calibrated" / rel).read_bytes() == (batch / "calibrated" / rel).read_bytes(), rel
    imported = sorted(p.name for p in (out / "masters" / "imported").glob("*.fits"))
    assert imported == sorted(p.name for p in (batch / "masters" / "imported").glob("*.fits"))
    assert snapshot(night["library"]) == night["before"]
