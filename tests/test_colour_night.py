"""A one-shot-colour night (``simulate.night_osc``: RGGB, a flat lamp of colour
1.0 : 0.7 : 0.5, a sky of 0.8 : 1.0 : 0.6, hot pixels) calibrated end to end by the
workflow and checked against its truth channel by channel: the Bayer cards after an odd
trim, the per-channel flat normalization (and the tint without it), UNCERT against the
actual scatter in each channel, hot pixels found among their own colour, and cosmetic
correction that fills a pixel from its own colour."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake

from ccdcal import cfa, simulate
from ccdcal.products import BADPIX

#: The trim of the per-channel run: one column and one row off each start (odd offsets).
ODD_TRIM = "[2:160,2:128]"
TRIM_Y0, TRIM_X0 = 1, 1
LAMP = dict(zip(("R", "G1", "G2", "B"), (1.0, 0.7, 0.7, 0.5)))
SKY = dict(zip(("R", "G1", "G2", "B"), (0.8, 1.0, 1.0, 0.6)))
SCATTER_RANGE = (0.95, 1.05)


def robust_std(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


@pytest.fixture(scope="module")
def colour_night(tmp_path_factory):
    """``colour_night(flat_cfa, trim)`` -> (manifest, truth dir, output dir), once each."""
    done = {}
    spec = simulate.night_osc()

    def run(flat_cfa: str, trim: str):
        key = (flat_cfa, trim)
        if key not in done:
            base = tmp_path_factory.mktemp(f"osc_{flat_cfa}")
            raw, truth, out = base / "raw", base / "truth", base / "out"
            manifest = simulate.write_camera_night(raw, truth, spec)
            camera = {
                "name": spec.camera.key,
                "match": {"header": {"INSTRUME": spec.camera.instrument}},
                "overscan": {"method": "none"},
                "trim": trim,
                "flat": {"cfa": flat_cfa},
                "cosmetic": {"enabled": True},
            }
            (base / "config.yaml").write_text(json.dumps({"cameras": [camera]}))
            run_snakemake(raw, out, "--configfile", str(base / "config.yaml"))
            done[key] = manifest, truth, out
        return done[key]

    return run


def truth_image(truth: Path, rel: str, trim: tuple[int, int]) -> np.ndarray:
    return fits.getdata(truth / rel).astype(np.float64)[trim[0] :, trim[1] :]


def channel_scores(calibrated: Path, truth: Path, light: dict, trim: tuple[int, int]) -> dict[str, dict]:
    """Per CFA channel of a calibrated light (its layout read from its own header): the
    level factor calibrated / truth signal (median over bright pixels), and the robust
    scatter of (calibrated - factor x signal) / UNCERT."""
    with fits.open(calibrated) as hdul:
        header = hdul[0].header
        data = hdul[0].data.astype(np.float64)
        uncert = hdul["UNCERT"].data.astype(np.float64)
        mask = hdul["MASK"].data
    layout = cfa.raw_layout(header, data.shape)
    signal = truth_image(truth, light["signal"], trim)
    ideal = truth_image(truth, light["ideal_sigma"], trim)
    scores = {}
    for name, view in layout.channels():
        d, u, m, s, i = data[view], uncert[view], mask[view], signal[view], ideal[view]
        good = (m == 0) & np.isfinite(d) & (u > 0)
        bright = good & (s > 5 * i)
        factor = float(np.median(d[bright] / s[bright]))
        scores[name] = {
            "factor": factor,
            "z_scatter": robust_std(((d - factor * s) / u)[good]),
            "pixels": int(good.sum()),
        }
    return scores


def test_bayer_cards_survive_an_odd_trim(colour_night):
    """Trimmed by one row and one column, each output keeps BAYERPAT and ROWORDER and gets
    XBAYROFF = YBAYROFF = 1, so that its pattern read back by the header's rules is the
    colour of its pixels in the simulation (BGGR from numpy [0, 0])."""
    manifest, truth, out = colour_night("per_channel", ODD_TRIM)
    spec = simulate.night_osc()
    expected = cfa.CfaLayout(spec.camera.bayer_pattern).colour_map(spec.camera.shape)[TRIM_Y0:, TRIM_X0:]
    outputs = sorted((out / "calibrated").rglob("*.fits")) + sorted((out / "masters").glob("*.fits"))
    assert len(outputs) >= len(manifest["lights"]) + 3
    for path in outputs:
        header = fits.getheader(path)
        assert (header["BAYERPAT"], header["XBAYROFF"], header["YBAYROFF"]) == ("RGGB", 1, 1), path.name
        assert header["ROWORDER"] == "TOP-DOWN"
        layout = cfa.raw_layout(header, (header["NAXIS2"], header["NAXIS1"]))
        assert layout.colours == "BGGR"
        assert (layout.colour_map(expected.shape) == expected).all(), path.name
    with open(out / "inventory.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    assert rows and {r["cfa"] for r in rows} == {"BGGR"}


def test_per_channel_flat_keeps_the_lamp_colour_out_of_the_lights(colour_night):
    """flat.cfa: per_channel: the master flat's channels each have median 1, their levels
    (FLATNR*) follow the lamp's colour, and every light's channels come out at one level
    factor (no tint, within 1 %), UNCERT matching the scatter in each channel."""
    manifest, truth, out = colour_night("per_channel", ODD_TRIM)
    (flat_path,) = [p for p in (out / "masters").glob("*.fits") if fits.getheader(p)["CCDCALTY"] == "flat"]
    with fits.open(flat_path) as hdul:
        header, flat = hdul[0].header, hdul[0].data
    assert header["FLATCFA"] == "per_channel"
    levels = {name: header[f"FLATNR{name}"] for name in LAMP}
    for name, colour in LAMP.items():
        assert levels[name] / levels["R"] == pytest.approx(colour / LAMP["R"], rel=0.02), levels
    layout = cfa.raw_layout(header, flat.shape)
    for name, view in layout.channels():
        assert np.median(flat[view]) == pytest.approx(1.0, abs=1e-5), name
    assert manifest["lights"]
    for rel, light in sorted(manifest["lights"].items()):
        scores = channel_scores(out / "calibrated" / rel, truth, light, (TRIM_Y0, TRIM_X0))
        factors = [s["factor"] for s in scores.values()]
        assert max(factors) / min(factors) == pytest.approx(1.0, abs=0.01), (rel, scores)
        for name, score in scores.items():
            lo, hi = SCATTER_RANGE
            assert lo <= score["z_scatter"] <= hi, (rel, name, score)
            assert score["pixels"] > 0.9 * flat.size / 4
    # the quality checks measure colour lights on their 2x2 cells: nothing to flag here
    with open(out / "qc.csv", newline="") as handle:
        verdicts = [r for r in csv.DictReader(handle) if r["subject"] in manifest["lights"]]
    assert {r["check"] for r in verdicts} >= {"noise_vs_uncert", "flatness"}
    assert {r["verdict"] for r in verdicts} == {"pass"}, [r for r in verdicts if r["verdict"] != "pass"]


def test_flats_normalized_together_tint_the_lights_by_the_lamp_colour(colour_night):
    """flat.cfa: together (the default): one median for all pixels, so a channel's level
    in the lights is divided by the lamp's colour: R/G = 0.7, B/G = 1.4 (within 2 %). This
    is why per_channel exists."""
    manifest, truth, out = colour_night("together", "none")
    for rel, light in sorted(manifest["lights"].items()):
        scores = channel_scores(out / "calibrated" / rel, truth, light, (0, 0))
        assert scores["R"]["factor"] / scores["G1"]["factor"] == pytest.approx(0.7, rel=0.02), scores
        assert scores["B"]["factor"] / scores["G2"]["factor"] == pytest.approx(1.4, rel=0.02), scores
        for name, score in scores.items():
            assert SCATTER_RANGE[0] <= score["z_scatter"] <= SCATTER_RANGE[1], (rel, name, score)


def test_hot_pixels_are_found_and_filled_from_their_own_colour(colour_night):
    """The master dark flags the truth's hot pixels whose dark signal stands clear of the
    noise (BADPIX), with few others; in the lights, cosmetic correction gives each a value
    within 5 sigma of its own colour's truth (a box of mixed colours would be off by the
    sky's colour differences: tens of sigma)."""
    manifest, truth, out = colour_night("per_channel", ODD_TRIM)
    camera = manifest["cameras"]["osc"]
    hot = truth_image(truth, camera["hot_pixels"], (TRIM_Y0, TRIM_X0)).astype(bool)
    rate = truth_image(truth, camera["dark_rate_e_per_s"], (TRIM_Y0, TRIM_X0))
    (dark_path,) = [p for p in (out / "masters").glob("*.fits") if fits.getheader(p)["CCDCALTY"] == "dark"]
    flagged = (fits.getdata(dark_path, "MASK") & BADPIX).astype(bool)
    clear = hot & (rate * 120.0 > 10 * camera["read_noise_e"])  # well above one frame's noise
    assert clear.sum() > 20
    assert flagged[clear].mean() > 0.95, f"{flagged[clear].sum()} of {clear.sum()} clear hot pixels flagged"
    assert (flagged & ~hot).sum() < 0.001 * flagged.size
    checked = 0
    for rel, light in sorted(manifest["lights"].items()):
        with fits.open(out / "calibrated" / rel) as hdul:
            data, mask, header = hdul[0].data, hdul["MASK"].data, hdul[0].header
        assert header["NCOSMETC"] > 0
        signal = truth_image(truth, light["signal"], (TRIM_Y0, TRIM_X0))
        ideal = truth_image(truth, light["ideal_sigma"], (TRIM_Y0, TRIM_X0))
        # isolated hot pixels on the sky (no star: the truth is smooth around them)
        sky = signal < np.median(signal) * 1.3
        bad = (mask & BADPIX).astype(bool) & sky & clear
        assert bad.any()
        scale = np.median(data[(mask == 0) & sky] / signal[(mask == 0) & sky])
        off = np.abs(data[bad] - scale * signal[bad]) / ideal[bad]
        assert np.median(off) < 2 and off.max() < 6, off
        checked += int(bad.sum())
    assert checked > 20


