"""The calibration plan from hand-made inventory records (no files)."""

from __future__ import annotations

import json
import random

import pytest

from ccdcal.inventory import FrameRecord
from ccdcal.plan import PlanError, build_masters, cluster, make_plan, master_inputs


def rec(
    path,
    frame_type,
    exptime,
    temp=-10.0,
    filt="",
    binning="1x1",
    camera="cam",
    shape="100x120",
    gain="",
    offset="",
    mode="",
):
    return FrameRecord(
        path=path,
        status="ok",
        frame_type=frame_type,
        camera=camera,
        exptime=exptime,
        temperature_c=temp,
        filter=filt,
        binning=binning,
        shape=shape,
        gain_setting=gain,
        offset=offset,
        readout_mode=mode,
    )


@pytest.fixture
def cams(camera_profile):
    """cameras mapping as take_inventory returns it: name -> validated profile."""

    def make(**overrides):
        return {"cam": camera_profile(name="cam", **overrides)}

    return make


def biases(n=3, temp=-10.0, **kw):
    tag = kw.get("binning", "1x1")
    return [rec(f"bias/b{temp}_{tag}_{i}.fits", "bias", 0.0, temp, **kw) for i in range(n)]


def darks(exptime, n=3, temp=-10.0, **kw):
    tag = kw.get("binning", "1x1")
    return [rec(f"dark/d{exptime}_{temp}_{tag}_{i}.fits", "dark", exptime, temp, **kw) for i in range(n)]


def flats(filt, exptime, n=3, temp=-10.0, **kw):
    tag = kw.get("binning", "1x1")
    return [rec(f"flat/f{filt}_{exptime}_{tag}_{i}.fits", "flat", exptime, temp, filt, **kw) for i in range(n)]


def light(name, exptime, filt="R", temp=-10.0, **kw):
    return rec(f"light/{name}.fits", "light", exptime, temp, filt, **kw)


def masters_of(plan, kind):
    return {n: m for n, m in plan["masters"].items() if m["type"] == kind}


# --------------------------------------------------------------------- grouping and naming


def test_cluster_spans_at_most_the_width():
    assert cluster([0.0, 0.5, 2.0, 2.1, 5.0], 2.0) == [[0, 1, 2], [3], [4]]
    assert cluster([3.0, 1.0, 2.0], 0.5) == [[1], [2], [0]]
    assert cluster([], 1.0) == []


def test_temperature_groups(cams, make_config):
    records = [
        rec("b1.fits", "bias", 0.0, -10.0),
        rec("b2.fits", "bias", 0.0, -10.2),
        rec("b3.fits", "bias", 0.0, -9.9),
        rec("b4.fits", "bias", 0.0, -15.0),
        rec("b5.fits", "bias", 0.0, -15.4),
        rec("b6.fits", "bias", 0.0, None),
        rec("b7.fits", "bias", 0.0, None),
    ]
    plan = make_plan(records, make_config(), cams())
    got = {n: sorted(f["path"] for f in m["frames"]) for n, m in masters_of(plan, "bias").items()}
    assert got == {
        "bias_cam_1x1_-10.0C": ["b1.fits", "b2.fits", "b3.fits"],
        "bias_cam_1x1_-15.2C": ["b4.fits", "b5.fits"],
        "bias_cam_1x1_noT": ["b6.fits", "b7.fits"],
    }
    assert plan["masters"]["bias_cam_1x1_-10.0C"]["temperature_c"] == pytest.approx(-10.033, abs=1e-3)
    assert plan["masters"]["bias_cam_1x1_noT"]["temperature_c"] is None


def test_temperature_tolerance_sets_the_group_width(cams, make_config):
    records = [rec("b1.fits", "bias", 0.0, -10.0), rec("b2.fits", "bias", 0.0, -10.6)]
    assert len(masters_of(make_plan(records, make_config(), cams()), "bias")) == 1
    tight = cams(temperature_tolerance=0.25)
    assert len(masters_of(make_plan(records, make_config(), tight), "bias")) == 2


