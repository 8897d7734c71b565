"""Camera profiles: frame-type decisions, keyword aliases, units, binning, safe names, matching."""

from __future__ import annotations

import re

import pytest
from astropy.io import fits

from ccdcal.camera import (
    CameraProfile,
    HeaderView,
    binning,
    path_matches,
    profile_for,
    profiles_from_config,
    safe_name,
)


def hv(primary=None, **cards):
    """HeaderView over a real astropy header built from keyword=value (dashes as '__')."""
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("__", "-")] = value
    return HeaderView(header, primary)


@pytest.fixture
def default_profile(camera_profile):
    return CameraProfile(camera_profile())


# ------------------------------------------------------------------------------ frame type


@pytest.mark.parametrize(
    "value,expected",
    [
        ("BIAS", "bias"),
        ("Bias Frame", "bias"),
        ("zero", "bias"),
        ("DARK", "dark"),
        ("Dark Frame", "dark"),
        ("DARKFLAT", "dark"),
        ("FLAT", "flat"),
        ("FLATFIELD", "flat"),
        ("Flat Field", "flat"),
        ("Flat Frame", "flat"),
        ("LIGHT", "light"),
        ("Light Frame", "light"),
        ("OBJECT", "light"),
        ("science", "light"),
        ("  light_frame ", "light"),
        ("flat-field", "flat"),
    ],
)
def test_imagetyp_variants(default_profile, value, expected):
    # the file name says something else: the keyword wins
    decision = default_profile.frame_type("night/zero_dark_flat.fits", hv(IMAGETYP=value))
    assert decision.frame_type == expected
    assert decision.source == f"IMAGETYP='{value.rstrip()}'"  # FITS drops trailing blanks


def kast_profile(camera_profile):
    return CameraProfile(
        camera_profile(
            name="kast",
            frame_type={"keywords": ["OBJECT"], "values": {"Bias": "bias", "Dome Flat": "flat"}, "default": "light"},
        )
    )


def test_type_from_object_with_config_values_ignores_obstype(camera_profile):
    kast = kast_profile(camera_profile)
    # Kast labels its biases OBSTYPE='DARK': the profile reads OBJECT only
    decision = kast.frame_type("b100.fits", hv(OBJECT="Bias", OBSTYPE="DARK", IMAGETYP="DARK"))
    assert decision.frame_type == "bias"
    assert decision.source == "OBJECT='Bias' (config values)"
    assert kast.frame_type("b101.fits", hv(OBJECT="dome  flat")).frame_type == "flat"
    target = kast.frame_type("b120.fits", hv(OBJECT="NGC 2403 / slit 2'"))
    assert target.frame_type == "light"
    assert target.source == "OBJECT='NGC 2403 / slit 2'' (config default)"
    # the default applies before file-name words
    assert kast.frame_type("dark_b121.fits", hv(OBJECT="SN 2024abc")).frame_type == "light"
    # no OBJECT at all: the default does not apply, file-name words are the last resort
    assert kast.frame_type("flat_7.fits", hv(OBSTYPE="DARK")).frame_type == "flat"
    undecided = kast.frame_type("b7.fits", hv(OBSTYPE="DARK"))
    assert undecided.frame_type is None and "OBJECT" in undecided.source


@pytest.mark.parametrize(
    "name,expected,word",
    [
        ("raw/Dark_300s_001.FITS", "dark", "dark"),
        ("BIAS-01.fit", "bias", "bias"),
        ("ZERO_3.fits", "bias", "zero"),
        ("darkflat_3s_001.fits", "dark", "dark"),  # checked in order: dark before flat
        ("SkyFlat_R_004.fits.fz", "flat", "flat"),
    ],
)
def test_file_name_words_as_last_resort(default_profile, name, expected, word):
    decision = default_profile.frame_type(name, hv(EXPTIME=1.0))
    assert decision.frame_type == expected
    assert decision.source == f"file name word '{word}'"


