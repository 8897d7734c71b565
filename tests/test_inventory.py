"""Inventory of a folder of real (small) FITS files written with astropy, and RawFrame reads."""

from __future__ import annotations

import gc
import gzip
import io
import re
import stat
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdcal.frames import FrameError, RawFrame
from ccdcal.inventory import (
    COLUMNS,
    FrameRecord,
    list_raw_files,
    records_from_csv,
    records_to_csv,
    take_inventory,
)

NY, NX = 30, 48

# the truncated file makes astropy warn when it is opened; that is the point of the file
pytestmark = pytest.mark.filterwarnings("ignore:File may have been truncated")


def image(seed):
    """uint16 data spanning the whole range: wrong BZERO handling would show."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 65536, (NY, NX), dtype=np.uint16)
    data[0, :4] = [0, 1, 32768, 65535]
    return data


def header(**cards):
    h = fits.Header()
    for key, value in cards.items():
        h[key.replace("__", "-")] = value
    return h


@pytest.fixture
def night(tmp_path):
    """A raw folder with one file of every kind; returns (raw_dir, {name: data})."""
    raw = tmp_path / "raw"
    raw.mkdir()
    data = {}

    data["bias_001.fits"] = image(1)
    fits.PrimaryHDU(
        data["bias_001.fits"],
        header=header(
            IMAGETYP="Bias Frame",
            EXPTIME=0.0,
            CCD__TEMP=-10.2,
            XBINNING=1,
            YBINNING=1,
            INSTRUME="ZWO ASI294MM Pro",
            GAIN=120,
            OFFSET=30,
            DATE__OBS="2024-03-01T20:15:30.5",
            OBJECT='NGC 1, "core"',
        ),
    ).writeto(raw / "bias_001.fits")

    # multi-extension: type and exposure only in the primary, image and geometry in extension 1
    data["mef.fits"] = image(2)
    primary = fits.PrimaryHDU(header=header(IMAGETYP="FLAT", EXPTIME=2.5, FILTER="R", INSTRUME="Kast"))
    ext = fits.ImageHDU(data["mef.fits"], header=header(BIASSEC="[41:48,1:30]", TRIMSEC="[1:40,1:30]", CCDSUM="2 1"))
    fits.HDUList([primary, ext]).writeto(raw / "mef.fits")

    data["dark_60s.fits.gz"] = image(3)
    fits.PrimaryHDU(
        data["dark_60s.fits.gz"], header=header(IMAGETYP="Dark Frame", EXPTIME=60.0, TEMPDET=263.15)
    ).writeto(raw / "dark_60s.fits.gz")

    data["light.fits.fz"] = image(4)
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.CompImageHDU(
                data["light.fits.fz"], header=header(IMAGETYP="Light Frame", EXPOSURE=120.0, FILTER="Ha 7nm")
            ),
        ]
    ).writeto(raw / "light.fits.fz")

    full = (raw / "bias_001.fits").read_bytes()
    (raw / "truncated.fits").write_bytes(full[: len(full) - 1500])
    (raw / "notes.txt").write_text("observing log\n")
    (raw / "fake.fits").write_text("not FITS at all " * 300)

    fits.PrimaryHDU(np.zeros((NY, NX), np.float32), header=header(EXPTIME=30.0)).writeto(raw / "m31_001.fits")
    data["sub dir/Flat R 001.fits"] = image(5)
    (raw / "sub dir").mkdir()
    fits.PrimaryHDU(data["sub dir/Flat R 001.fits"], header=header(EXPTIME=3.0)).writeto(
        raw / "sub dir" / "Flat R 001.fits"
    )
    fits.PrimaryHDU(image(6), header=header(IMAGETYP="LIGHT")).writeto(raw / "noexp.fits")
    fits.PrimaryHDU(image(7), header=header(IMAGETYP="BIAS")).writeto(raw / "bias_noexp.fits")
    fits.PrimaryHDU(image(8), header=header(IMAGETYP="LIGHT", EXPTIME=5.0, BIASSEC="[41:60,1:30]")).writeto(
        raw / "badgeom.fits"
    )
    fits.PrimaryHDU(header=header(IMAGETYP="BIAS")).writeto(raw / "empty.fits")

    # never listed: hidden files and folders, and an output folder inside raw_dir
    fits.PrimaryHDU(image(9), header=header(IMAGETYP="BIAS")).writeto(raw / ".hidden.fits")
    (raw / ".cache").mkdir()
    fits.PrimaryHDU(image(9), header=header(IMAGETYP="BIAS")).writeto(raw / ".cache" / "b.fits")
    (raw / "out" / "masters").mkdir(parents=True)
    fits.PrimaryHDU(image(9), header=header(IMAGETYP="BIAS")).writeto(raw / "out" / "masters" / "b.fits")
    return raw, data


EXPECTED_FILES = [
    "badgeom.fits",
    "bias_001.fits",
    "bias_noexp.fits",
    "dark_60s.fits.gz",
    "empty.fits",
    "fake.fits",
    "light.fits.fz",
    "m31_001.fits",
    "mef.fits",
    "noexp.fits",
    "notes.txt",
    "sub dir/Flat R 001.fits",
    "truncated.fits",
]


def test_list_raw_files_skips_hidden_and_excluded(night):
    raw, _ = night
    assert list_raw_files(raw, exclude=[raw / "out"]) == EXPECTED_FILES
    with_out = list_raw_files(raw)
    assert "out/masters/b.fits" in with_out and ".hidden.fits" not in with_out
    assert not any(p.startswith(".cache") for p in with_out)


def snapshot(raw: Path):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(raw.rglob("*")) if p.is_file()}


def test_inventory_rows(night, make_config):
    raw, _ = night
    before = snapshot(raw)
    for p in before:  # read-only: any attempt to write would fail the file
        p.chmod(stat.S_IRUSR | stat.S_IRGRP)
    config = make_config(raw_dir=str(raw), output_dir=str(raw / "out"))
    records, cameras = take_inventory(raw, list_raw_files(raw, exclude=[raw / "out"]), config)
    assert snapshot(raw) == before
    rows = {r.path: r for r in records}
    assert [r.path for r in records] == EXPECTED_FILES  # sorted, one row per file

    r = rows["bias_001.fits"]
    assert (r.status, r.reason, r.frame_type, r.type_source) == ("ok", "", "bias", "IMAGETYP='Bias Frame'")
    assert r.camera == "ZWO_ASI294MM_Pro" and r.instrument == "ZWO ASI294MM Pro"
    assert r.exptime == 0.0 and r.temperature_c == pytest.approx(-10.2)
    assert (r.shape, r.raw_shape, r.hdu, r.bitpix, r.binning) == ("30x48", "30x48", 0, 16, "1x1")
    assert (r.gain_setting, r.offset) == ("120", "30")
    assert r.date_obs == "2024-03-01T20:15:30.500000"  # written .5: normalized to microseconds
    assert r.time_s == pytest.approx((datetime(2024, 3, 1, 20, 15, 30, 500000) - datetime(2000, 1, 1)).total_seconds())

    r = rows["mef.fits"]
    assert (r.status, r.frame_type, r.type_source, r.camera) == ("ok", "flat", "IMAGETYP='FLAT'", "Kast")
    assert (r.exptime, r.filter, r.hdu, r.raw_shape, r.shape, r.binning) == (2.5, "R", 1, "30x48", "30x40", "2x1")

    r = rows["dark_60s.fits.gz"]
    assert (r.status, r.frame_type, r.exptime, r.shape) == ("ok", "dark", 60.0, "30x48")
    assert r.camera == "camera"  # no INSTRUME
    assert r.temperature_c == pytest.approx(-10.0)  # 263.15 K

    r = rows["light.fits.fz"]
    assert (r.status, r.frame_type, r.type_source) == ("ok", "light", "IMAGETYP='Light Frame'")
    assert (r.exptime, r.filter, r.hdu, r.shape, r.bitpix) == (120.0, "Ha 7nm", 1, "30x48", 16)

    r = rows["sub dir/Flat R 001.fits"]
    assert (r.status, r.frame_type, r.type_source) == ("ok", "flat", "file name word 'flat'")
    assert r.exptime == 3.0

    r = rows["bias_noexp.fits"]
    assert (r.status, r.exptime) == ("ok", 0.0)  # a bias without EXPTIME is a 0 s frame

    expected_excluded = {
        "truncated.fits": "truncated FITS file",
        "notes.txt": "not a FITS file",
        "fake.fits": "not a readable FITS file",
        "m31_001.fits": "frame type undecided: no IMAGETYP keyword and no bias/dark/flat word",
        "noexp.fits": "no exposure time (EXPTIME/EXPOSURE/EXPOSURE_TIME)",
        "badgeom.fits": "geometry: ",
        "empty.fits": "no 2-D image",
    }
    for path, reason in expected_excluded.items():
        row = rows[path]
        assert row.status == "excluded" and not row.ok, path
        assert reason in row.reason, (path, row.reason)
        assert row.shape == "", path
    assert "[41:60,1:30]" in rows["badgeom.fits"].reason
    assert rows["m31_001.fits"].exptime == 30.0  # described even when excluded

    assert set(cameras) == {"ZWO_ASI294MM_Pro", "Kast", "camera"}
    assert cameras["Kast"]["name"] == "Kast"
    assert cameras["camera"]["overscan"]["method"] == "median"  # validated defaults carried


def test_csv_round_trip(night, make_config, tmp_path):
    raw, _ = night
    config = make_config(raw_dir=str(raw), output_dir=str(tmp_path / "out"))
    records, _ = take_inventory(raw, list_raw_files(raw), config)
    text = records_to_csv(records)
    assert text.splitlines()[0].split(",")[:3] == ["path", "status", "reason"]
    path = tmp_path / "inventory.csv"
    path.write_text(text, encoding="utf-8")
    back = records_from_csv(path)
    assert back == records
    bias = next(r for r in back if r.path == "bias_001.fits")
    assert bias.object == 'NGC 1, "core"' and isinstance(bias.hdu, int)
    assert isinstance(bias.exptime, float) and bias.set_temperature_c is None


def test_csv_round_trip_of_handmade_values(tmp_path):
    records = [
        FrameRecord(
            path="a b/c,d.fits",
            status="ok",
            frame_type="light",
            exptime=0.1 + 0.2,
            temperature_c=-10.123,
            hdu=0,
            bitpix=-32,
            object="line1\nline2",
            filter="r'",
        ),
        FrameRecord(path="x.fits", reason='bad "thing"'),
    ]
    path = tmp_path / "inv.csv"
    path.write_text(records_to_csv(records), encoding="utf-8")
    assert records_from_csv(path) == records


@pytest.mark.parametrize("name", ["bias_001.fits", "dark_60s.fits.gz", "light.fits.fz", "mef.fits"])
def test_rawframe_read_float32_with_bzero(night, name):
    raw, data = night
    truth = data[name].astype(np.float32)
    with RawFrame(raw / name) as frame:
        assert frame.shape == (NY, NX)
        assert frame.integer_max == 65535.0
        rows = frame.read(slice(3, 11))
        assert rows.dtype == np.float32 and rows.shape == (8, NX)
        np.testing.assert_array_equal(rows, truth[3:11])
        whole = frame.read()
        np.testing.assert_array_equal(whole, truth)
        assert whole[0, :4].tolist() == [0.0, 1.0, 32768.0, 65535.0]
        rows[:] = -1  # a new array: the next read is unaffected
        np.testing.assert_array_equal(frame.read(slice(3, 11)), truth[3:11])


@pytest.mark.parametrize("name", ["bias_001.fits", "mef.fits", "dark_60s.fits.gz"])
def test_rawframe_digest_from_the_read_of_the_whole_image(night, name):
    """digest_on_read: a whole-image read hashes the file it read (the light's RAWSUM),
    the same digest as reading the file again; a partial read does not, and digest()
    then reads the file."""
    from ccdcal.file_cache import file_digest

    raw, data = night
    expected = file_digest(raw / name)
    with RawFrame(raw / name, digest_on_read=True) as frame:
        frame.read(slice(0, 4))
        assert frame._digest is None and frame.digest() == expected
        np.testing.assert_array_equal(frame.read(), data[name].astype(np.float32))
        assert frame.digest() == expected
        assert (frame._digest is not None) == (not name.endswith(".gz"))  # .gz: decompressed by astropy
        assert frame.digest(64) == file_digest(raw / name, length=64)
    with RawFrame(raw / name) as frame:  # off by default (master combines read blocks)
        frame.read()
        assert frame._digest is None and frame.digest() == expected


def test_rawframe_whole_reads_share_one_buffer_per_thread(night):
    """Whole-file reads go through a buffer each thread reuses: files of different sizes
    read one after another, and in two threads at once, each give their own data and
    digest; a truncated file still says so."""
    from concurrent.futures import ThreadPoolExecutor

    from ccdcal.file_cache import file_digest

    raw, data = night
    names = ["mef.fits", "bias_001.fits", "mef.fits", "bias_001.fits"]  # larger, smaller, ...

    def read(name):
        with RawFrame(raw / name, digest_on_read=True) as frame:
            return frame.read(), frame.digest()

    for results in ([read(n) for n in names], list(ThreadPoolExecutor(2).map(read, names * 3))):
        for name, (image, digest) in zip(names * 3, results):
            np.testing.assert_array_equal(image, data[name].astype(np.float32))
            assert digest == file_digest(raw / name)
    with pytest.raises(FrameError, match="truncated"):
        with RawFrame(raw / "truncated.fits", label="truncated.fits", digest_on_read=True) as frame:
            frame.read()


@pytest.mark.parametrize("name", ["bias_001.fits", "light.fits.fz"])
def test_rawframe_reads_into_a_given_array(night, name):
    """read(out=) fills the caller's array (a light job reuses one per thread) and says
    what it needs when the array does not fit."""
    raw, data = night
    out = np.full((NY, NX), -1.0, np.float32)
    with RawFrame(raw / name) as frame:
        assert frame.read(out=out) is out
        np.testing.assert_array_equal(out, data[name].astype(np.float32))
        rows = np.empty((4, NX), np.float32)
        assert frame.read(slice(2, 6), out=rows) is rows
        np.testing.assert_array_equal(rows, data[name][2:6].astype(np.float32))
        with pytest.raises(FrameError, match="float32 array of shape"):
            frame.read(out=np.empty((NY, NX), np.float64))


def test_rawframe_reads_do_not_modify_files(night):
    raw, _ = night
    before = snapshot(raw)
    for name in ["bias_001.fits", "dark_60s.fits.gz", "light.fits.fz", "mef.fits"]:
        with RawFrame(raw / name) as frame:
            frame.read(slice(0, 5))
            frame.check_complete()
    assert snapshot(raw) == before


def test_rawframe_errors_name_the_file(night):
    raw, _ = night
    with pytest.raises(FrameError, match="truncated.fits: truncated FITS file"):
        with RawFrame(raw / "truncated.fits", label="truncated.fits") as frame:
            frame.check_complete()
    with pytest.raises(FrameError, match="fake.fits: not a readable FITS file"):
        RawFrame(raw / "fake.fits", label="fake.fits")
    with pytest.raises(FrameError, match="empty.fits: no 2-D image"):
        RawFrame(raw / "empty.fits", label="empty.fits")


def test_files_are_closed_even_when_unusable(night, make_config):
    """A file that opens but has no image (or is truncated, or not FITS) must not leak its handle."""
    raw, _ = night
    config = make_config(raw_dir=str(raw), output_dir="out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        take_inventory(raw, ["empty.fits", "truncated.fits", "fake.fits", "bias_001.fits"], config)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


# ------------------------------------------------------------------------- hostile headers


def write_frame(path: Path, cards: dict, raw_cards: dict | None = None, data=None, gz=False):
    """A small uint16 frame with header ``cards``; each ``raw_cards`` KEY -> text is then
    written into the file's bytes as the card image 'KEY     = text' (80 bytes, any byte
    allowed), replacing the card KEY that ``cards`` wrote (astropy would refuse these)."""
    data = image(11) if data is None else data
    stream = io.BytesIO()
    fits.PrimaryHDU(data, header=header(**cards)).writeto(stream)
    raw = stream.getvalue()
    for key, text in (raw_cards or {}).items():
        card = f"{key:<8}= {text}".ljust(80).encode("latin-1")
        assert len(card) == 80
        start = raw.index(f"{key:<8}=".encode())
        raw = raw[:start] + card + raw[start + 80 :]
    path.write_bytes(gzip.compress(raw) if gz else raw)


def inventory_of(raw: Path, make_config, **config):
    records, _ = take_inventory(raw, list_raw_files(raw), make_config(raw_dir=str(raw), output_dir="out", **config))
    return {r.path: r for r in records}


def control_character_night(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    common = dict(IMAGETYP="LIGHT", EXPTIME=30.0, OBJECT="M31", FOO=1.5)
    write_frame(raw / "tab.fits", common, {"OBJECT": "'M31\tfield\x01A'"})
    # the card still unparsable once cleaned ('1. 5' is no value) is dropped
    write_frame(raw / "newline.fits", common, {"OBJECT": "'NGC\n7000'", "FOO": "1.\n5"})
    write_frame(raw / "clean.fits", common)
    return raw


def test_control_characters_in_header_values_are_repaired(tmp_path):
    """A tab, newline or control byte in a card made astropy raise VerifyError when the
    key was read: it escaped the inventory and nothing ran."""
    raw = control_character_night(tmp_path)
    with RawFrame(raw / "newline.fits") as frame:
        assert frame.header_problems == ["OBJECT: control characters replaced", "FOO: unparsable card dropped"]
        assert frame.header.get("OBJECT") == "NGC 7000" and "FOO" not in frame.header
        assert frame.header.get("EXPTIME") == 30.0  # the other cards are untouched
        np.testing.assert_array_equal(frame.read(), image(11).astype(np.float32))
    with RawFrame(raw / "tab.fits") as frame:
        assert frame.header.get("OBJECT") == "M31 field?A"  # white space -> ' ', other bytes -> '?'
    with RawFrame(raw / "clean.fits") as frame:
        assert frame.header_problems == [] and frame.header.get("FOO") == 1.5


def test_repaired_header_cards_are_listed_in_the_inventory(tmp_path, make_config):
    rows = inventory_of(control_character_night(tmp_path), make_config)
    for name in ("tab.fits", "newline.fits"):
        assert (rows[name].status, rows[name].frame_type, rows[name].exptime) == ("ok", "light", 30.0)
    assert rows["tab.fits"].object == "M31 field?A"
    assert rows["tab.fits"].warnings == "OBJECT: control characters replaced"
    assert rows["newline.fits"].warnings == "OBJECT: control characters replaced; FOO: unparsable card dropped"
    assert rows["clean.fits"].warnings == ""


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")  # astropy on EXPTIME = 1.0.0
def test_exposure_that_is_not_a_number_or_not_physical_excludes_with_its_reason(tmp_path, make_config):
    """EXPTIME = 1e300 used to scale a dark by 3e297 (an all -inf frame marked OK), and
    EXPTIME = 'abc' was reported as missing."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_frame(raw / "text.fits", dict(IMAGETYP="DARK", EXPTIME="abc"))
    write_frame(raw / "huge.fits", dict(IMAGETYP="DARK", EXPTIME=1e300))
    write_frame(raw / "negative.fits", dict(IMAGETYP="LIGHT", EXPTIME=-2.0))
    write_frame(raw / "unparsable.fits", dict(IMAGETYP="LIGHT", EXPTIME=1.0), {"EXPTIME": "1.0.0"})
    write_frame(raw / "missing.fits", dict(IMAGETYP="LIGHT"))
    write_frame(raw / "bias.fits", dict(IMAGETYP="BIAS"))
    write_frame(raw / "long.fits", dict(IMAGETYP="DARK", EXPTIME=3600.0))
    rows = inventory_of(raw, make_config)
    reasons = {path: row.reason for path, row in rows.items() if not row.ok}
    assert reasons == {
        "text.fits": "EXPTIME 'abc' is not a number",
        "huge.fits": "EXPTIME 1e+300 s is not a physical exposure (0 to 100000 s)",
        "negative.fits": "EXPTIME -2 s is not a physical exposure (0 to 100000 s)",
        "unparsable.fits": "EXPTIME '1.0.0' is not a number",
        "missing.fits": "no exposure time (EXPTIME/EXPOSURE/EXPOSURE_TIME)",
    }
    assert all(rows[p].exptime is None for p in reasons)
    assert (rows["bias.fits"].status, rows["bias.fits"].exptime) == ("ok", 0.0)
    assert (rows["long.fits"].status, rows["long.fits"].exptime) == ("ok", 3600.0)


