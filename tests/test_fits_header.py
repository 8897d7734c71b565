"""The inventory's light header reader (ccdcal.fits_header) against astropy.

Every header the light reader reads must give astropy's values (keyword by keyword, type
included), and every header it is not sure of must be left to astropy (read_simple_header
returns None): generated headers with every kind of value, hostile headers, the real
cameras' headers (shared/data/real beside the repository, skipped without them), and whole
inventories taken with and without the light reader.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdcal import frames
from ccdcal.config import validated
from ccdcal.fits_header import read_simple_header
from ccdcal.frames import FrameHeader, RawFrame, open_header
from ccdcal.inventory import list_raw_files, take_inventory

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
REAL_NIGHTS = {
    "arcsat_dcam_20250601": "config/examples/arcsat.yaml",
    "kast_blue_20150520": "config/examples/kast_blue.yaml",
    "wht_isis_blue_20160209": "config/examples/wht_isis_blue.yaml",
}

# astropy warns on some of the hostile headers; that is what they are for
pytestmark = [
    pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning"),
    pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning"),
]

STRUCTURE = [
    "SIMPLE  =                    T / conforms to FITS standard",
    "BITPIX  =                   16",
    "NAXIS   =                    2",
    "NAXIS1  =                    6",
    "NAXIS2  =                    4",
]
#: A camera's usual cards, after the structure.
COMMON = [
    "BZERO   =                32768",
    "BSCALE  =                    1",
    "IMAGETYP= 'LIGHT   '           / frame type",
    "EXPTIME =                 30.0 / [s]",
    "INSTRUME= 'TestCam '",
    "DATE-OBS= '2026-11-29T20:15:30.25'",
    "XBINNING=                    1",
    "YBINNING=                    1",
    "HISTORY dark subtracted by the capture software",
    "COMMENT   a comment card",
    "        a card with a blank keyword",
]
#: The keywords each value below is written under: text, numbers, settings the inventory reads.
VALUE_KEYWORDS = ("OBJECT", "CCD-TEMP", "EGAIN", "FILTER", "GAIN", "TESTVAL")

#: Values (columns 11-80 of a card) the light reader reads as astropy does.
READ_VALUES = {
    "string": "'M31'",
    "string_padded": "'M31     '           / a comment",
    "string_leading_spaces": "'  M31'",
    "string_empty": "''",
    "string_blank": "'    '",
    "string_quote": "'It''s'",
    "string_only_quote": "''''",
    "string_quotes": "'a''b'' c'",
    "string_slash": "'a/b' / c/d",
    "string_quote_and_slash": "'It''s a/b'",
    "string_quote_slash_after_text": "'It''s x / b'",
    "string_comment_without_space": "'x'/c",
    "string_time": "'12:30:00'",
    "string_68_characters": "'" + "x" * 68 + "'",
    "string_late": "          'late start'",
    "string_dark_subtracted": "'dark-subtracted'",
    "logical_true": "                   T",
    "logical_false": "F / flag",
    "integer": "                  42",
    "integer_negative": "-5",
    "integer_plus": "+5",
    "integer_leading_zeros": "007",
    "integer_huge": "123456789012345678901234567890",
    "integer_minus_zero": "-0",
    "float": "-10.25",
    "float_exponent": "-1.5E+03 / exp",
    "float_d_exponent": "1.5D-3",
    "float_lower_e": "1.5e3",
    "float_lower_d": "2.5d2",
    "float_leading_point": ".5",
    "float_trailing_point": "5.",
    "float_minus_zero": "-0.0",
    "float_overflow": "1E999",
    "float_underflow": "1E-400",
    "float_absurd": "1E300",
    "float_kelvin": "263.15",
    "undefined": "",
    "undefined_with_comment": "                     / nothing",
}
#: Values the light reader leaves to astropy (it would not read them as astropy does, or
#: astropy cannot read them).
ASTROPY_VALUES = {
    "string_quote_then_comment": "'a'' / b'",  # astropy: "a'" with the comment "b'"
    "string_quote_then_slash": "'a''/b'",
    "string_record_valued": "'AXIS.1: 2'",  # astropy: keyword TESTVAL.AXIS.1, value 2.0
    "string_colon_space": "'Target: M31'",
    "string_unclosed": "'abc",
    "string_lone_quote": "'a' b'",
    "complex": "(1.0, 2.0)",
    "two_points": "1.0.0",
    "bare_text": "abc",
    "spaced_number": "1.5 E3",
    "true_word": "TRUE",
    "hexadecimal": "0x10",
    "nan": "NaN",
}
#: Card images the light reader leaves to astropy.
ASTROPY_CARDS = {
    "lowercase_keyword": "exptime =                 30.0",
    "value_indicator_in_column_8": "OBJECTX= 'x'",
    "no_value_indicator": "FOO      bar",
    "keyword_with_a_space": "FOO BAR = 1",
    "keyword_after_a_space": " FOO    = 1",
    "hierarch": "HIERARCH ESO DET GAIN = 1.2",
    "continue": "CONTINUE  'def'",
    "control_character": "OBJECT  = 'M31\tfield'",
    "control_byte": "OBJECT  = 'M31\x01'",
    "delete_character": "OBJECT  = 'M31\x7f'",
    "non_ascii": "OBJECT  = 'caf\xe9'",
    "structure_again": "XTENSION= 'IMAGE   '",
    "groups": "GROUPS  =                    T",
    "pcount": "PCOUNT  =                    0",
    "gcount": "GCOUNT  =                    1",
    "blank": "BLANK   =               -32768",
    "zbitpix": "ZBITPIX =                   16",
    "bzero_text": "BZERO   = 'abc'",
    "bscale_logical": "BSCALE  =                    T",
    "end_with_text": "END     x",
}


def card(image: str) -> str:
    assert len(image) <= 80, image
    return image.ljust(80)


def fits_bytes(cards, structure=STRUCTURE, after_end: str = "", data: bytes | None = None, end: str = "END") -> bytes:
    """A FITS file from card images (latin-1: any byte), its data 6x4 16-bit values."""
    text = "".join(card(c) for c in [*structure, *cards]) + card(end) + after_end
    text = text.ljust(-(-len(text) // 2880) * 2880)
    data = (np.arange(24, dtype=">i2") - 100).tobytes() if data is None else data
    return text.encode("latin-1") + data.ljust(-(-len(data) // 2880) * 2880, b"\0")


def common_and(image: str) -> list[str]:
    """COMMON's cards but the one with the keyword of ``image`` (a first card wins), and
    ``image``."""
    return [*(c for c in COMMON if c[:8] != image[:8]), image]


def value_cards(value: str) -> list[str]:
    return [*COMMON, *(f"{key:<8}= {value}" for key in VALUE_KEYWORDS)]


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def astropy_cards(header: fits.Header) -> dict:
    """keyword -> value as astropy gives it (commentary cards as lists)."""
    return {key: list(header[key]) if key in ("COMMENT", "HISTORY", "") else header[key] for key in header}


def same(a, b) -> bool:
    """Equal values of the same type (-0.0 is not 0.0, inf is inf)."""
    return type(a) is type(b) and repr(a) == repr(b)


#: Lookups that HeaderView makes or could make: any case, a HIERARCH prefix, absent keys.
LOOKUPS = ("EXPTIME", "exptime", "ExpTime", " EXPTIME ", "HIERARCH EXPTIME", "DATE-OBS", "date-obs", "NOPE", "COMMENT")


def assert_read_as_astropy(path: Path) -> None:
    """read_simple_header reads ``path``, and gives astropy's values, shape and BITPIX."""
    light = read_simple_header(path)
    assert light is not None, f"{path.name}: left to astropy"
    cards, shape, bitpix = light
    with fits.open(path) as hdul:
        header = hdul[0].header
        expected = astropy_cards(header)
        assert set(cards) == set(expected)
        for key, value in expected.items():
            assert same(cards[key], value), (path.name, key, cards[key], value)
        for key in LOOKUPS:
            assert (key in cards) == (key in header), key
            if key in header:
                value = header[key]
                assert same(cards[key], list(value) if key == "COMMENT" else value), key
        assert (shape, bitpix) == (hdul[0].shape, hdul[0].header["BITPIX"])
    with RawFrame(path) as raw, open_header(path) as frame:
        assert isinstance(frame, FrameHeader) and not raw.header_problems
        assert (frame.shape, frame.bitpix, frame.hdu_index) == (raw.shape, raw.bitpix, raw.hdu_index)