def test_file_name_words_only_in_the_name_and_can_be_disabled(camera_profile, default_profile):
    decision = default_profile.frame_type("flats/m31_001.fits", hv())  # folder word ignored
    assert decision.frame_type is None
    assert decision.source == "no IMAGETYP keyword and no bias/dark/flat word in the file name"
    off = CameraProfile(camera_profile(frame_type={"filename_words": False}))
    assert off.frame_type("dark_001.fits", hv()).frame_type is None


def test_unknown_value_undecidable_names_the_value(default_profile):
    decision = default_profile.frame_type("m31_001.fits", hv(IMAGETYP="Calibration"))
    assert decision.frame_type is None
    assert "IMAGETYP='Calibration'" in decision.source
    # an unknown value still lets the file name decide
    assert default_profile.frame_type("bias_01.fits", hv(IMAGETYP="Calibration")).frame_type == "bias"


def test_keyword_order_and_fallthrough(camera_profile):
    profile = CameraProfile(camera_profile(frame_type={"keywords": ["IMAGETYP", "OBSTYPE"]}))
    decision = profile.frame_type("x.fits", hv(IMAGETYP="mystery", OBSTYPE="Flat Field"))
    assert (decision.frame_type, decision.source) == ("flat", "OBSTYPE='Flat Field'")
    decision = profile.frame_type("x.fits", hv(IMAGETYP="Bias", OBSTYPE="Flat"))
    assert decision.frame_type == "bias"


def test_overrides_first(camera_profile):
    profile = CameraProfile(
        camera_profile(frame_type={"overrides": {"**/skyflats/*.fits": "flat", "bad_*.fits": "ignore"}})
    )
    # 'Light Frame' flats exist: the glob wins over the keyword
    decision = profile.frame_type("n1/skyflats/R_001.fits", hv(IMAGETYP="Light Frame"))
    assert decision.frame_type == "flat"
    assert decision.source == "override glob '**/skyflats/*.fits'"
    assert profile.frame_type("skyflats/R_001.fits", hv(IMAGETYP="Light Frame")).frame_type == "flat"
    assert profile.frame_type("bad_bias.fits", hv(IMAGETYP="BIAS")).frame_type == "ignore"
    # '*' does not cross folders
    assert profile.frame_type("sub/bad_bias.fits", hv(IMAGETYP="BIAS")).frame_type == "bias"


def test_path_globs():
    assert path_matches("bias1.fits", "**/bias*.fits")
    assert path_matches("a/b/BIAS1.FITS", "**/bias*.fits")  # case-insensitive
    assert not path_matches("a/bias1.fits", "bias*.fits")
    assert path_matches("a/b/c.fits", "a/**")
    assert not path_matches("a/b/c.fits", "a/*")
    assert path_matches("a/x[1].fits", "a/x[1].fits")  # brackets are literal
    assert not path_matches("a/x1.fits", "a/x[1].fits")


# ----------------------------------------------------------------------------- values


def test_exposure_aliases(default_profile):
    assert default_profile.exptime(hv(EXPOSURE=30.0)) == 30.0
    assert default_profile.exptime(hv(EXPTIME=10.0, EXPOSURE=30.0)) == 10.0  # order of aliases
    assert default_profile.exptime(HeaderView({"EXPOSURE_TIME": "12.5"})) == 12.5  # text value
    assert default_profile.exptime(hv(EXPTIME="n/a")) is None
    assert default_profile.exptime(hv()) is None


