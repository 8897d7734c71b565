"""ccdcal.night_noise: which frames measure a setup's gain and read noise, and the order
in which the gain and read noise used are decided (profile, header, measured, library)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from ccdcal import simulate
from ccdcal.camera import CameraProfile, HeaderView
from ccdcal.config import validated
from ccdcal.inventory import take_inventory
from ccdcal.night_noise import MAX_NOISE_SIDE, box_for, decide, measure_setup, noise_name, sampled
from ccdcal.noise import flat_pair_point
from ccdcal.plan import make_plan

MEASURED_GAIN = {"value": 0.8, "error": 0.005, "method": "photon transfer, 5 flat pairs, bias pair"}
BIAS_PAIR_RN = {"value": 2.25, "error": 0.01, "method": "bias pair a.fits + b.fits", "upper_limit": False}


def profile(**camera) -> CameraProfile:
    return CameraProfile(validated({"raw_dir": ".", "output_dir": ".", "default_camera": camera})["default_camera"])


def headers(**cards):
    return [("light_001.fits", HeaderView(fits.Header(list(cards.items()))))]


def test_the_profile_value_comes_first_then_the_header_keyword_then_the_measurement():
    measured = {"gain": MEASURED_GAIN, "read_noise_adu": BIAS_PAIR_RN}
    given = decide(profile(gain={"value": 0.81}, read_noise={"value": 1.9}), headers(EGAIN=0.79), measured)
    assert (given["gain"], given["gain_source"]) == (0.81, "config")
    assert (given["read_noise_e"], given["read_noise_source"]) == (1.9, "config")
    from_header = decide(profile(), headers(EGAIN=0.79, RDNOISE=1.8), {"gain": MEASURED_GAIN})
    assert (from_header["gain"], from_header["gain_source"]) == (0.79, "header EGAIN")
    assert (from_header["read_noise_e"], from_header["read_noise_source"]) == (1.8, "header RDNOISE")
    assert from_header["warnings"] == [] and from_header["flags"] == []
    # a bias pair tonight comes before a header's read noise (often the nominal value)
    with_pair = decide(profile(), headers(EGAIN=0.79, RDNOISE=1.8), measured)
    assert with_pair["read_noise_e"] == pytest.approx(2.25 * 0.79)
    assert with_pair["read_noise_source"] == "measured: bias pair a.fits + b.fits"
    assert with_pair["warnings"] == []  # 1.8 vs 1.78 e-: within the 2 % floor
    from_frames = decide(profile(), headers(GAIN=0.79), measured)
    assert from_frames["gain"] == 0.8 and from_frames["gain_error"] == 0.005
    assert from_frames["gain_source"] == "measured: photon transfer, 5 flat pairs, bias pair"
    assert from_frames["read_noise_e"] == pytest.approx(2.25 * 0.8)
    assert from_frames["read_noise_error_e"] == pytest.approx(0.01 * 0.8)
    assert from_frames["read_noise_source"] == "measured: bias pair a.fits + b.fits"


def test_an_ambiguous_gain_keyword_that_disagrees_gives_way_to_the_measurement():
    """GAIN = 100 read as e-/ADU (cameras[].gain.keyword: GAIN) on a camera whose GAIN is
    a setting: the measurement (0.8 e-/ADU) is used, and a warning says why."""
    decided = decide(profile(gain={"keyword": "GAIN"}), headers(GAIN=100), {"gain": MEASURED_GAIN})
    assert (decided["gain"], decided["gain_source"][:9]) == (0.8, "measured:")
    assert len(decided["warnings"]) == 2  # the gain, and the read noise unknown
    assert decided["warnings"][0].startswith("header GAIN = 100 is not the measured gain 0.8 +- 0.005")
    assert decided["warnings"][0].endswith("cameras write GAIN in e-/ADU or as a setting; the measured gain is used")
    agreeing = decide(profile(gain={"keyword": "GAIN"}), headers(GAIN=0.805), {"gain": MEASURED_GAIN})
    assert (agreeing["gain"], agreeing["gain_source"]) == (0.805, "header GAIN")


def test_an_unambiguous_value_that_disagrees_is_kept_and_warned_about():
    decided = decide(
        profile(), headers(EGAIN=1.0, RDNOISE=5.0), {"gain": MEASURED_GAIN, "read_noise_adu": BIAS_PAIR_RN}
    )
    assert (decided["gain"], decided["gain_source"]) == (1.0, "header EGAIN")
    # the measured read noise (ADU) in e- with the gain used: UNCERT (ADU) has rn_e / gain
    assert decided["read_noise_e"] == 2.25
    gain_warning, rn_warning = decided["warnings"]
    assert gain_warning.startswith("gain 1 e-/ADU (header EGAIN) disagrees with the measured 0.8")
    assert rn_warning == (
        "read noise 5 e- (header RDNOISE) is not tonight's: the bias pair gives "
        "2.25 +- 0.01 e- (60 sigma); the measurement is used"
    )  # 2.75 / hypot(0.01, 0.045)
    configured = decide(profile(read_noise={"value": 5.0}), [], {"read_noise_adu": BIAS_PAIR_RN})
    assert configured["read_noise_e"] == 5.0  # the user's value is kept, and warned about
    assert configured["warnings"][1].startswith("read noise 5 e- (config) disagrees with the measured")
    # within the measurement's error and the 2 % floor: no warning
    close = decide(profile(), headers(EGAIN=0.812), {"gain": MEASURED_GAIN})
    assert close["warnings"] == [
        "read noise unknown: UNCERT lacks it, the lights are flagged "
        "NORDNOISE (give cameras[].read_noise, or take two biases)"
    ]


def test_nothing_known_or_measurable_is_flagged_never_silent():
    decided = decide(profile(), headers(GAIN=120), {})
    assert (decided["gain"], decided["read_noise_e"]) == (1.0, 0.0)
    assert decided["flags"] == ["NOGAIN", "NORDNOISE"]
    assert decided["gain_source"].startswith("unknown: ")
    assert decided["read_noise_source"].startswith("unknown: ")
    assert [w.split(":")[0] for w in decided["warnings"]] == ["gain unknown", "read noise unknown"]


def test_read_noise_from_dark_pairs_only_without_a_bias_pair_or_a_library_bias():
    """A bias pair tonight, then a library bias's RDNOISE, then the dark pairs' intercept;
    a single-exposure dark pair is an upper limit, used last, with a warning."""
    library = [
        (
            "/lib/bias/cam/bias_x.fits",
            fits.Header([("CCDCALTY", "bias"), ("RDNOISE", 1.7), ("RNSOURCE", "measured: bias pair")]),
        )
    ]
    intercept = {
        "value": 2.3,
        "error": 0.02,
        "upper_limit": False,
        "method": "4 dark pairs at 2 exposures (2, 120 s): intercept of var(D1 - D2)/2",
    }
    upper = {**intercept, "upper_limit": True, "method": "1 dark pair at 120 s: an upper limit"}
    gain = {"gain": MEASURED_GAIN}
    assert decide(profile(), [], {**gain, "read_noise_adu": BIAS_PAIR_RN}, library)["read_noise_source"].startswith(
        "measured: bias pair"
    )
    from_library = decide(profile(), [], {**gain, "read_noise_adu": intercept}, library)
    assert (from_library["read_noise_e"], from_library["read_noise_source"]) == (
        1.7,
        "library master bias_x.fits (RDNOISE from measured: bias pair)",
    )
    from_darks = decide(profile(), [], {**gain, "read_noise_adu": intercept})
    assert from_darks["read_noise_e"] == pytest.approx(2.3 * 0.8) and from_darks["warnings"] == []
    limit = decide(profile(), [], {**gain, "read_noise_adu": upper})
    assert limit["read_noise_e"] == pytest.approx(2.3 * 0.8) and limit["flags"] == []
    assert limit["warnings"][0].startswith("read noise 1.84 e- is an upper limit")


def test_a_library_master_gives_its_gain_only_when_it_was_known():
    known = ("/lib/dark.fits", fits.Header([("EGAIN", 1.4), ("GAINSRC", "header EGAIN")]))
    silent = ("/lib/old.fits", fits.Header([("EGAIN", 1.0)]))  # made before GAINSRC: unknown
    unknown = ("/lib/unk.fits", fits.Header([("EGAIN", 1.0), ("GAINSRC", "unknown")]))
    assert decide(profile(), [], {}, [silent, unknown, known])["gain_source"] == (
        "library master dark.fits (EGAIN from header EGAIN)"
    )
    assert decide(profile(), [], {}, [silent, unknown])["flags"][0] == "NOGAIN"


@pytest.mark.parametrize(
    "shape, box", [((2048, 2048), 64), ((480, 640), 64), ((128, 160), 16), ((256, 320), 32), ((64, 64), 16)]
)
def test_small_frames_get_smaller_boxes(shape, box):
    assert box_for(shape) == box


@pytest.mark.parametrize("shape", [(4096, 4096), (2048, 3000), (1025, 700), (1024, 1024), (600, 800)])
def test_large_frames_are_measured_on_their_central_square(shape):
    """Numpy slices [y, x]: at most MAX_NOISE_SIDE pixels per axis, centred; the box size
    is chosen for that region; frames no larger are measured whole."""
    chosen = sampled(shape)
    if max(shape) <= MAX_NOISE_SIDE:
        assert chosen == {"box": box_for(shape), "region": None}
        return
    region = chosen["region"]
    sides = [s.stop - s.start for s in region]
    assert sides == [min(n, MAX_NOISE_SIDE) for n in shape]
    for sl, n, side in zip(region, shape, sides):
        assert sl.start == (n - side) // 2 and 0 <= sl.start and sl.stop <= n
    assert chosen["box"] == box_for(tuple(sides))


def test_the_central_square_measures_the_gain_as_well_as_the_whole_frame():
    """A 2048 x 2048 flat pair of known gain (1.5 e-/ADU, 12 e- read noise, vignetted):
    the central 1024 square gives the gain within 1 % of the truth, and its error estimate
    is about twice the whole frame's (a quarter of the pixels), not more."""
    rng = np.random.default_rng(5)
    gain, read_noise_adu, shape = 1.5, 8.0, (2048, 2048)
    y, x = np.indices(shape) / 2047.0 - 0.5
    flat_field = 1.0 - 0.3 * (x**2 + y**2)

    def frame(level):
        electrons = rng.poisson(level * gain * flat_field) if level else 0.0
        return (1000.0 + electrons / gain + rng.normal(0, read_noise_adu, shape)).astype(np.float32)

    f1, f2, z1, z2 = frame(20000.0), frame(20000.0), frame(0), frame(0)
    central = flat_pair_point(f1, f2, z1, z2, **sampled(shape))
    whole = flat_pair_point(f1, f2, z1, z2, box=box_for(shape))
    assert central.gain == pytest.approx(gain, rel=0.01)
    assert whole.gain == pytest.approx(gain, rel=0.01)
    assert central.boxes_used == 256 and whole.boxes_used == 1024
    assert 1.5 < central.gain_error / whole.gain_error < 3.0