@pytest.mark.parametrize("name", sorted(READ_VALUES))
def test_every_kind_of_value_is_read_as_astropy_reads_it(tmp_path, name):
    assert_read_as_astropy(write(tmp_path / f"{name}.fits", fits_bytes(value_cards(READ_VALUES[name]))))


def test_a_keyword_given_twice_has_its_first_value_and_long_headers_are_read(tmp_path):
    cards = [*COMMON, "EXPTIME =                 60.0", *(f"KEY{i:05d}= {i}" for i in range(100))]
    assert_read_as_astropy(write(tmp_path / "twice.fits", fits_bytes(cards)))
    assert read_simple_header(tmp_path / "twice.fits")[0]["EXPTIME"] == 30.0
    # the END card as the first card of a block of its own
    cards = [*COMMON, *(f"FILL{i:04d}= {i}" for i in range(36 - len(STRUCTURE) - len(COMMON)))]
    assert_read_as_astropy(write(tmp_path / "end_alone.fits", fits_bytes(cards)))


def test_headers_astropy_writes_are_read_as_astropy_reads_them(tmp_path):
    """A camera's header as astropy writes it (value columns, comments, every type)."""
    header = fits.Header()
    values = {
        "IMAGETYP": "Dark Frame",
        "EXPTIME": 60.0,
        "OBJECT": 'It\'s "M31" / core',
        "CCD-TEMP": -9.999999999999,
        "GAIN": 120,
        "BIG": 2**62,
        "TINY": 1e-300,
        "FLAG": False,
        "LONGISH": "y" * 60,
    }
    for key, value in values.items():
        header[key] = (value, f"the {key.lower()}")
    header["HISTORY"] = "one"
    header["HISTORY"] = "two"
    fits.PrimaryHDU(np.zeros((5, 7), np.float32), header=header).writeto(tmp_path / "float.fits")
    fits.PrimaryHDU(np.zeros((3, 4), np.uint16), header=header).writeto(tmp_path / "uint16.fits")
    fits.PrimaryHDU(np.zeros((3, 4), np.uint8), header=header).writeto(tmp_path / "uint8.fits")
    fits.PrimaryHDU(np.zeros((3, 4), np.int64), header=header).writeto(tmp_path / "int64.fits")
    for name in ("float.fits", "uint16.fits", "uint8.fits", "int64.fits"):
        assert_read_as_astropy(tmp_path / name)