def test_master_names_by_setup(cams, make_config):
    setup = dict(gain="120", offset="30", mode="High Gain/2")
    records = (
        biases(**setup)
        + darks(300.0, **setup)
        + flats("Ha 7nm", 3.0, **setup)
        + [light("m31", 300.0, "Ha 7nm", **setup)]
    )
    plan = make_plan(records, make_config(), cams())
    label = "cam_1x1_g120_o30_High_Gain_2"
    assert set(plan["masters"]) == {f"bias_{label}_-10.0C", f"dark_{label}_-10.0C_300s", f"flat_{label}_Ha_7nm"}
    assert all("/" not in name and " " not in name for name in plan["masters"])
    assert plan["masters"][f"flat_{label}_Ha_7nm"]["filter"] == "Ha 7nm"
    assert plan["masters"][f"bias_{label}_-10.0C"]["setup"]["gain_setting"] == "120"


# --------------------------------------------------------------------------- dark strategy


def test_auto_exact_exposure_is_unscaled_without_bias(cams, make_config):
    records = biases() + darks(300.0) + darks(60.0) + [light("a", 300.05)]
    plan = make_plan(records, make_config(), cams())
    entry = plan["lights"]["light/a.fits"]
    assert entry["dark"] == "dark_cam_1x1_-10.0C_300s"
    assert (entry["dark_mode"], entry["dark_scale"]) == ("unscaled", 1.0)
    assert entry["bias"] is None  # the dark includes the bias
    assert "NOBIAS" not in entry["flags"] and "NODARK" not in entry["flags"]


def test_auto_other_exposure_scales_the_quietest_dark(cams, make_config):
    """120 s from 3 darks of 60 s (x2: adds 4/3 + 1/3 of a frame's read-noise variance) or
    of 300 s (x0.4: 0.16/3 + 0.36/3): the 300 s master, ten times quieter, not the nearer."""
    records = biases() + darks(60.0) + darks(300.0) + [light("a", 120.0), light("b", 280.0), light("c", 300.2)]
    plan = make_plan(records, make_config(), cams())
    a, b, c = (plan["lights"][f"light/{n}.fits"] for n in "abc")
    assert (a["dark"], a["dark_mode"]) == ("dark_cam_1x1_-10.0C_300s", "scaled")
    assert a["dark_scale"] == pytest.approx(0.4)
    assert a["bias"] == "bias_cam_1x1_-10.0C"
    assert (b["dark"], b["dark_mode"]) == ("dark_cam_1x1_-10.0C_300s", "scaled")
    assert b["dark_scale"] == pytest.approx(280.0 / 300.0, abs=1e-6)
    # 0.2 s off with a 0.1 s tolerance: scaled, k = t / t_dark
    assert (c["dark"], c["dark_mode"]) == ("dark_cam_1x1_-10.0C_300s", "scaled")
    assert c["dark_scale"] == pytest.approx(300.2 / 300.0, abs=1e-6)
    assert c["bias"] == "bias_cam_1x1_-10.0C"


def test_auto_without_bias_gives_no_dark_and_says_why(cams, make_config):
    records = darks(60.0) + [light("a", 120.0), light("b", 60.0)]
    plan = make_plan(records, make_config(), cams())
    a = plan["lights"]["light/a.fits"]
    assert a["dark"] is None and a["bias"] is None
    assert "NODARK" in a["flags"] and "NOBIAS" in a["flags"]
    assert any(
        "no dark: dark_cam_1x1_-10.0C_60s: exposure 60 s != 120 s and no bias to scale it" in n for n in a["notes"]
    )
    b = plan["lights"]["light/b.fits"]  # exact exposure still works without a bias
    assert (b["dark_mode"], b["flags"]) == ("unscaled", ["NOFLAT"])


