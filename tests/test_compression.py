"""Compressed outputs (output.compression, issue #16 part 5): FITS tile compression of
calibrated lights, lossless for integer planes, quantized floats whose added noise is
measured here, reproducible bytes, sizes, and what reads them back."""

from __future__ import annotations

import csv
import hashlib
import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdcal.calibrator import Calibrator
from ccdcal.config import camera_defaults, validated
from ccdcal.lights import thumbnail_name
from ccdcal.plan import output_names
from ccdcal.products import (
    BADPIX,
    COSMIC,
    DEFAULT_QUANTIZE_LEVEL,
    SATURATED,
    product_hdul,
    read_product,
    write_product,
)
from ccdcal.simulate import render_stars

GAIN, READ_NOISE_E, SKY = 1.5, 9.0, 800.0


def simulated_light(n: int = 2048, seed: int = 5):
    """A calibrated light's planes: sky, 600 stars, Poisson and read noise; UNCERT from
    the data as ccdcal computes it; a sparse MASK of several bits; a few NaN pixels."""
    rng = np.random.default_rng(seed)
    stars = 600
    model = SKY + render_stars(
        (n, n), rng.uniform(0, n, stars), rng.uniform(0, n, stars), 10 ** rng.uniform(1.5, 4.5, stars), 3.5
    )
    image = rng.poisson(model * GAIN) / GAIN + rng.normal(0, READ_NOISE_E / GAIN, (n, n))
    image = image.astype(np.float32)
    uncert = np.sqrt(np.maximum(image, 0) / GAIN + (READ_NOISE_E / GAIN) ** 2).astype(np.float32)
    mask = np.zeros((n, n), np.uint8)
    for bit, count in ((BADPIX, 800), (SATURATED, 200), (COSMIC, 300)):
        mask[rng.integers(0, n, count), rng.integers(0, n, count)] |= bit
    image[mask & BADPIX > 0] = np.nan
    header = fits.Header()
    header["OBJECT"] = ("M 31", "target")
    header["EXPTIME"] = (120.0, "[s]")
    return image, uncert, mask, header


@pytest.fixture(scope="module")
def light():
    return simulated_light()


@pytest.fixture(scope="module")
def written(light, tmp_path_factory):
    """The light written uncompressed, with rice and with gzip (at the default level)."""
    folder = tmp_path_factory.mktemp("compressed")
    image, uncert, mask, header = light
    paths = {}
    for compression in ("none", "rice", "gzip"):
        path = folder / ("light.fits" if compression == "none" else f"light_{compression}.fits.fz")
        write_product(path, image, uncert, mask, header, compression=compression, mask_bits=(BADPIX, SATURATED, COSMIC))
        paths[compression] = path
    return paths


def test_default_is_the_uncompressed_layout_unchanged(light):
    image, uncert, mask, header = (a[:64, :80] if isinstance(a, np.ndarray) else a for a in light)
    plain, none = (io.BytesIO() for _ in range(2))
    product_hdul(image, uncert, mask, header).writeto(plain)
    product_hdul(image, uncert, mask, header, compression="none", quantize_level=4).writeto(none)
    assert plain.getvalue() == none.getvalue()
    assert b"COMPRESS" not in plain.getvalue() and b"XTENSION= 'BINTABLE'" not in plain.getvalue()


@pytest.mark.parametrize("compression", ["rice", "gzip"])
def test_mask_and_integer_images_are_lossless(written, light, compression, tmp_path):
    image, uncert, mask, header = light
    product = read_product(written[compression])
    assert product.mask.dtype == np.uint8 and np.array_equal(product.mask, mask)
    assert np.array_equal(np.isnan(product.data), np.isnan(image))  # NaN kept where they were
    # output.format 'same': the image in the raw integer type is compressed losslessly
    counts = np.clip(np.nan_to_num(np.round(image[:512, :512])), 0, 65535).astype(np.uint16)
    path = tmp_path / "same.fits.fz"
    write_product(path, counts, uncert[:512, :512], mask[:512, :512], header, compression=compression)
    with fits.open(path) as hdul:
        assert hdul["SCI"].data.dtype == np.uint16 and np.array_equal(hdul["SCI"].data, counts)
        assert hdul[0].header["IMGLOSS"] == "lossless"


def test_quantization_noise_is_below_one_percent_of_the_pixel_noise(written, light):
    """(compressed - uncompressed) / UNCERT: 1/(32 sqrt 12) = 0.9 % at the default level,
    so the total noise sqrt(1 + r^2) grows by 0.004 %; measured on the simulated light
    (its stars, rows crossing them, the masked NaN pixels left out). UNCERT itself is
    quantized by its own scatter, far below 1 %."""
    assert DEFAULT_QUANTIZE_LEVEL == 32
    image, uncert, mask, _ = light
    good = np.isfinite(image)
    for compression in ("rice", "gzip"):
        product = read_product(written[compression])
        added = ((product.data - image) / uncert)[good].astype(np.float64)
        ratio = float(np.sqrt(np.mean(added**2)))
        growth = np.sqrt(1 + ratio**2) - 1
        assert ratio < 0.01, f"{compression}: quantization noise {ratio:.4f} of the pixel noise"
        assert growth < 0.0001, f"{compression}: total noise grows by {growth:.2e}"
        assert abs(float(np.mean(added))) < 0.001  # dithered: no bias
        uncert_error = float(np.sqrt(np.mean(((product.uncert - uncert) / uncert)[good] ** 2)))
        assert uncert_error < 0.001, f"{compression}: UNCERT changed by {uncert_error:.2e} (relative rms)"