@pytest.fixture(scope="module")
def setting_night(tmp_path_factory):
    base = tmp_path_factory.mktemp("setting")
    manifest = simulate.write_camera_night(base / "raw", base / "truth", simulate.night_gain_as_setting())
    return base / "raw", manifest


def night_plan(raw, **camera):
    config = validated(
        {
            "raw_dir": str(raw),
            "output_dir": str(raw.parent / "out"),
            "cameras": [
                {
                    "name": "cmos",
                    "overscan": {"method": "none"},
                    "trim": "none",
                    "match": {"header": {"INSTRUME": "SimCMOS*"}},
                    **camera,
                }
            ],
        }
    )
    files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.fits"))
    records, cameras = take_inventory(raw, files, config)
    return make_plan(records, config, cameras), config


def test_the_plan_pairs_flats_with_darkflats_and_darks_by_exposure(setting_night):
    raw, manifest = setting_night
    plan, _ = night_plan(raw)
    ((name, noise),) = plan["noise"].items()
    assert name == noise_name(plan["masters"][next(iter(plan["masters"]))]["setup"])
    assert name == "cmos_1x1_128x160_g100"  # camera, binning, shape, gain setting
    assert noise["bias_pair"] == []  # no biases tonight
    flats = manifest["sets"]["flat_L"]["frames"]
    darkflats = manifest["sets"]["darkflat_2s"]["frames"]
    assert [p["flats"] for p in noise["flat_pairs"]] == [flats[i : i + 2] for i in range(0, 10, 2)]
    assert {tuple(p["zero"]) for p in noise["flat_pairs"]} == {tuple(darkflats[:2])}
    assert {p["zero_kind"] for p in noise["flat_pairs"]} == {"darkflat pair"}
    assert [(p["exptime"], p["darks"]) for p in noise["dark_pairs"]] == [
        (2.0, darkflats[:2]),
        (120.0, manifest["sets"]["dark_120s"]["frames"][:2]),
    ]
    # every master and light group names the setup's record
    assert {m["noise"] for m in plan["masters"].values()} == {name}
    assert {g["noise"] for g in plan["light_groups"].values()} == {name}