def test_strategy_always_and_never(cams, make_config):
    records = biases() + darks(300.0) + [light("a", 300.0), light("b", 120.0)]
    always = make_plan(records, make_config(), cams(dark={"scale": "always"}))
    a = always["lights"]["light/a.fits"]
    assert (a["dark_mode"], a["dark_scale"], a["bias"]) == ("scaled", 1.0, "bias_cam_1x1_-10.0C")
    assert always["lights"]["light/b.fits"]["dark_scale"] == pytest.approx(0.4)

    never = make_plan(records, make_config(), cams(dark={"scale": "never"}))
    a, b = never["lights"]["light/a.fits"], never["lights"]["light/b.fits"]
    assert (a["dark_mode"], a["bias"]) == ("unscaled", None)
    assert b["dark"] is None and b["bias"] == "bias_cam_1x1_-10.0C"
    assert any("scaling disabled" in n for n in b["notes"])
    assert b["flags"] == ["NODARK", "NOFLAT"]


def test_exposure_tolerance_is_configurable(cams, make_config):
    records = biases() + darks(300.0) + [light("a", 300.4)]
    loose = make_plan(records, make_config(), cams(dark={"exposure_tolerance": 0.5}))
    assert loose["lights"]["light/a.fits"]["dark_mode"] == "unscaled"
    strict = make_plan(records, make_config(), cams())
    assert strict["lights"]["light/a.fits"]["dark_mode"] == "scaled"


def test_darks_outside_the_temperature_tolerance_are_never_used(cams, make_config):
    records = (
        biases(temp=-10.0)
        + darks(300.0, temp=-15.0)
        + darks(300.0, temp=-11.0, n=1)
        + [light("at10", 300.0, temp=-10.0), light("at20", 300.0, temp=-20.0), light("noT", 300.0, temp=None)]
    )
    plan = make_plan(records, make_config(), cams())
    at10 = plan["lights"]["light/at10.fits"]
    assert at10["dark"] == "dark_cam_1x1_-11.0C_300s"  # exactly 1.0 C away: allowed
    at20 = plan["lights"]["light/at20.fits"]
    assert at20["dark"] is None and at20["bias"] is None
    assert any(
        "temperature -11.0 C outside -20.0 C +-1 C" in n and "temperature -15.0 C outside" in n
        for n in at20["notes"]
        if n.startswith("no dark")
    )
    assert any(n.startswith("no bias") and "outside -20.0 C +-1 C" in n for n in at20["notes"])
    no_t = plan["lights"]["light/noT.fits"]
    assert no_t["dark"] is None and any("-15.0 C, and the frame has no usable temperature" in n for n in no_t["notes"])
    assert plan["masters"]["dark_cam_1x1_-15.0C_300s"]["used"] is False


# ----------------------------------------------------------------------------------- flats


def test_flats_get_per_frame_calibration_with_darkflat(cams, make_config):
    records = (
        biases()
        + darks(3.0)
        + darks(300.0)
        + flats("R", 3.0)
        + [rec("flat/late.fits", "flat", 5.0, -10.0, "R")]
        + [light("a", 300.0)]
    )
    plan = make_plan(records, make_config(), cams())
    flat = plan["masters"]["flat_cam_1x1_R"]
    assert len(flat["frames"]) == 4
    by_path = {f["path"]: f["calibration"] for f in flat["frames"]}
    darkflat = by_path["flat/fR_3.0_1x1_0.fits"]
    assert darkflat["dark"] == "dark_cam_1x1_-10.0C_3s"
    assert (darkflat["dark_mode"], darkflat["dark_scale"], darkflat["bias"]) == ("unscaled", 1.0, None)
    late = by_path["flat/late.fits"]  # 5 s: the 300 s darks x1/60 add less noise than the 3 s x5/3
    assert (late["dark"], late["dark_mode"]) == ("dark_cam_1x1_-10.0C_300s", "scaled")
    assert late["dark_scale"] == pytest.approx(5.0 / 300.0, abs=1e-6)
    assert late["bias"] == "bias_cam_1x1_-10.0C"
    inputs = master_inputs(plan, "flat_cam_1x1_R")
    assert inputs["masters"] == ["bias_cam_1x1_-10.0C", "dark_cam_1x1_-10.0C_300s", "dark_cam_1x1_-10.0C_3s"]
    assert sorted(inputs["frames"]) == sorted(by_path)
    # the darkflat is needed by the flat even though no light uses it
    assert plan["masters"]["dark_cam_1x1_-10.0C_3s"]["used"] is True
    assert plan["lights"]["light/a.fits"]["flat"] == "flat_cam_1x1_R"