@pytest.mark.parametrize("name", sorted(ASTROPY_VALUES))
def test_values_the_light_reader_is_not_sure_of_are_left_to_astropy(tmp_path, name):
    path = write(tmp_path / f"{name}.fits", fits_bytes(value_cards(ASTROPY_VALUES[name])))
    assert read_simple_header(path) is None


@pytest.mark.parametrize("name", sorted(ASTROPY_CARDS))
def test_cards_the_light_reader_is_not_sure_of_are_left_to_astropy(tmp_path, name):
    path = write(tmp_path / f"{name}.fits", fits_bytes(common_and(ASTROPY_CARDS[name])))
    assert read_simple_header(path) is None


def hostile_files() -> dict[str, bytes]:
    """File name -> content of files whose structure the light reader leaves to astropy."""
    good = fits_bytes(COMMON)
    structure = {
        "simple_false": ["SIMPLE  =                    F", *STRUCTURE[1:]],
        "simple_free_format": ["SIMPLE  = T", *STRUCTURE[1:]],
        "bitpix_7": [STRUCTURE[0], "BITPIX  =                    7", *STRUCTURE[2:]],
        "bitpix_float": [STRUCTURE[0], "BITPIX  =                 16.0", *STRUCTURE[2:]],
        "naxis_3": [*STRUCTURE[:2], "NAXIS   =                    3", *STRUCTURE[3:], "NAXIS3  =                    1"],
        "naxis1_text": [*STRUCTURE[:3], "NAXIS1  = 'abc'", STRUCTURE[4]],
        "naxis1_zero": [*STRUCTURE[:3], "NAXIS1  =                    0", STRUCTURE[4]],
        "naxis1_negative": [*STRUCTURE[:3], "NAXIS1  =                   -6", STRUCTURE[4]],
        "axes_out_of_order": [*STRUCTURE[:3], STRUCTURE[4], STRUCTURE[3]],
        "naxis2_missing": STRUCTURE[:4],
    }
    files = {f"{name}.fits": fits_bytes(COMMON, structure=cards) for name, cards in structure.items()}
    files["junk_after_end.fits"] = fits_bytes(COMMON, after_end=card("EXPTIME =                 99.0"))
    files["nul_after_end.fits"] = fits_bytes(COMMON, after_end="\0" * 80)
    files["missing_end.fits"] = good.replace(card("END").encode(), card("").encode())
    header_end = good.index(card("END").encode()) // 2880 * 2880 + 2880
    files["truncated_by_one_byte.fits"] = good[: header_end + 47]
    files["header_only.fits"] = good[:header_end]
    files["half_a_block.fits"] = good[:1440]
    files["empty.fits"] = b""
    files["not_fits.fits"] = b"not FITS at all " * 300
    files["plain.fits.gz"] = gzip.compress(good)
    stream = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((4, 6), np.uint16))]).writeto(stream)
    files["compressed.fits.fz"] = stream.getvalue()
    stream = io.BytesIO()
    primary = fits.PrimaryHDU(header=fits.Header([("IMAGETYP", "BIAS"), ("EXPTIME", 0.0)]))
    fits.HDUList([primary, fits.ImageHDU(np.zeros((4, 6), np.uint16))]).writeto(stream)
    files["extension.fits"] = stream.getvalue()
    stream = io.BytesIO()
    header = fits.Header([("IMAGETYP", "BIAS"), ("READOUTM", "slow-readout-" * 31)])  # CONTINUE cards
    fits.PrimaryHDU(np.zeros((4, 6), np.uint16), header=header).writeto(stream)
    files["long_string.fits"] = stream.getvalue()
    return files


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_hostile_files_are_left_to_astropy(tmp_path, name):
    path = write(tmp_path / name, hostile_files()[name])
    assert read_simple_header(path) is None