def test_temperatures_celsius_and_kelvin(camera_profile, default_profile):
    assert default_profile.temperature(hv(TEMPDET=192.8)) == pytest.approx(-80.35, abs=1e-9)
    assert default_profile.temperature(hv(CCD__TEMP=-10.2)) == pytest.approx(-10.2)
    assert default_profile.temperature(hv(CCD__TEMP=-10.0, TEMPDET=300.0)) == -10.0  # alias order
    assert default_profile.temperature(hv(SET__TEMP=-15.0), "set_temperature") == -15.0
    assert default_profile.temperature(hv()) is None
    kelvin = CameraProfile(camera_profile(temperature_unit="K"))
    assert kelvin.temperature(hv(CCDTEMP=263.15)) == pytest.approx(-10.0)
    assert kelvin.temperature(hv(CCDTEMP=50.0)) == pytest.approx(-223.15)
    celsius = CameraProfile(camera_profile(temperature_unit="C"))
    assert celsius.temperature(hv(CCDTEMP=-192.8)) == pytest.approx(-192.8)
    # read as C, 192.8 is hotter than any sensor is run (PHYSICAL_RANGES): unknown, not kelvin
    problems = []
    assert celsius.temperature(hv(CCDTEMP=192.8), problems=problems) is None
    assert problems == [
        "CCDTEMP 192.8 C is not a physical temperature (-273.15 to 100 C, both excluded): temperature unknown"
    ]


def test_settings_as_text(default_profile):
    assert default_profile.number_or_text(hv(GAIN=120.0), "gain_setting") == "120"
    assert default_profile.number_or_text(hv(GAIN=1.5), "gain_setting") == "1.5"
    assert default_profile.number_or_text(hv(GAIN="High "), "gain_setting") == "High"
    assert default_profile.number_or_text(hv(BLKLEVEL=30), "offset") == "30"
    assert default_profile.number_or_text(hv(), "offset") == ""
    assert default_profile.text(hv(FILTER1=" Ha 7nm "), "filter") == "Ha 7nm"


def test_value_or_keyword(camera_profile):
    profile = CameraProfile(camera_profile())
    assert profile.value_or_keyword(hv(EGAIN=1.6, GAIN=100), "gain") == (1.6, "header EGAIN")
    assert profile.value_or_keyword(hv(GAIN=100), "gain") == (None, "unknown")
    fixed = CameraProfile(camera_profile(gain={"value": 2.0}))
    assert fixed.value_or_keyword(hv(EGAIN=1.6), "gain") == (2.0, "config")


def header_of_card_images(*images):
    """An astropy header read from raw 80-character card images, as from a file: a value
    astropy cannot parse (EXPTIME = 1.0.0) stays in it and raises when the key is read."""
    return fits.Header.fromstring("".join(i.ljust(80) for i in images) + "END".ljust(80))


def test_headerview_treats_an_unparsable_card_as_absent():
    broken = header_of_card_images("EXPTIME = 1.0.0 / seconds", "OBJECT  = 'M31'")
    with pytest.raises(fits.verify.VerifyError):
        broken["EXPTIME"]  # what astropy does: the reason for this test
    primary = fits.Header()
    primary["EXPTIME"] = 5.0
    assert HeaderView(broken, primary).get("EXPTIME") == 5.0  # the primary's readable value
    assert HeaderView(broken).get("EXPTIME") is None and "EXPTIME" not in HeaderView(broken)
    assert HeaderView(broken).get("OBJECT") == "M31"
    assert HeaderView(broken).unparsable(["EXPOSURE", "EXPTIME"]) == ("EXPTIME", "1.0.0")
    assert HeaderView(broken).unparsable(["OBJECT"]) == (None, None)