def test_light_without_flat_for_its_filter(cams, make_config):
    records = biases() + darks(300.0) + flats("R", 3.0) + [light("v", 300.0, "V"), light("r", 300.0, "r")]
    plan = make_plan(records, make_config(), cams())
    v = plan["lights"]["light/v.fits"]
    assert v["flat"] is None and "NOFLAT" in v["flags"]
    assert any("no flat for filter 'V': flat_cam_1x1_R: filter R != V" in n for n in v["notes"])
    assert v["dark"] == "dark_cam_1x1_-10.0C_300s"  # still calibrated otherwise
    assert v["group"] in plan["light_groups"]
    assert plan["light_groups"][v["group"]]["lights"][0]["path"] == "light/v.fits"
    assert plan["lights"]["light/r.fits"]["flat"] == "flat_cam_1x1_R"  # filter case-insensitive

    stop = {"policy": "stop", "steps": ["flat"]}
    with pytest.raises(PlanError) as info:
        make_plan(records, make_config(missing_calibration=stop), cams())
    assert "light/v.fits" in str(info.value) and "light/r.fits" not in str(info.value)
    # steps that are present do not stop the night
    make_plan(records, make_config(missing_calibration={"policy": "stop", "steps": ["dark"]}), cams())
    # skip: the light is left out of every group, with the reason
    skipped = make_plan(records, make_config(missing_calibration={"policy": "skip", "steps": ["flat"]}), cams())
    assert skipped["lights"]["light/v.fits"]["skipped"].startswith("skipped: no flat")
    assert all(e["path"] != "light/v.fits" for g in skipped["light_groups"].values() for e in g["lights"])
    assert skipped["lights"]["light/r.fits"]["group"] in skipped["light_groups"]


def test_stop_on_missing_bias_names_the_light(cams, make_config):
    records = darks(300.0) + [light("a", 300.0), light("b", 60.0)]
    stop = {"policy": "stop", "steps": ["bias"]}
    with pytest.raises(PlanError, match=r"light/b\.fits: no bias") as info:
        make_plan(records, make_config(missing_calibration=stop), cams())
    assert "light/a.fits" not in str(info.value)  # its dark includes the bias: nothing lacks


# ------------------------------------------------------------------------ setups and jobs


def test_frames_of_another_binning_are_never_mixed(cams, make_config):
    records = (
        biases(binning="2x2", shape="50x60")
        + biases(binning="1x1")
        + darks(300.0, binning="2x2", shape="50x60")
        + flats("R", 3.0, binning="2x2", shape="50x60")
        + [light("one", 300.0), light("two", 300.0, binning="2x2", shape="50x60")]
    )
    for master in build_masters(records, cams()):
        assert {f.binning for f in master.frames} == {master.setup["binning"]}
        assert master.setup["binning"] in master.name
    plan = make_plan(records, make_config(), cams())
    assert len(masters_of(plan, "bias")) == 2
    one, two = plan["lights"]["light/one.fits"], plan["lights"]["light/two.fits"]
    assert one["bias"] == "bias_cam_1x1_-10.0C"
    assert one["dark"] is None and one["flat"] is None
    assert any(n.startswith("no dark: dark_cam_2x2_-10.0C_300s: binning 2x2 != 1x1") for n in one["notes"])
    assert two["dark"] == "dark_cam_2x2_-10.0C_300s" and two["flat"] == "flat_cam_2x2_R"
    assert one["group"] != two["group"]


