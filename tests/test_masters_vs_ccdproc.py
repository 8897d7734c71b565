"""Masters built by ccdcal equal masters built by ccdproc from the same raw frames.

ccdproc is an independent reference: it reads the raw files itself (CCDData), subtracts
the overscan (median of each row of BIASSEC fitted by a line), trims, subtracts bias and
scaled dark, and combines with its Combiner. ccdcal does the same in float32, block by
block; the results must agree to float32 rounding of the raw levels (~1e-7 relative to
the ~1000-30000 ADU being subtracted).
"""

from __future__ import annotations

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.modeling.models import Polynomial1D
from astropy.nddata import CCDData
from conftest import validated_config

from ccdcal.inventory import list_raw_files, take_inventory
from ccdcal.jobs.build_master import master_job
from ccdcal.plan import make_plan, master_inputs

EPS32 = np.finfo(np.float32).eps
BIASSEC, TRIMSEC = "[517:544,1:512]", "[1:512,1:512]"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ccdcal.simulate import write_demo_night

    base = tmp_path_factory.mktemp("ref")
    raw = base / "raw"
    write_demo_night(raw, base / "truth")
    config = validated_config(
        **{
            "raw_dir": str(raw),
            "output_dir": str(base / "out"),
            "memory_limit_mb": 64,  # several row blocks per master: the streaming path is exercised
            "cameras": [
                {
                    "name": "ccd",
                    "match": {"header": {"INSTRUME": "SimCam*"}},
                    "overscan": {"method": "polynomial", "order": 1},
                    "combine": {
                        "bias": {"method": "mean", "rejection": "sigma_clip", "maxiters": 1},
                        "dark": {"method": "median"},
                        "flat": {"method": "median"},
                    },
                },
                {
                    "name": "cmos",
                    "match": {"header": {"INSTRUME": "SimCMOS*"}},
                    "overscan": {"method": "none"},
                    "trim": "none",
                    "combine": {
                        "dark": {"method": "mean", "rejection": "sigma_clip", "center": "median", "maxiters": 1},
                        "flat": {"method": "median"},
                    },
                },
            ],
        }
    )
    records, cameras = take_inventory(raw, list_raw_files(raw), config)
    plan = make_plan(records, config, cameras)
    masters_dir = base / "out" / "masters"

    def stage(name):  # a bias fitted from darks comes after the darks
        kind = name.split("_")[0]
        return ("bias", "dark", "fitted", "flat").index("fitted" if plan["masters"][name]["derived_from"] else kind)

    order = sorted(plan["masters"], key=stage)
    for name in order:
        spec = plan["masters"][name]
        needs = [str(masters_dir / f"{m}.fits") for m in master_inputs(plan, name)["masters"]]
        master_job(spec, plan["cameras"][spec["camera"]], needs, str(masters_dir / f"{name}.fits"), config, threads=2)
    return {"raw": raw, "plan": plan, "masters": masters_dir}


def ours(demo, name) -> np.ndarray:
    return CCDData.read(demo["masters"] / f"{name}.fits", unit="adu", hdu=0).data.astype(np.float64)


def frames_of(demo, name):
    return [f for f in demo["plan"]["masters"][name]["frames"]]


def ccd_reduce(demo, rel) -> CCDData:
    ccd = CCDData.read(demo["raw"] / rel, unit="adu")
    ccd = ccdproc.subtract_overscan(ccd, fits_section=BIASSEC, overscan_axis=1, median=True, model=Polynomial1D(1))
    return ccdproc.trim_image(ccd, fits_section=TRIMSEC)


def assert_float32_equal(mine, reference, level, what):
    """Equal to float32 rounding of values of magnitude ``level``."""
    diff = np.abs(mine - reference)
    tol = 8 * EPS32 * level
    assert np.nanmax(diff) < tol, f"{what}: max |ccdcal - ccdproc| = {np.nanmax(diff):.3g} > {tol:.3g}"


def test_master_bias_equals_ccdproc(demo):
    name = next(n for n in demo["plan"]["masters"] if n.startswith("bias_ccd"))
    frames = [ccd_reduce(demo, f["path"]) for f in frames_of(demo, name)]
    combiner = ccdproc.Combiner(frames)
    combiner.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
    reference = combiner.average_combine().data
    assert combiner.data_arr.mask.sum() > 0  # the rejection had something to do
    assert_float32_equal(ours(demo, name), reference, 1100, name)