@pytest.mark.parametrize(
    "header,seconds,problem",
    [
        (hv(EXPTIME=0.0), 0.0, None),
        (hv(EXPTIME=100000), 100000.0, None),  # the longest exposure accepted
        (hv(EXPTIME="abc"), None, "EXPTIME 'abc' is not a number"),
        (hv(EXPOSURE=1e300), None, "EXPOSURE 1e+300 s is not a physical exposure (0 to 100000 s)"),
        (hv(EXPTIME=-1.5), None, "EXPTIME -1.5 s is not a physical exposure (0 to 100000 s)"),
        (hv(EXPTIME=100000.5), None, "EXPTIME 100000.5 s is not a physical exposure (0 to 100000 s)"),
        (HeaderView(header_of_card_images("EXPTIME = 1.0.0")), None, "EXPTIME '1.0.0' is not a number"),
        # an unreadable first alias does not hide a readable second one
        (HeaderView(header_of_card_images("EXPTIME = 1.0.0", "EXPOSURE=                 30.0")), 30.0, None),
    ],
)
def test_exposure_must_be_a_physical_number(default_profile, header, seconds, problem):
    problems = []
    assert default_profile.exptime(header, problems) == seconds
    assert problems == ([problem] if problem else [])


def test_temperature_not_a_number_or_not_physical_is_unknown_with_a_warning(camera_profile, default_profile):
    problems = []
    assert default_profile.temperature(hv(CCD__TEMP="cold"), problems=problems) is None
    assert default_profile.temperature(hv(CCD__TEMP=-273.15), problems=problems) is None  # 0 K
    assert default_profile.temperature(hv(SET__TEMP="x"), "set_temperature", problems) is None
    assert default_profile.temperature(hv(CCD__TEMP=-272.0), problems=problems) == -272.0
    assert default_profile.temperature(hv(CCD__TEMP=99.0), problems=problems) == 99.0
    assert problems[0] == "CCD-TEMP 'cold' is not a number: temperature unknown"
    assert problems[1].startswith("CCD-TEMP -273.15 C is not a physical temperature (-273.15 to 100 C")
    assert problems[2] == "SET-TEMP 'x' is not a number: set temperature unknown"
    assert len(problems) == 3
    # 'auto' reads 5000 as kelvin: 4726.85 C is no sensor temperature either; the message
    # shows both numbers
    problems = []
    assert default_profile.temperature(hv(TEMPDET=5000.0), problems=problems) is None
    assert "TEMPDET 5000 K (4726.85 C) is not a physical temperature" in problems[0]
    assert default_profile.temperature(HeaderView({"CCD-TEMP": float("inf")})) is None  # no list given


@pytest.mark.parametrize(
    "what,cards,expected",
    [
        (
            "gain",
            {"EGAIN": 0},
            (None, "header EGAIN 0 e-/ADU is not a physical gain (0 to 10000 e-/ADU, both excluded): gain unknown"),
        ),
        ("gain", {"EGAIN": "abc"}, (None, "header EGAIN 'abc' is not a number: gain unknown")),
        (
            "gain",
            {"EGAIN": 1e4},
            (None, "header EGAIN 10000 e-/ADU is not a physical gain (0 to 10000 e-/ADU, both excluded): gain unknown"),
        ),
        ("gain", {"EGAIN": 0.25}, (0.25, "header EGAIN")),
        (
            "read_noise",
            {"RDNOISE": -0.5},
            (
                None,
                "header RDNOISE -0.5 e- is not a physical read noise "
                "(0 to 100000 e-, 100000 excluded): read noise unknown",
            ),
        ),
        ("read_noise", {"RDNOISE": 0}, (0.0, "header RDNOISE")),
        (
            "saturation",
            {"SATURATE": 0},
            (
                None,
                "header SATURATE 0 ADU is not a physical saturation "
                "(0 to 4294967296 ADU, both excluded): saturation unknown",
            ),
        ),
        (
            "saturation",
            {"SATURATE": 2.0**32},
            (
                None,
                "header SATURATE 4294967296 ADU is not a physical "
                "saturation (0 to 4294967296 ADU, both excluded): saturation unknown",
            ),
        ),
        ("saturation", {"SATURATE": 65535}, (65535.0, "header SATURATE")),
    ],
)
def test_value_or_keyword_refuses_header_values_that_are_not_physical(camera_profile, what, cards, expected):
    """A gain of 0 used to reach the calibration and divide by zero."""
    assert CameraProfile(camera_profile()).value_or_keyword(hv(**cards), what) == expected