def test_lights_per_job_splits_a_group(cams, make_config):
    records = biases() + darks(300.0) + flats("R", 3.0) + [light(f"m{i}", 300.0) for i in range(5)]
    plan = make_plan(records, make_config(lights_per_job=2), cams())
    groups = plan["light_groups"]
    assert len(groups) == 3
    assert [len(g["lights"]) for g in groups.values()] == [2, 2, 1]
    names = list(groups)
    assert names[0].endswith("_001") and names[2].endswith("_003")
    assert len({n.rsplit("_", 1)[0] for n in names}) == 1
    assert all(g["dark"] == "dark_cam_1x1_-10.0C_300s" for g in groups.values())
    for name, group in groups.items():
        for entry in group["lights"]:
            assert plan["lights"][entry["path"]]["group"] == name
    single = make_plan(records, make_config(), cams())
    assert len(single["light_groups"]) == 1
    assert not next(iter(single["light_groups"])).endswith("_001")


def test_plan_is_deterministic_and_order_independent(cams, make_config):
    records = (
        biases()
        + biases(temp=-15.0)
        + biases(temp=None, n=2)
        + darks(300.0)
        + darks(60.0)
        + darks(3.0, temp=-15.0)
        + flats("R", 3.0)
        + flats("V", 5.0, temp=-15.0)
        + [light(f"m{i}", 300.0 if i % 2 else 120.0, "RV"[i % 2]) for i in range(7)]
        + [light("cold", 90.0, "V", temp=-15.0), light("x", 10.0, "B", temp=None)]
    )
    config = make_config(lights_per_job=3)
    reference = json.dumps(make_plan(records, config, cams()))
    assert json.dumps(make_plan(list(records), config, cams())) == reference
    shuffled = list(records)
    for seed in range(3):
        random.Random(seed).shuffle(shuffled)
        assert json.dumps(make_plan(shuffled, config, cams())) == reference
    assert json.dumps(make_plan(records[::-1], config, cams())) == reference


def test_excluded_and_non_ok_records_are_ignored(cams, make_config):
    bad = rec("bias/bad.fits", "bias", 0.0)
    bad.status = "excluded"
    records = biases(n=2) + [bad]
    masters = build_masters(records, cams())
    assert len(masters) == 1
    assert [f.path for f in masters[0].frames] == ["bias/b-10.0_1x1_0.fits", "bias/b-10.0_1x1_1.fits"]


def test_filter_names_differing_in_case_make_one_flat(cams, make_config):
    records = flats("R", 2.0) + [rec("flat/r_lower.fits", "flat", 2.0, -10.0, "r")]
    records += biases() + [light("L1", 60.0, filt="r")]
    plan = make_plan(records, make_config(), cams())
    flat_masters = masters_of(plan, "flat")
    assert len(flat_masters) == 1
    ((name, master),) = flat_masters.items()
    assert len(master["frames"]) == 4
    assert plan["lights"]["light/L1.fits"]["flat"] == name


def test_dark_bias_is_matched_on_the_master_temperature(cams, make_config):
    """Darks at -11.0, -9.2, -9.2 C form one master (mean -9.8 C). Its first frame alone would
    pick the -12.0 C bias (1.0 C away); the master's mean temperature picks the -9.8 C one."""
    dark_frames = [rec(f"dark/d{i}.fits", "dark", 60.0, t) for i, t in enumerate([-11.0, -9.2, -9.2])]
    records = dark_frames + biases(temp=-12.0) + biases(temp=-9.8)
    plan = make_plan(records, make_config(), cams())
    (dark,) = masters_of(plan, "dark").values()
    assert dark["temperature_c"] == pytest.approx(-9.8)
    assert len(masters_of(plan, "bias")) == 2
    assert dark["bias"] == next(
        n for n, m in masters_of(plan, "bias").items() if m["temperature_c"] == pytest.approx(-9.8)
    )