def test_temperature_and_calibration_values_that_are_not_physical_are_warnings(tmp_path, make_config):
    """Not a reason to exclude the frame: its temperature becomes unknown and the header's
    gain/read noise/saturation are not used (a gain of 0 divided by zero downstream)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_frame(
        raw / "a.fits", dict(IMAGETYP="DARK", EXPTIME=60.0, CCD__TEMP="cold", SET__TEMP=-500.0, EGAIN=0.0, RDNOISE=3.5)
    )
    write_frame(raw / "b.fits", dict(IMAGETYP="DARK", EXPTIME=60.0, CCD__TEMP=-10.0, EGAIN=1.4))
    rows = inventory_of(raw, make_config)
    a, b = rows["a.fits"], rows["b.fits"]
    assert (a.status, a.temperature_c, a.set_temperature_c) == ("ok", None, None)
    warnings_a = a.warnings.split("; ")
    assert warnings_a[0] == "CCD-TEMP 'cold' is not a number: temperature unknown"
    assert warnings_a[1].startswith("SET-TEMP -500 C is not a physical temperature")
    assert warnings_a[1].endswith(": set temperature unknown")
    assert warnings_a[2].startswith("header EGAIN 0 e-/ADU is not a physical gain")
    assert warnings_a[2].endswith(": gain unknown")
    assert len(warnings_a) == 3  # RDNOISE 3.5 is fine
    assert (b.status, b.temperature_c, b.warnings) == ("ok", -10.0, "")


def seconds_since_2000(moment: datetime) -> float:
    return (moment - datetime(2000, 1, 1)).total_seconds()


def test_dates_in_every_fits_form_give_one_normalized_text(camera_profile):
    """Master and library folder names are built from date_obs: a space or '/' in them broke
    the workflow. Expected moments come from datetime and astropy.time, not from parse_date."""
    from astropy.time import Time

    from ccdcal.camera import CameraProfile, HeaderView
    from ccdcal.inventory import parse_date

    profile = CameraProfile(camera_profile())
    six = datetime(2026, 11, 21, 6, 0, 0)
    mjd = Time("2026-11-21T06:00:00", scale="utc").mjd  # 61365.25
    cases = [  # header cards, expected moment, whether a fraction of a second is written
        ({"DATE-OBS": "2026-11-21T06:00:00"}, six, False),
        ({"DATE-OBS": "2026-11-21 06:00:00"}, six, False),  # a space for the 'T'
        ({"DATE-OBS": "2026-11-21T06:00:00Z"}, six, False),
        ({"DATE-OBS": "2026-11-21T06:00:00+00:00"}, six, False),
        ({"DATE-OBS": "2026-11-21T07:30:00+01:30"}, six, False),  # local time: to UTC
        ({"DATE-OBS": "2026-11-21", "TIME-OBS": "06:00:00"}, six, False),
        ({"DATE-OBS": "2026-11-21", "UT": "06:00:00.25"}, six.replace(microsecond=250000), True),
        ({"DATE_OBS": "2026-11-21T06:00:00.1234567"}, six.replace(microsecond=123456), True),
        ({"DATE-OBS": "21/11/96", "UTSTART": "06:00:00"}, datetime(1996, 11, 21, 6), False),  # 19YY
        ({"DATE-OBS": "20/11/26", "UT": "23:59:59"}, datetime(1926, 11, 20, 23, 59, 59), False),
        ({"MJD-OBS": mjd}, six, False),
        ({"JD": mjd + 2400000.5}, six, False),  # to the ms: a double JD holds ~40 us
        ({"MJD-OBS": Time("1998-07-01T12:00:00.5").mjd}, datetime(1998, 7, 1, 12, 0, 0, 500000), True),
    ]
    for cards, moment, fraction in cases:
        problems = []
        text, seconds = parse_date(HeaderView(cards), profile, problems)
        assert problems == [], cards
        assert seconds == pytest.approx(seconds_since_2000(moment), abs=1e-3), cards
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?", text), (cards, text)
        assert datetime.fromisoformat(text) == moment, (cards, text)
        assert (len(text) > 19) == fraction, (cards, text)


def test_dates_that_cannot_be_read_are_empty_with_a_warning(camera_profile):
    from ccdcal.camera import CameraProfile, HeaderView
    from ccdcal.inventory import parse_date

    profile = CameraProfile(camera_profile())
    for cards, warning in [
        ({"DATE-OBS": "yesterday"}, "DATE-OBS 'yesterday' is not a date"),
        ({"DATE-OBS": "2024-02-30T00:00:00"}, "DATE-OBS '2024-02-30T00:00:00' is not a date"),
        ({"DATE-OBS": "2024-02-03T25:00:00"}, "DATE-OBS '2024-02-03T25:00:00' is not a date"),
        ({"MJD-OBS": "soon"}, "MJD-OBS 'soon' is not a date"),
    ]:
        problems = []
        assert parse_date(HeaderView(cards), profile, problems) == ("", None), cards
        assert problems == [warning]
    # a date alone, with no time anywhere: midnight, and said
    problems = []
    text, seconds = parse_date(HeaderView({"DATE-OBS": "2026-11-21"}), profile, problems)
    assert (text, seconds) == ("2026-11-21T00:00:00", seconds_since_2000(datetime(2026, 11, 21)))
    assert problems and "no time of day" in problems[0]
    assert parse_date(HeaderView({}), profile) == ("", None)  # no date at all: nothing to say


def test_dates_in_the_inventory_rows(tmp_path, make_config):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_frame(raw / "space.fits", dict(IMAGETYP="BIAS", DATE__OBS="2026-11-21 06:00:00"))
    write_frame(raw / "old.fits", dict(IMAGETYP="BIAS", DATE__OBS="21/11/96", TIME__OBS="06:00:00"))
    write_frame(raw / "bad.fits", dict(IMAGETYP="BIAS", DATE__OBS="yesterday"))
    rows = inventory_of(raw, make_config)
    assert (rows["space.fits"].date_obs, rows["old.fits"].date_obs) == ("2026-11-21T06:00:00", "1996-11-21T06:00:00")
    assert rows["space.fits"].time_s == seconds_since_2000(datetime(2026, 11, 21, 6))
    bad = rows["bad.fits"]
    assert (bad.status, bad.date_obs, bad.time_s) == ("ok", "", None)
    assert bad.warnings == "DATE-OBS 'yesterday' is not a date"


def test_the_new_columns_come_last_and_survive_csv(tmp_path):
    assert COLUMNS[-3:] == ["warnings", "dark_subtracted", "cfa"]
    assert COLUMNS[:3] == ["path", "status", "reason"]  # the order others read is unchanged
    records = [
        FrameRecord(
            path="a.fits",
            status="ok",
            warnings="OBJECT: control characters replaced; CCD-TEMP 'cold, \"very\"' is not a number",
            cfa="GRBG",
        ),
        FrameRecord(path="b.fits"),
    ]
    path = tmp_path / "inv.csv"
    path.write_text(records_to_csv(records), encoding="utf-8")
    assert records_from_csv(path) == records


@pytest.mark.parametrize("gz", [False, True])
def test_unreadable_structure_names_the_card(tmp_path, make_config, gz):
    """NAXIS1 = 'abc' used to say 'unsupported operand type(s) for +: 'int' and 'str''; a
    BITPIX of 7 passed the inventory and failed in the calibration."""
    raw = tmp_path / "raw"
    raw.mkdir()
    suffix = ".fits.gz" if gz else ".fits"
    write_frame(raw / f"naxis1{suffix}", dict(IMAGETYP="BIAS"), {"NAXIS1": "'abc'"}, gz=gz)
    write_frame(raw / f"bitpix{suffix}", dict(IMAGETYP="BIAS"), {"BITPIX": "7"}, gz=gz)
    write_frame(raw / f"ok{suffix}", dict(IMAGETYP="BIAS"), gz=gz)
    rows = inventory_of(raw, make_config)
    assert rows[f"naxis1{suffix}"].reason == "not a readable FITS file (NAXIS1 'abc' is not an integer)"
    assert rows[f"bitpix{suffix}"].status == "excluded"
    assert rows[f"bitpix{suffix}"].reason.startswith("not a readable FITS file (BITPIX 7 is not a FITS BITPIX")
    assert rows[f"ok{suffix}"].ok
    # an unreadable file for another reason keeps astropy's message
    (raw / "junk.fits").write_bytes(b"SIMPLE  = " + b"x" * 3000)
    assert inventory_of(raw, make_config)["junk.fits"].reason.startswith("not a readable FITS file (")


def geometry_night(tmp_path):
    """Two frames of camera 'demo-ccd' (48x30, NAXIS1xNAXIS2)."""
    raw = tmp_path / "raw"
    (raw / "ccd" / "lights").mkdir(parents=True)
    for name in ("b.fits", "a.fits"):
        write_frame(raw / "ccd" / "lights" / name, dict(IMAGETYP="LIGHT", EXPTIME=10.0, INSTRUME="SimCam"))
    return raw


@pytest.mark.parametrize(
    "camera,section,key",
    [
        ({"trim": "[1:60,1:30]"}, "trim section [1:60,1:30]", "'trim'"),
        (
            {"overscan": {"regions": [{"overscan": "[41:48,1:31]", "data": "[1:40,1:30]"}]}},
            "overscan section [41:48,1:31]",
            "'overscan.regions'",
        ),
        (
            {"overscan": {"regions": [{"overscan": "[38:48,1:30]", "data": "[1:40,1:30]"}]}},
            "overscan section [38:48,1:30] overlaps the data section [1:40,1:30]",
            "'overscan.regions'",
        ),
        (
            {"overscan": {"regions": [{"overscan": "[41:48,1:30]", "data": "header"}]}, "trim": "[1:44,1:30]"},
            "overscan section [41:48,1:30] overlaps the trim section [1:44,1:30]",
            "'overscan.regions' or 'trim'",
        ),
    ],
)
def test_camera_sections_that_do_not_fit_stop_the_inventory(tmp_path, make_config, camera, section, key):
    """Such a profile used to exclude every frame of the camera and the run exited 0."""
    from ccdcal.inventory import GeometryError

    raw = geometry_night(tmp_path)
    cameras = [{"name": "demo-ccd", "match": {"header": {"INSTRUME": "SimCam"}}, **camera}]
    with pytest.raises(GeometryError) as info:
        inventory_of(raw, make_config, cameras=cameras)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"camera 'demo-ccd': {section}")
    assert "ccd/lights/a.fits" in message and "48x30 (NAXIS1xNAXIS2)" in message  # first by path
    assert message.endswith(f"fix {key} in its profile")


def test_sections_from_a_frame_header_exclude_that_frame_only(tmp_path, make_config):
    raw = geometry_night(tmp_path)
    write_frame(
        raw / "ccd" / "overlap.fits",
        dict(IMAGETYP="LIGHT", EXPTIME=10.0, INSTRUME="SimCam", BIASSEC="[38:48,1:30]", DATASEC="[1:40,1:30]"),
    )
    write_frame(
        raw / "ccd" / "outside.fits", dict(IMAGETYP="LIGHT", EXPTIME=10.0, INSTRUME="SimCam", TRIMSEC="[1:40,1:31]")
    )
    cameras = [
        {
            "name": "demo-ccd",
            "match": {"header": {"INSTRUME": "SimCam"}},
            "overscan": {"regions": "header"},
            "trim": "header",
        }
    ]
    rows = inventory_of(raw, make_config, cameras=cameras)
    assert rows["ccd/overlap.fits"].reason == (
        "geometry: overscan section [38:48,1:30] overlaps the data section [1:40,1:30]"
    )
    assert rows["ccd/outside.fits"].reason.startswith("geometry: trim section [1:40,1:31] lies outside")
    assert rows["ccd/lights/a.fits"].ok and rows["ccd/lights/b.fits"].ok
    # a profile section that fits, with the data region from each header: checked, no error
    cameras[0]["overscan"] = {"regions": [{"overscan": "[41:48,1:30]", "data": "header"}]}
    cameras[0]["trim"] = "[1:40,1:30]"
    rows = inventory_of(raw, make_config, cameras=cameras)
    assert rows["ccd/lights/a.fits"].reason == "geometry: overscan region 'header' but the frame has no BIASSEC/DATASEC"


def test_a_frame_the_camera_software_dark_subtracted_is_recognised(tmp_path, make_config):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, history in (("auto.fits", "Auto-Dark Subtraction"), ("plain.fits", "Bias frame used: none")):
        header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 60.0})
        header.add_history(history)
        fits.PrimaryHDU(np.zeros((NY, NX), np.uint16), header=header).writeto(raw / name)
    header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 60.0, "DARKSUB": True})
    fits.PrimaryHDU(np.zeros((NY, NX), np.uint16), header=header).writeto(raw / "keyword.fits")
    config = make_config(default_camera={"dark": {"subtracted_by_camera": {"keyword": "DARKSUB"}}})
    records, _ = take_inventory(raw, list_raw_files(raw), config)
    found = {r.path: r.dark_subtracted for r in records}
    assert found == {"auto.fits": "HISTORY Auto-Dark Subtraction", "keyword.fits": "DARKSUB = True", "plain.fits": ""}
    text = records_to_csv(records)
    (tmp_path / "inv.csv").write_text(text, encoding="utf-8")
    assert [r.dark_subtracted for r in records_from_csv(tmp_path / "inv.csv")] == [found[r.path] for r in records]


# ------------------------------------------------------------------ the inventory's cache


def test_cached_rows_equal_a_fresh_reading_and_only_new_or_changed_files_are_read(
    night, make_config, tmp_path, monkeypatch
):
    """A rerun with the cache reads only the headers of new or changed files, and its rows
    (and cameras) are those of a fresh reading, bad files' reasons included."""
    import ccdcal.inventory as inventory

    raw, _ = night
    files = list_raw_files(raw, exclude=[raw / "out"])
    config = make_config(raw_dir=str(raw), output_dir=str(raw / "out"))
    cache = tmp_path / "work" / "inventory_rows.json"
    cache.parent.mkdir()
    fresh = take_inventory(raw, files, config)
    assert take_inventory(raw, files, config, cache) == fresh  # filled on a first reading

    read = []
    real = inventory.inspect_frame
    monkeypatch.setattr(inventory, "inspect_frame", lambda d, rel, *a: (read.append(rel), real(d, rel, *a))[1])
    assert take_inventory(raw, files, config, cache) == fresh
    assert read == []  # nothing changed: no header read

    fits.PrimaryHDU(image(11), header=header(IMAGETYP="DARK", EXPTIME=30.0)).writeto(
        raw / "bias_001.fits", overwrite=True
    )
    fits.PrimaryHDU(image(12), header=header(IMAGETYP="FLAT", EXPTIME=1.0)).writeto(raw / "new flat {x}.fits")
    files = list_raw_files(raw, exclude=[raw / "out"])
    records, cameras = take_inventory(raw, files, config, cache)
    assert sorted(read) == ["bias_001.fits", "new flat {x}.fits"]
    monkeypatch.setattr(inventory, "inspect_frame", real)
    assert (records, cameras) == take_inventory(raw, files, config)
    assert {r.path: r.frame_type for r in records}["bias_001.fits"] == "dark"