def test_measured_on_the_night_gain_setting_camera(setting_night, tmp_path):
    """GAIN = 100 is a setting: with the default profile (EGAIN, absent) the measured gain
    is used, within 3 % of the true 0.8 e-/ADU; the read noise comes from the dark pairs'
    intercept, within 5 % of the true 1.8 e-; a frame that cannot be read is reported,
    not fatal."""
    raw, manifest = setting_night
    plan, config = night_plan(raw)
    (noise,) = plan["noise"].values()
    record = measure_setup(noise, config["cameras"][0], raw)
    assert record["gain"] == pytest.approx(0.8, rel=0.03)
    assert record["gain_source"].startswith("measured: photon transfer, 5 flat pairs, darkflat pair")
    assert record["read_noise_e"] == pytest.approx(1.8, rel=0.05)
    assert "intercept" in record["read_noise_source"]
    assert record["header_cards"]["GAIN"]["value"] == 100
    assert record["problems"] == [] and record["flags"] == []
    json.dumps(record)  # the job writes it as JSON

    broken = tmp_path / "raw"
    for path in raw.rglob("*.fits"):
        (broken / path.relative_to(raw)).parent.mkdir(parents=True, exist_ok=True)
        (broken / path.relative_to(raw)).write_bytes(path.read_bytes())
    first = broken / noise["flat_pairs"][0]["flats"][0]
    first.write_bytes(first.read_bytes()[:4000])  # truncated
    record = measure_setup(noise, config["cameras"][0], broken)
    assert len(record["problems"]) == 1 and noise["flat_pairs"][0]["flats"][0] in record["problems"][0]
    assert record["measured"]["gain"]["method"].startswith("photon transfer, 4 flat pairs")
    assert record["gain"] == pytest.approx(0.8, rel=0.03)