def test_summary_warns_of_lights_without_calibration_frames_at_their_binning(cams, make_config):
    from ccdcal.report import binning_notes

    records = biases(binning="2x2", shape="50x60") + [light("one", 300.0)]
    plan = make_plan(records, make_config(), cams())
    rows = [{"path": r.path, "camera": r.camera} for r in records]
    notes = binning_notes(rows, plan)
    assert "  cam: lights 1x1; calibration frames 2x2" in notes
    assert "    lights at 1x1 have no calibration frames at 1x1: they get none" in notes


def test_lights_per_job_auto_follows_the_frame_size_and_splits_evenly(cams, make_config):
    from ccdcal.plan import LIGHT_JOB_PIXELS, balanced_chunks, lights_per_job

    assert lights_per_job("auto", 4096 * 4096) == 100
    assert lights_per_job("auto", 2048 * 2048) == 400
    assert lights_per_job("auto", 10**12) == 1
    assert lights_per_job(7, 2048 * 2048) == 7
    assert [len(c) for c in balanced_chunks(list(range(500)), 400)] == [250, 250]
    assert [len(c) for c in balanced_chunks(list(range(10)), 4)] == [4, 3, 3]
    assert balanced_chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert balanced_chunks([], 3) == []
    # the plan: lights of the default test shape, auto -> one job per LIGHT_JOB_PIXELS
    records = biases() + darks(300.0) + flats("R", 3.0) + [light(f"m{i}", 300.0) for i in range(5)]
    ny, nx = (int(v) for v in records[-1].shape.split("x"))
    plan = make_plan(records, make_config(), cams())
    assert [len(g["lights"]) for g in plan["light_groups"].values()] == [5]
    assert lights_per_job("auto", ny * nx) == LIGHT_JOB_PIXELS // (ny * nx) >= 5


def test_master_names_never_say_minus_zero():
    from ccdcal.plan import _temperature_label

    assert [_temperature_label(t) for t in (-0.04, 0.04, -0.06, -10.0, None)] == [
        "0.0C",
        "0.0C",
        "-0.1C",
        "-10.0C",
        "noT",
    ]


def test_the_dark_that_adds_the_least_noise_is_chosen_not_the_nearest(cams, make_config):
    """A 23 s frame: a single 20 s dark scaled x1.15 adds 1.32 + 0.02/10 of a frame's
    read-noise variance, the 60 s master of 11 frames scaled x0.383 adds 0.013 + 0.038:
    about 26 times less. The nearer exposure was chosen before."""
    records = (
        biases(n=10)
        + darks(20.0, n=1)
        + darks(60.0, n=11)
        + flats("R", 23.0)
        + [light("short", 23.0), light("exact", 60.0)]
    )
    plan = make_plan(records, make_config(), cams())
    short = plan["lights"]["light/short.fits"]
    assert short["dark"] == "dark_cam_1x1_-10.0C_60s" and short["dark_mode"] == "scaled"
    assert short["dark_scale"] == pytest.approx(23 / 60)
    flat = next(iter(masters_of(plan, "flat").values()))
    assert flat["frames"][0]["calibration"]["dark"] == "dark_cam_1x1_-10.0C_60s"  # the 23 s flats too
    rows = [r for r in plan["matches"] if r["frame"] == "light/short.fits" and r["step"] == "dark"]
    (single,) = [r for r in rows if r["candidate"] == "dark_cam_1x1_-10.0C_20s"]
    ratio = (1.15**2 + 0.15**2 / 10) / ((23 / 60) ** 2 / 11 + (1 - 23 / 60) ** 2 / 10)
    assert single["result"].startswith("not preferred: x1.15 of 1 frame(s) adds ")
    assert f"{ratio:.3g} times the noise of dark_cam_1x1_-10.0C_60s" in single["result"], single
    assert plan["lights"]["light/exact.fits"]["dark_mode"] == "unscaled"  # an exact exposure first