def test_the_cache_is_read_again_when_the_camera_settings_change_and_forgets_gone_files(
    night, make_config, tmp_path, monkeypatch
):
    import json

    import ccdcal.inventory as inventory

    raw, _ = night
    files = list_raw_files(raw, exclude=[raw / "out"])
    config = make_config(raw_dir=str(raw), output_dir=str(raw / "out"))
    cache = tmp_path / "inventory_rows.json"
    take_inventory(raw, files, config, cache)

    read = []
    real = inventory.inspect_frame
    monkeypatch.setattr(inventory, "inspect_frame", lambda d, rel, *a: (read.append(rel), real(d, rel, *a))[1])
    renamed = make_config(raw_dir=str(raw), output_dir=str(raw / "out"), default_camera={"name": "scope"})
    records, cameras = take_inventory(raw, files, renamed, cache)
    assert sorted(read) == sorted(files)  # other settings: every header read again
    assert set(cameras) == {"scope"} and {r.camera for r in records if r.ok} == {"scope"}

    take_inventory(raw, [f for f in files if f != "mef.fits"], renamed, cache)
    assert "mef.fits" not in json.loads(cache.read_text())  # gone from the night: forgotten


def test_a_damaged_cache_is_an_empty_one(night, make_config, tmp_path):
    raw, _ = night
    files = list_raw_files(raw, exclude=[raw / "out"])
    config = make_config(raw_dir=str(raw), output_dir=str(raw / "out"))
    cache = tmp_path / "inventory_rows.json"
    cache.write_text('{"bias_001.fits": [1, 2')  # a write cut short
    assert take_inventory(raw, files, config, cache) == take_inventory(raw, files, config)