def test_a_plain_file_under_a_compressed_name_is_left_to_astropy(tmp_path):
    """RawFrame reads a .gz or .fz file as a compressed one (no check of its length)."""
    for name in ("plain.fits.gz", "plain.fits.fz"):
        path = write(tmp_path / name, fits_bytes(COMMON))
        assert read_simple_header(path) is not None
        with open_header(path) as frame:
            assert isinstance(frame, RawFrame)


def test_a_complete_file_without_its_last_padding_is_read(tmp_path):
    """The file is complete when its image is (astropy's check_complete): the padding of
    its last block may be missing; one byte less is a truncated file, left to astropy."""
    good = fits_bytes(COMMON)
    header_end = good.index(card("END").encode()) // 2880 * 2880 + 2880
    assert_read_as_astropy(write(tmp_path / "unpadded.fits", good[: header_end + 48]))
    assert read_simple_header(write(tmp_path / "short.fits", good[: header_end + 47])) is None


# ------------------------------------------------------------------ whole inventories


def inventory_rows(raw: Path, config: dict) -> list[dict]:
    records, _ = take_inventory(raw, list_raw_files(raw), config)
    return [record.row() for record in records]


def assert_same_inventory(raw: Path, config: dict, monkeypatch) -> int:
    """The inventory of ``raw`` is the same with the light reader as with astropy alone;
    returns how many files the light reader read."""
    read = []

    def counted(path):
        simple = read_simple_header(path)
        read.extend([path] if simple is not None else [])
        return simple

    with monkeypatch.context() as patch:
        patch.setattr(frames, "read_simple_header", counted)
        light = inventory_rows(raw, config)
    with monkeypatch.context() as patch:
        patch.setattr(frames, "read_simple_header", lambda path: None)
        astropy_only = inventory_rows(raw, config)
    assert len(light) == len(astropy_only)
    for ours, theirs in zip(light, astropy_only, strict=True):
        assert ours == theirs
    return len(read)


