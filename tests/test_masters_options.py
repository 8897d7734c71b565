"""XParallax viu's options in the masters and outputs, each failing if ignored."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from ccdcal.config import validated
from ccdcal.inventory import list_raw_files, take_inventory
from ccdcal.jobs import master_job
from ccdcal.plan import make_plan, master_inputs


@pytest.fixture(scope="module")
def ccd_night(tmp_path_factory):
    from ccdcal.simulate import write_demo_night

    base = tmp_path_factory.mktemp("options")
    manifest = write_demo_night(base / "raw", base / "truth")
    return base, manifest


def build_flat(base, camera_overrides, tag):
    config = validated({"raw_dir": str(base / "raw"), "output_dir": str(base / tag),
                        "cameras": [{"name": "ccd", "match": {"header": {"INSTRUME": "SimCam*"}},
                                     "overscan": {"method": "polynomial"}, **camera_overrides}]})
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
    # brightest flat's vignetted sky removes their cores
    flat = build_flat(base, {"combine": {"flat": {"method": "mean"}},
                             "flat": {"star_rejection": {"method": "minmax", "low": 1000, "high": 31000}}},
                      "minmax")
    assert fits.getheader(flat)["NSTARREJ"] > 0