def test_colour_frames_binned_or_badly_described_are_excluded_with_the_reason(tmp_path, make_config):
    """A binned one-shot-colour frame has no Bayer pattern left, and a BAYERPAT or offset
    that cannot be read would put colours in the wrong place: both are excluded, saying
    why; a colour frame described right is in, its trimmed layout in the cfa column."""
    raw = tmp_path / "raw"
    raw.mkdir()
    common = dict(IMAGETYP="LIGHT", EXPTIME=30.0, BAYERPAT="RGGB", ROWORDER="TOP-DOWN")
    write_frame(raw / "binned.fits", dict(common, XBINNING=2, YBINNING=2))
    write_frame(raw / "xtrans.fits", dict(common, BAYERPAT="XTRANS"))
    write_frame(raw / "offset.fits", dict(common, XBAYROFF=0.5))
    write_frame(raw / "shifted.fits", dict(common, XBAYROFF=1, YBAYROFF=0))
    write_frame(raw / "mono.fits", dict(IMAGETYP="LIGHT", EXPTIME=30.0, XBINNING=2, YBINNING=2))
    rows = inventory_of(raw, make_config)
    assert "binned 2x2: binning mixes the CFA colours" in rows["binned.fits"].reason
    assert rows["xtrans.fits"].reason == (
        "colour filter array: BAYERPAT 'XTRANS': not a 2x2 Bayer pattern (RGGB, BGGR, GRBG, GBRG)"
    )
    assert rows["offset.fits"].reason == "colour filter array: XBAYROFF 0.5: not a pixel offset (0 or 1)"
    assert (rows["shifted.fits"].status, rows["shifted.fits"].cfa) == ("ok", "GRBG")
    assert (rows["mono.fits"].status, rows["mono.fits"].cfa) == ("ok", "")
    # a profile saying 'none' calibrates the binned frame as monochrome
    rows = inventory_of(raw, make_config, default_camera={"bayer_pattern": "none"})
    assert (rows["binned.fits"].status, rows["binned.fits"].cfa) == ("ok", "")