def test_a_coarser_level_adds_more_noise_as_q_over_sqrt12(light, tmp_path):
    image, uncert, mask, header = (a[:512] if isinstance(a, np.ndarray) else a for a in light)
    path = tmp_path / "q4.fits.fz"
    write_product(path, image, uncert, mask, header, compression="rice", quantize_level=4)
    product = read_product(path)
    good = np.isfinite(image)
    ratio = float(np.sqrt(np.mean((((product.data - image) / uncert)[good]).astype(np.float64) ** 2)))
    assert 0.05 < ratio < 1 / (4 * np.sqrt(12)) * 1.1  # at most 1/(4 sqrt 12) = 7.2 % (stars: less)
    assert product.header["QUANTLVL"] == 4.0


@pytest.mark.parametrize("compression", ["rice", "gzip"])
def test_same_planes_give_the_same_bytes(light, compression, tmp_path):
    image, uncert, mask, header = (a[:256] if isinstance(a, np.ndarray) else a for a in light)
    digests = set()
    for name in ("a", "b"):
        path = tmp_path / f"{name}.fits.fz"
        write_product(path, image.copy(), uncert.copy(), mask, header, compression=compression, consume=True)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_rice_is_at_most_40_percent_of_the_uncompressed_size(written):
    """A 2048^2 light with sky and stars: rice and gzip both about 22 % (measured)."""
    full = written["none"].stat().st_size
    for compression in ("rice", "gzip"):
        fraction = written[compression].stat().st_size / full
        print(f"{compression}: {fraction:.3f} of {full} bytes")
        assert fraction <= 0.40, f"{compression}: {fraction:.3f} of the uncompressed size"


def test_read_back_by_ccdcal_astropy_and_ccdproc(written, light):
    image, uncert, mask, _ = light
    path = written["rice"]
    product = read_product(path)
    assert product.data.shape == image.shape and product.uncert.shape == image.shape
    for header in (product.header, fits.getheader(path)):  # the primary header has the provenance
        assert header["OBJECT"] == "M 31" and header["COMPRESS"] == "RICE_1"
        assert header["QUANTLVL"] == DEFAULT_QUANTIZE_LEVEL and header["QUANTMTH"] == "SUBTRACTIVE_DITHER_2"
        assert header["DITHSEED"] == 1 and header["IMGLOSS"] == "quantized"
        assert any("compressed RICE_1" in str(h) for h in header["HISTORY"])
    with fits.open(path, checksum=True) as hdul:  # checksums verified while reading
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "UNCERT", "MASK"]
        assert hdul[0].data is None
        assert np.array_equal(hdul["SCI"].data, product.data, equal_nan=True)
        assert np.array_equal(hdul["MASK"].data, mask)
        assert hdul["SCI"].header["OBJECT"] == "M 31" and hdul["MASK"].header["MASKB16"] == "COSMIC"
        assert hdul["UNCERT"].header["QUANTLVL"] == DEFAULT_QUANTIZE_LEVEL
    ccd = CCDData.read(path, hdu="SCI")  # ccdproc's reader: the image is extension SCI
    assert str(ccd.unit) == "adu" and ccd.header["OBJECT"] == "M 31"
    assert np.array_equal(ccd.data, product.data, equal_nan=True)
    assert np.array_equal(ccd.uncertainty.array, product.uncert)
    assert np.array_equal(ccd.mask, mask > 0)