def test_schema_refuses_configured_values_that_are_not_physical_with_the_same_ranges(camera_profile):
    from jsonschema import ValidationError

    from ccdcal.camera import PHYSICAL_RANGES
    from ccdcal.config import schema, validated

    def camera(**values):
        return validated({"raw_dir": ".", "output_dir": ".", "cameras": [{"name": "c", **values}]})

    for what, bad in [
        ("gain", 0),
        ("gain", -1.2),
        ("gain", 1e4),
        ("read_noise", -0.1),
        ("saturation", 0),
        ("saturation", 2**32),
    ]:
        with pytest.raises(ValidationError):
            camera(**{what: {"value": bad}})
    assert camera(read_noise={"value": 0})["cameras"][0]["read_noise"]["value"] == 0
    assert camera(gain={"value": 1.2})["cameras"][0]["gain"]["value"] == 1.2
    # the schema's bounds are the table's (the two places the ranges are written)
    cameras = schema()["$defs"]["camera"]["properties"]
    for what in ("gain", "read_noise", "saturation"):
        bounds = cameras[what]["properties"]["value"]
        limits = PHYSICAL_RANGES[what]
        low_key = "exclusiveMinimum" if limits.low_open else "minimum"
        high_key = "exclusiveMaximum" if limits.high_open else "maximum"
        assert (bounds[low_key], bounds[high_key]) == (limits.low, limits.high), what


def test_the_schema_names_the_frame_types_and_calibration_steps_of_the_code():
    """The frame types a configuration may name (frame_type values, overrides, default; and
    missing_calibration.steps) are camera.FRAME_TYPES and MASTER_TYPES, which the
    built-in synonyms give."""
    from ccdcal.camera import FILENAME_WORDS, FRAME_TYPES, MASTER_TYPES, TYPE_SYNONYMS
    from ccdcal.config import schema

    frame_type = schema()["$defs"]["camera"]["properties"]["frame_type"]["properties"]
    types = [*FRAME_TYPES, "ignore"]
    assert frame_type["values"]["additionalProperties"]["enum"] == types
    assert frame_type["overrides"]["additionalProperties"]["enum"] == types
    assert frame_type["default"]["enum"] == [*types, None]
    steps = schema()["properties"]["missing_calibration"]["properties"]["steps"]
    assert steps["items"]["enum"] == steps["default"] == list(MASTER_TYPES)
    assert set(TYPE_SYNONYMS.values()) == set(FRAME_TYPES)
    assert {kind for _, kind in FILENAME_WORDS} == set(MASTER_TYPES)


@pytest.mark.parametrize(
    "cards,expected",
    [
        ({"XBINNING": 2, "YBINNING": 2}, "2x2"),
        ({"XBINNING": 2, "YBINNING": 1}, "2x1"),
        ({"XBINNING": 3}, "3x3"),
        ({"CCDSUM": "2 1"}, "2x1"),
        ({"CCDSUM": " 1  1 "}, "1x1"),
        ({"BINNING": 2}, "2x2"),
        ({}, "1x1"),
    ],
)
def test_binning(cards, expected):
    assert binning(hv(**cards)) == expected


@pytest.mark.parametrize(
    "cards,named",
    [
        ({"XBINNING": 1e300, "YBINNING": 1}, "XBINNING 1e+300"),  # a 301-digit master name before
        ({"XBINNING": 0}, "XBINNING 0"),
        ({"XBINNING": 2, "YBINNING": -1}, "YBINNING -1"),
        ({"XBINNING": 1.5}, "XBINNING 1.5"),
        ({"XBINNING": "abc"}, "XBINNING 'abc'"),  # silently 1x1 before
        ({"CCDSUM": "2 0"}, "CCDSUM '0'"),
    ],
)
def test_a_broken_binning_is_refused_naming_the_keyword(cards, named):
    with pytest.raises(ValueError, match=re.escape(named) + r".* is not a binning factor"):
        binning(hv(**cards))