def test_colour_xisf_frames_calibrate_as_their_fits(colour_night, tmp_path):
    """The same colour night as XISF: half the frames as PixInsight describes a colour
    image (a ColorFilterArray element, no BAYERPAT keyword), half as N.I.N.A. writes them
    (BAYERPAT keywords, lz4-compressed and byte-shuffled by the ``xisf`` package): the
    calibrated lights are the FITS night's, array for array, Bayer cards included."""
    from xml.sax.saxutils import quoteattr

    from test_xisf import build_xisf, keyword_table, write_package

    manifest, truth, out = colour_night("per_channel", ODD_TRIM)
    fits_raw = out.parent / "raw"
    xisf_raw = tmp_path / "raw"
    for n, source in enumerate(sorted(fits_raw.rglob("*.fits"))):
        dest = xisf_raw / source.relative_to(fits_raw).with_suffix(".xisf")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fits.open(source) as hdul:
            data, header = np.ascontiguousarray(hdul[0].data), hdul[0].header.copy()
        if n % 2:
            write_package(dest, data, "lz4", True, keyword_table(header))
            continue
        for key in cfa.CFA_KEYWORDS:
            header.remove(key)
        table = keyword_table(header)
        elements = "".join(
            f"<FITSKeyword name={quoteattr(name)} value={quoteattr(c['value'])} comment={quoteattr(c['comment'])}/>"
            for name, cards in table.items()
            for c in cards
        )
        elements += '<ColorFilterArray pattern="RGGB" width="2" height="2"/>'
        attributes = (
            f'geometry="{data.shape[1]}:{data.shape[0]}:1" sampleFormat="UInt16" location="attachment:{{pos}}:{{size}}"'
        )
        build_xisf(dest, data.astype("<u2").tobytes(), attributes, elements, block_at=65536)
    config = out.parent / "config.yaml"
    run_snakemake(xisf_raw, tmp_path / "out", "--configfile", str(config))
    compared = 0
    for rel in manifest["lights"]:
        with fits.open(out / "calibrated" / rel) as a, fits.open(tmp_path / "out" / "calibrated" / rel) as b:
            for extension in (0, "UNCERT", "MASK"):
                np.testing.assert_array_equal(a[extension].data, b[extension].data, err_msg=f"{rel} {extension}")
            for key in cfa.CFA_KEYWORDS:
                assert a[0].header[key] == b[0].header[key], (rel, key)
        compared += 1
    assert compared == len(manifest["lights"]) == 4