def hostile_night(raw: Path) -> Path:
    """Every file above, under names that are hard to handle, with a night's usual frames."""
    for name, value in {**READ_VALUES, **ASTROPY_VALUES}.items():
        write(raw / "values" / f"{name}.fits", fits_bytes(value_cards(value)))
    for name, image in ASTROPY_CARDS.items():
        write(raw / "cards" / f"{name}.fits", fits_bytes(common_and(image)))
    for name, content in hostile_files().items():
        write(raw / "hostile" / name, content)
    names = ["with space.fits", "braces {1}.fits", "caf\u00e9 \u00e9toile.fits", "flat {x}_R.fits"]
    for i, name in enumerate(names):
        write(raw / "names" / name, fits_bytes([*COMMON, f"OBJECT  = 'frame {i}'"]))
    for name, scaling in {
        "bscale_zero": "BSCALE  = 0",
        "bzero_huge": "BZERO   = 1E300",
        "bzero_undefined": "BZERO   =",
    }.items():
        write(raw / "scaling" / f"{name}.fits", fits_bytes(common_and(scaling)))
    kinds = ["'BIAS'", "'Dark Frame'", "'FLAT'", "'Light Frame'", "'zero'", "'unknown'"]
    usual = [c for c in COMMON if not c.startswith(("IMAGETYP", "EXPTIME"))]
    for i, kind in enumerate(kinds):
        cards = [*usual, f"IMAGETYP= {kind}", "EXPTIME =                  0.0" if i == 0 else "EXPTIME = 2.5"]
        write(raw / "kinds" / f"frame_{i}.fits", fits_bytes(cards))
    return raw


def test_a_hostile_night_has_the_same_inventory_with_the_light_reader(tmp_path, make_config, monkeypatch):
    raw = hostile_night(tmp_path / "raw")
    config = make_config(raw_dir=str(raw), output_dir=str(tmp_path / "out"))
    read = assert_same_inventory(raw, config, monkeypatch)
    assert read == len(READ_VALUES) + 2 + 4 + 6  # the light reader read what it should, and no more


def test_the_benchmark_night_has_the_same_inventory_with_the_light_reader(tmp_path, make_config, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from inventory_speed import write_night
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    raw = tmp_path / "raw"
    write_night(raw, 40)
    config = make_config(raw_dir=str(raw), output_dir=str(tmp_path / "out"))
    assert assert_same_inventory(raw, config, monkeypatch) == 40


# ------------------------------------------------------------------ real cameras


@pytest.mark.parametrize("night", sorted(REAL_NIGHTS))
def test_real_camera_headers_are_read_as_astropy_reads_them(night, monkeypatch):
    raw = REAL / night
    if not raw.is_dir():
        pytest.skip(f"real night {night} not found in {REAL} (shared/data/real beside the repository)")
    paths = sorted(raw.rglob("*.fits"))
    read = [path for path in paths if read_simple_header(path) is not None]
    for path in read:
        assert_read_as_astropy(path)
    config = yaml.safe_load((REPO / REAL_NIGHTS[night]).read_text())
    config = validated({**config, "raw_dir": str(raw), "output_dir": os.devnull})
    assert assert_same_inventory(raw, config, monkeypatch) == len(read)
    if night == "wht_isis_blue_20160209":  # multi-extension files: astropy's
        assert read == []
    else:  # one image in the primary HDU: the light reader's
        assert len(read) == len(paths) > 0