def test_master_dark_equals_ccdproc(demo):
    name = next(n for n in demo["plan"]["masters"] if n.startswith("dark_ccd"))
    frames = [ccd_reduce(demo, f["path"]) for f in frames_of(demo, name)]
    reference = ccdproc.combine(frames, method="median").data
    assert_float32_equal(ours(demo, name), reference, 1200, name)


def test_cmos_dark_library_equals_ccdproc(demo):
    name = "dark_cmos_1x1_g120_o30_-10.0C_120s"
    frames = [CCDData.read(demo["raw"] / f["path"], unit="adu") for f in frames_of(demo, name)]
    combiner = ccdproc.Combiner(frames)
    combiner.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
    reference = combiner.average_combine().data
    assert_float32_equal(ours(demo, name), reference, 400, name)


@pytest.mark.parametrize("filt", ["V", "R"])
def test_ccd_master_flat_with_scaled_dark_equals_ccdproc(demo, filt):
    plan = demo["plan"]
    name = f"flat_ccd_1x1_Normal_{filt}"
    bias_name = next(n for n in plan["masters"] if n.startswith("bias_ccd"))
    dark_name = next(n for n in plan["masters"] if n.startswith("dark_ccd"))
    # ccdproc's own masters, from the raw frames
    biases = [ccd_reduce(demo, f["path"]) for f in frames_of(demo, bias_name)]
    combiner = ccdproc.Combiner(biases)
    combiner.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
    bias = combiner.average_combine()
    dark = ccdproc.combine([ccd_reduce(demo, f["path"]) for f in frames_of(demo, dark_name)], method="median")
    dark_current = ccdproc.subtract_bias(dark, bias)
    flats = []
    for frame in frames_of(demo, name):
        assert frame["calibration"]["dark_mode"] == "scaled"
        flat = ccdproc.subtract_bias(ccd_reduce(demo, frame["path"]), bias)
        flat = ccdproc.subtract_dark(
            flat, dark_current, dark_exposure=300 * u.s, data_exposure=frame["exptime"] * u.s, scale=True
        )
        flats.append(flat)
    reference = ccdproc.combine(flats, method="median", scale=lambda a: 1 / np.ma.median(a)).data
    reference /= np.median(reference)
    mine = ours(demo, name)
    # normalized: float32 rounding of ~30000 ADU raw levels relative to the ~20000 ADU flat level
    diff = np.abs(mine - reference)
    assert np.max(diff) < 4e-6, f"{name}: max |ccdcal - ccdproc| = {np.max(diff):.3g}"
    assert np.median(mine) == pytest.approx(1.0, abs=1e-7)


def test_cmos_flat_with_darkflat_equals_ccdproc(demo):
    name = "flat_cmos_1x1_g120_o30_L"
    darkflat_name = "dark_cmos_1x1_g120_o30_-10.0C_2s"
    darkflats = [CCDData.read(demo["raw"] / f["path"], unit="adu") for f in frames_of(demo, darkflat_name)]
    combiner = ccdproc.Combiner(darkflats)
    combiner.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
    darkflat = combiner.average_combine()
    flats = []
    for frame in frames_of(demo, name):
        assert frame["calibration"]["dark"] == darkflat_name
        assert frame["calibration"]["dark_mode"] == "unscaled"
        flat = CCDData.read(demo["raw"] / frame["path"], unit="adu")
        flats.append(flat.subtract(darkflat))
    reference = ccdproc.combine(flats, method="median", scale=lambda a: 1 / np.ma.median(a)).data
    reference /= np.median(reference)
    diff = np.abs(ours(demo, name) - reference)
    assert np.max(diff) < 4e-6, f"{name}: max |ccdcal - ccdproc| = {np.max(diff):.3g}"


def test_streaming_blocks_do_not_change_the_master(demo, tmp_path):
    """The same master with one big block or many small ones is bit-identical."""
    plan = demo["plan"]
    name = next(n for n in plan["masters"] if n.startswith("bias_ccd"))
    spec = plan["masters"][name]
    config = validated_config(raw_dir=str(demo["raw"]), output_dir=str(tmp_path), memory_limit_mb=4096)
    out = tmp_path / "big.fits"
    master_job(spec, plan["cameras"][spec["camera"]], [], str(out), config, threads=1)
    small = demo["masters"] / f"{name}.fits"
    assert np.array_equal(CCDData.read(out, unit="adu").data, CCDData.read(small, unit="adu").data)