def test_lamp_flats_are_kept_apart_by_object_or_file_name(tmp_path):
    """Two lamp-flat sets of one filter, told apart only by OBJECT and file name, make
    one master each with flat.group_by [object] or a group_pattern; one master without."""
    raw = tmp_path / "raw"
    simulate.write_camera_night(raw, tmp_path / "truth", simulate.night_lamp_flats())

    def flat_masters(**flat):
        config = validated(
            {
                "raw_dir": str(raw),
                "output_dir": str(tmp_path / "out"),
                "cameras": [{"name": "ccd", "flat": flat, "match": {"header": {"INSTRUME": "SimCam*"}}}],
            }
        )
        files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.fits"))
        records, cameras = take_inventory(raw, files, config)
        plan = make_plan(records, config, cameras)
        return {
            name: sorted(f["path"].rsplit("/", 1)[1][:11] for f in m["frames"])
            for name, m in plan["masters"].items()
            if m["type"] == "flat"
        }

    assert [len(v) for v in flat_masters().values()] == [16]
    by_object = flat_masters(group_by=["object"])
    assert sorted(by_object) == ["flat_ccd_1x1_Normal_R_flat_lamp_A", "flat_ccd_1x1_Normal_R_flat_lamp_B"]
    assert by_object["flat_ccd_1x1_Normal_R_flat_lamp_A"] == ["flat_lamp_A"] * 8
    by_name = flat_masters(group_pattern=r"lamp_(\w)_")
    assert sorted(by_name) == ["flat_ccd_1x1_Normal_R_A", "flat_ccd_1x1_Normal_R_B"]
    assert by_name["flat_ccd_1x1_Normal_R_B"] == ["flat_lamp_B"] * 8


def test_measured_noise_values_are_reproducible(setting_night):
    raw, _ = setting_night
    plan, config = night_plan(raw)
    (noise,) = plan["noise"].values()
    one = measure_setup(noise, config["cameras"][0], raw)
    two = measure_setup(noise, config["cameras"][0], raw, threads=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert np.isfinite(one["gain"])