def test_calibrator_follows_the_profile_output_section(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.normal(1000, 10, (120, 140)).astype(np.uint16)
    header = fits.Header()
    header["EXPTIME"], header["GAIN"], header["RDNOISE"] = 30.0, 1.5, 5.0
    fits.PrimaryHDU(raw, header).writeto(tmp_path / "raw.fits")
    camera = camera_defaults(output={"compression": "gzip", "quantize_level": 8})
    Calibrator.for_camera(camera).calibrate(raw=tmp_path / "raw.fits", calibrated=tmp_path / "cal.fits.fz")
    product = read_product(tmp_path / "cal.fits.fz")
    assert product.header["COMPRESS"] == "GZIP_2" and product.header["QUANTLVL"] == 8.0
    Calibrator.for_camera(camera_defaults()).calibrate(raw=tmp_path / "raw.fits", calibrated=tmp_path / "cal.fits")
    plain = read_product(tmp_path / "cal.fits")
    assert "COMPRESS" not in plain.header
    # raw noise 10 ADU: the step q = 10/8, each pixel off by at most q/2 (the row's noise estimate varies)
    assert np.abs(product.data - plain.data).max() < 10 / 8


def test_schema_takes_the_settings_and_adds_no_defaults():
    assert "compression" not in camera_defaults()["output"]  # profiles (and their digests) as before
    config = validated({"raw_dir": ".", "output_dir": ".", "default_camera": {"output": {"compression": "rice"}}})
    assert config["default_camera"]["output"]["compression"] == "rice"
    for bad in ({"compression": "lzma"}, {"quantize_level": 0}):
        with pytest.raises(Exception, match="compression|quantize_level|lzma|0"):
            validated({"raw_dir": ".", "output_dir": ".", "default_camera": {"output": bad}})


def test_compressed_lights_are_named_fits_fz():
    raws = ["ccd/a.fits", "ccd/a.fits.fz", "cmos/b.fit", "ccd/c.fits.gz"]
    compression = {"ccd/a.fits": "rice", "ccd/a.fits.fz": "rice", "cmos/b.fit": None, "ccd/c.fits.gz": "gzip"}
    assert output_names(raws, compression) == {
        "ccd/a.fits": "ccd/a.fits.fz",
        "ccd/a.fits.fz": "ccd/a_fz.fits.fz",
        "cmos/b.fit": "cmos/b.fit",
        "ccd/c.fits.gz": "ccd/c.fits.fz",
    }
    assert output_names(raws) == output_names(raws, {p: "none" for p in raws})
    assert thumbnail_name("ccd/a.fits.fz") == thumbnail_name("ccd/a.fits") == "ccd/a.jpg"


# ------------------------------------------------------------- through the workflow
def test_demo_night_compressed_with_rice_still_matches_the_truth(tmp_path):
    """The demo night with ``output: {compression: rice}`` for both cameras: every light
    published as .fits.fz, and the truth-residual checks of test_workflow_demo (same
    limits) pass on the compressed files, read back by ccdcal."""
    from conftest import REPO, run_snakemake

    from ccdcal.simulate import write_demo_night

    raw, truth, out = tmp_path / "raw", tmp_path / "truth", tmp_path / "out"
    manifest = write_demo_night(raw, truth)
    config = (REPO / "config/config.yaml").read_text()
    for camera in ("demo-ccd", "demo-cmos"):
        config = config.replace(f"  - name: {camera}\n", f"  - name: {camera}\n    output: {{compression: rice}}\n")
    assert config.count("compression: rice") == 2
    (tmp_path / "config.yaml").write_text(config)
    run_snakemake(raw, out, "--configfile", str(tmp_path / "config.yaml"))

    calibrated = out / "calibrated"
    assert sorted(p.relative_to(calibrated).as_posix() for p in calibrated.rglob("*.fits*")) == sorted(
        f"{rel}.fz" for rel in manifest["lights"]
    )
    summary = (out / "summary.txt").read_text()
    assert "written as" not in summary
    for rel, t in sorted(manifest["lights"].items()):
        product = read_product(calibrated / f"{rel}.fz")
        assert product.header["COMPRESS"] == "RICE_1" and product.header["QUANTLVL"] == DEFAULT_QUANTIZE_LEVEL
        data, uncert = product.data.astype(np.float64), product.uncert.astype(np.float64)
        signal = fits.getdata(truth / t["signal"]).astype(np.float64)
        ideal = fits.getdata(truth / t["ideal_sigma"]).astype(np.float64)
        good = product.mask == 0
        assert good.mean() > 0.97, f"{rel}: only {good.mean():.3f} of the pixels unmasked"
        z = ((data - signal) / uncert)[good]
        limit = 4 / np.sqrt(2 * z.size) + 0.01
        assert abs(z.std() - 1) < limit, f"{rel}: residual/UNCERT scatter {z.std():.4f}"
        ratio = ((data - signal) / ideal)[good]
        assert 1.0 - limit < ratio.std() < 1.02, f"{rel}: residual/ideal noise {ratio.std():.4f}"
        assert abs(ratio.mean()) < 0.02, f"{rel}: residual bias {ratio.mean():.4f} sigma"
        uncert_ratio = np.median(uncert[good] / ideal[good])
        assert 1.0 <= uncert_ratio < 1.02, f"{rel}: UNCERT/ideal = {uncert_ratio:.4f}"
        print(
            f"{rel}: residual/UNCERT {z.std():.4f}, residual/ideal {ratio.std():.4f}, UNCERT/ideal {uncert_ratio:.4f}"
        )
    rows = list(csv.DictReader(open(out / "summary.csv", newline="", encoding="utf-8")))
    outputs = {r["path"]: r["output"] for r in rows if r["frame_type"] == "light" and r["status"] == "calibrated"}
    assert outputs == {rel: f"calibrated/{rel}.fz" for rel in manifest["lights"]}