@pytest.mark.parametrize(
    "value,expected",
    [
        ("M 31", "M_31"),
        ("NGC 224/M31", "NGC_224_M31"),
        ('O\'Neil "test"', "O_Neil_test"),
        ("../../etc/passwd", "etc_passwd"),
        ("Ha 7nm", "Ha_7nm"),
        ("r'", "r"),
        ("  ", "none"),
        ("", "none"),
        (-10.5, "-10.5"),
    ],
)
def test_safe_name(value, expected):
    name = safe_name(value)
    assert name == expected
    assert re.fullmatch(r"[A-Za-z0-9.+\-_]+", name) and "/" not in name and ".." not in name


def test_safe_name_fallback():
    assert safe_name("///", fallback="camera") == "camera"


# --------------------------------------------------------------------------- profile matching


def test_profile_matching_by_header_and_path_globs(make_config):
    cfg = make_config(
        cameras=[
            {"name": "kast", "match": {"header": {"INSTRUME": "Kast*"}}},
            {"name": "qhy", "match": {"paths": ["qhy/**"]}},
            {"name": "c14", "match": {"header": {"TELESCOP": "C14"}, "paths": ["c14/*.fits"]}},
        ],
        default_camera={"frame_type": {"keywords": ["IMAGETYP", "OBSTYPE"]}},
    )
    profiles = profiles_from_config(cfg)
    assert [p.name for p in profiles] == ["kast", "qhy", "c14"]

    def which(path, **cards):
        return profile_for(path, hv(**cards), profiles, cfg["default_camera"]).name

    assert which("a/b.fits", INSTRUME="KAST blue") == "kast"  # case-insensitive glob
    assert which("qhy/n1/a.fits", INSTRUME="KAST blue") == "kast"  # first match wins
    assert which("qhy/n1/a.fits") == "qhy"
    assert which("c14/a.fits", TELESCOP="c14") == "c14"
    assert which("c14/a.fits") == "camera"  # header does not match
    assert which("c14/sub/a.fits", TELESCOP="C14") == "camera"  # '*' does not cross folders
    assert which("x.fits", INSTRUME="ZWO ASI2600MM Pro") == "ZWO_ASI2600MM_Pro"
    default = profile_for("x.fits", hv(), profiles, cfg["default_camera"])
    assert default.config["frame_type"]["keywords"] == ["IMAGETYP", "OBSTYPE"]


def test_named_default_camera(make_config):
    cfg = make_config(default_camera={"name": "myscope"})
    assert profile_for("x.fits", hv(INSTRUME="Other"), [], cfg["default_camera"]).name == "myscope"


# ---------------------------------------------------------------------------------- HeaderView


def test_headerview_primary_fallback():
    primary = fits.Header()
    primary["IMAGETYP"] = "Bias Frame"
    primary["EXPTIME"] = 0.0
    primary["FILTER"] = "R"
    primary["OBJECT"] = "from primary"
    ext = fits.Header()
    ext["BIASSEC"] = "[1025:1056,1:1024]"
    ext["FILTER"] = "V"  # the extension wins
    ext["OBJECT"] = "   "  # blank: fall back
    view = HeaderView(ext, primary)
    assert view.get("IMAGETYP") == "Bias Frame"
    assert view.get("EXPTIME") == 0.0  # a zero is a value, not a missing one
    assert view.get("BIASSEC") == "[1025:1056,1:1024]"
    assert view.get("FILTER") == "V"
    assert view.get("OBJECT") == "from primary"
    assert view.get("MISSING", "dflt") == "dflt"
    assert "IMAGETYP" in view and "MISSING" not in view
    assert view.first(["FILTNAME", "FILTER"]) == ("FILTER", "V")
    assert view.first(["NOPE"]) == (None, None)
    assert HeaderView(ext, None).get("IMAGETYP") is None