def test_a_master_flat_made_without_bias_or_dark_says_so_and_so_do_its_lights(cams, make_config):
    """Flats with no bias and no dark to subtract: the master is flagged, and its lights
    (calibrated OK otherwise) carry FLAT-NOBIAS, FLAT-NODARK instead of CALFLAGS 'OK'."""
    records = biases() + darks(60.0) + flats("R", 3.0, temp=-20.0) + [light("a", 60.0)]
    plan = make_plan(records, make_config(), cams())
    (flat,) = masters_of(plan, "flat").values()
    assert flat["flags"] == ["NOBIAS", "NODARK"]
    assert plan["lights"]["light/a.fits"]["flags"] == ["FLAT-NOBIAS", "FLAT-NODARK"]
    assert all(m["flags"] == [] for m in plan["masters"].values() if m["type"] != "flat")


def test_a_frame_the_camera_already_dark_subtracted_gets_neither_dark_nor_bias(cams, make_config):
    done = light("done", 60.0)
    done.dark_subtracted = "HISTORY Auto-Dark Subtraction"
    records = biases() + darks(60.0) + flats("R", 60.0) + [done, light("raw", 60.0)]
    plan = make_plan(records, make_config(), cams())
    entry = plan["lights"]["light/done.fits"]
    assert (entry["bias"], entry["dark"], entry["dark_mode"]) == (None, None, "camera")
    assert entry["flags"] == [] and entry["flat"] == "flat_cam_1x1_R"
    assert any("subtracted by the camera software" in n for n in entry["notes"])
    assert plan["lights"]["light/raw.fits"]["dark"] == "dark_cam_1x1_-10.0C_60s"


# --------------------------------------------------------------------- the camera's steps
def test_a_step_left_out_gets_no_master_and_no_flag(cams, make_config):
    """A camera whose steps leave the dark out: its lights and flats get no dark (none is
    looked for, none is missed), the bias and flat as usual; with the default steps the
    same night's lights get the dark."""
    records = [*biases(), *darks(60.0), *flats("R", 5.0), light("a", 60.0)]
    plan = make_plan(records, make_config(), cams(steps=["overscan", "trim", "bias", "flat"]))
    entry = plan["lights"]["light/a.fits"]
    assert entry["dark"] is None and entry["bias"] and entry["flat"]
    assert entry["flags"] == [] and not any("no dark" in note for note in entry["notes"])
    (flat,) = masters_of(plan, "flat").values()
    assert all(f["calibration"]["dark"] is None and f["calibration"]["bias"] for f in flat["frames"])
    assert flat["flags"] == []

    default = make_plan(records, make_config(), cams())["lights"]["light/a.fits"]
    assert default["dark"] and default["dark_mode"] == "unscaled"

    no_flat = make_plan(records, make_config(), cams(steps=["overscan", "trim", "bias", "dark"]))
    assert no_flat["lights"]["light/a.fits"]["flat"] is None
    assert no_flat["lights"]["light/a.fits"]["flags"] == []


def test_xisf_lights_are_written_as_fits_beside_a_fits_namesake():
    from ccdcal.plan import output_names

    names = output_names(["n/a.xisf", "n/b.XISF", "n/c.fits", "n/c.xisf", "n/c.fits.fz"])
    assert names == {
        "n/a.xisf": "n/a.fits",
        "n/b.XISF": "n/b.fits",
        "n/c.fits": "n/c.fits",
        "n/c.xisf": "n/c_xisf.fits",
        "n/c.fits.fz": "n/c_fz.fits",
    }
