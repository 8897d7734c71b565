"""XISF input: ccdcal's own reader (ccdcal.xisf) against files written by the `xisf` package
(GPL-3.0, used here only to write files) and by hand, hostile files, XisfFrame, the
inventory, and a night calibrated from XISF raws equal to the same night from FITS."""

from __future__ import annotations

import base64
import csv
import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, run_snakemake, validated_config
from xisf import XISF

from ccdcal.camera import card_value_text
from ccdcal.frames import STRUCTURAL_KEYWORDS, FrameError, RawFrame, XisfFrame, is_frame_name, open_frame, open_header
from ccdcal.inventory import list_raw_files, no_fits_message, take_inventory
from ccdcal.watch import structure_is_whole
from ccdcal.xisf import XisfError, is_xisf_name, read_header, read_image

CODECS = [None, "zlib", "lz4", "lz4hc", "zstd"]


def compressible(dtype, shape=(41, 67), seed=3) -> np.ndarray:
    """A smooth image with a little noise (compresses, so the xisf package keeps the codec)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    level = 1000 + 3 * x + 2 * y + rng.integers(0, 4, shape)
    return (level / 65535).astype(dtype) if np.dtype(dtype).kind == "f" else level.astype(dtype)


def keyword_table(header: fits.Header) -> dict:
    """FITS cards as the xisf package's FITSKeywords: name -> [{'value': text as written, 'comment'}]."""
    table: dict = {}
    for card in header.cards:
        if card.keyword in STRUCTURAL_KEYWORDS or card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        table.setdefault(card.keyword, []).append({"value": card_value_text(card.image), "comment": card.comment})
    return table


def write_package(path, data, codec=None, shuffle=False, keywords=None, properties=None):
    metadata = {"FITSKeywords": keywords or {}, "XISFProperties": properties or {}}
    XISF.write(
        str(path), data[..., None], creator_app="ccdcal tests", image_metadata=metadata, codec=codec, shuffle=shuffle
    )


# ----------------------------------------------------------------------------- hand-built files
PIXINSIGHT_KEYWORDS = """
<FITSKeyword name="IMAGETYP" value="'Dark Frame'" comment="Type of exposure"/>
<FITSKeyword name="EXPTIME" value="120." comment="Exposure time in seconds"/>
<FITSKeyword name="XBINNING" value="1" comment="X axis binning factor"/>
<FITSKeyword name="CCD-TEMP" value="-10." comment="CCD temperature (Celsius)"/>
<FITSKeyword name="GAIN" value="100" comment="Sensor gain"/>
<FITSKeyword name="OFFSET" value="50" comment="Sensor gain offset"/>
<FITSKeyword name="INSTRUME" value="'ZWO ASI2600MM Pro'" comment="Imaging instrument name"/>
<FITSKeyword name="TELESCOP" value="'RedCat 51'" comment="Name of telescope"/>
<FITSKeyword name="DATE-OBS" value="'2024-03-02T21:04:05.123'" comment="Time of observation (UTC)"/>
<FITSKeyword name="EGAIN" value="2.5E-01" comment="Electrons per A/D unit"/>
<FITSKeyword name="SWCREATE" value="'N.I.N.A. 3.0'" comment=""/>
<FITSKeyword name="HISTORY" value="" comment="Dark subtracted by the capture program"/>
"""
PIXINSIGHT_PROPERTIES = """
<Property id="Instrument:ExposureTime" type="Float32" value="60"/>
<Property id="Instrument:Camera:Name" type="String">Should not win</Property>
<Property id="Instrument:Filter:Name" type="String" value="Ha"/>
<Property id="Instrument:Sensor:TargetTemperature" type="Float64" value="-10"/>
<Property id="Instrument:Camera:XBinning" type="Int32" value="1"/>
<Property id="Instrument:Camera:YBinning" type="UInt16" value="0x1"/>
<Property id="Observation:Object:Name" type="String" value="M 42"/>
<Property id="Observation:Time:Start" type="TimePoint" value="2024-03-02T22:04:05+01:00"/>
<Property id="Instrument:Camera:ISOSpeed" type="Int32" value="800"/>
<Property id="Image:Flag" type="Boolean" value="true"/>
<ColorFilterArray pattern="RGGB" width="2" height="2" name="Bayer"/>
"""


def build_xisf(
    path: Path,
    data: bytes,
    attributes: str,
    children: str = "",
    block_at: int = 4096,
    root_extra: str = "",
) -> Path:
    """A monolithic XISF file: signature, header length, reserved bytes, the XML header,
    zeros up to ``block_at`` and the data block there. ``attributes`` of the Image may use
    {pos} and {size} (the block's place)."""
    image = f"<Image {attributes.format(pos=block_at, size=len(data))}>{children}</Image>"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<xisf version="1.0" xmlns="http://www.pixinsight.com/xisf">{root_extra}{image}</xisf>'
    ).encode()
    assert 16 + len(xml) <= block_at
    head = b"XISF0100" + struct.pack("<I", len(xml)) + b"\0" * 4 + xml
    path.write_bytes(head + b"\0" * (block_at - len(head)) + data)
    return path


def plain_attributes(shape=(5, 7), sample="UInt16", extra="") -> str:
    return f'geometry="{shape[1]}:{shape[0]}:1" sampleFormat="{sample}" location="attachment:{{pos}}:{{size}}" {extra}'


@pytest.fixture
def image16():
    return (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000 + 7).astype(np.uint16)


# ----------------------------------------------------------------------------- files the xisf package writes
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_package_files_read_exactly(tmp_path, dtype, codec, shuffle):
    data = compressible(dtype)
    path = tmp_path / "frame.xisf"
    keywords = {
        "IMAGETYP": [{"value": "'Light Frame'", "comment": "type"}],
        "EXPTIME": [{"value": "300.", "comment": "s"}],
    }
    properties = {"Instrument:Filter:Name": {"id": "Instrument:Filter:Name", "type": "String", "value": "OIII"}}
    write_package(path, data, codec, shuffle, keywords, properties)
    header = read_header(path)
    assert header.shape == data.shape and header.channels == 1
    assert header.sample_format == ("UInt16" if dtype == np.uint16 else "Float32")
    assert header.bounds == (None if dtype == np.uint16 else (0.0, 1.0))
    if codec is None:
        assert header.compression is None and header.data_size == data.nbytes
    else:
        assert header.compression == (codec, data.nbytes, data.itemsize if shuffle else 0)
        assert header.data_size < data.nbytes
    image = read_image(path, header)
    assert image.dtype == dtype and image.shape == data.shape
    np.testing.assert_array_equal(image, data)
    assert header.keywords["IMAGETYP"] == "Light Frame" and header.keywords["EXPTIME"] == 300.0
    assert header.keywords["FILTER"] == "OIII" and header.properties["Instrument:Filter:Name"] == "OIII"
    assert header.properties["XISF:CreatorApplication"] == "ccdcal tests"
    with XisfFrame(path) as frame:
        assert frame.bitpix == (16 if dtype == np.uint16 else -32)
        assert frame.integer_max == (65535 if dtype == np.uint16 else None)
        np.testing.assert_array_equal(frame.read(), data.astype(np.float32))
        np.testing.assert_array_equal(frame.read(slice(10, 17)), data[10:17].astype(np.float32))


def test_pixinsight_keyword_table_properties_and_cfa(tmp_path, image16):
    path = build_xisf(
        tmp_path / "dark.xisf", image16.tobytes(), plain_attributes(), PIXINSIGHT_KEYWORDS + PIXINSIGHT_PROPERTIES
    )
    header = read_header(path)
    k = header.keywords
    assert k["IMAGETYP"] == "Dark Frame" and k.comments["IMAGETYP"] == "Type of exposure"
    assert k["EXPTIME"] == 120.0 and isinstance(k["EXPTIME"], float)  # the keyword wins over the property (60)
    assert k["XBINNING"] == 1 and isinstance(k["XBINNING"], int)
    assert k["CCD-TEMP"] == -10.0 and k["GAIN"] == 100 and k["OFFSET"] == 50 and k["EGAIN"] == 0.25
    assert k["INSTRUME"] == "ZWO ASI2600MM Pro" and k["TELESCOP"] == "RedCat 51"
    assert k["DATE-OBS"] == "2024-03-02T21:04:05.123" and k["SWCREATE"] == "N.I.N.A. 3.0"
    assert list(k["HISTORY"]) == ["Dark subtracted by the capture program"]
    # properties fill what the keywords lack, and only that
    assert k["FILTER"] == "Ha" and k["SET-TEMP"] == -10.0 and k["YBINNING"] == 1 and k["OBJECT"] == "M 42"
    assert k["ISOSPEED"] == 800
    assert k["BAYERPAT"] == "RGGB" and k["XBAYROFF"] == 0 and k["YBAYROFF"] == 0 and header.cfa == "RGGB"
    p = header.properties
    assert p["Instrument:ExposureTime"] == 60.0 and p["Instrument:Camera:Name"] == "Should not win"
    assert p["Instrument:Camera:YBinning"] == 1 and p["Image:Flag"] is True
    assert p["Observation:Time:Start"] == "2024-03-02T22:04:05+01:00"
    assert header.problems == ()
    np.testing.assert_array_equal(read_image(path), image16)


def test_time_point_becomes_utc_date_obs(tmp_path, image16):
    children = '<Property id="Observation:Time:Start" type="TimePoint" value="2024-03-02T22:04:05.5+01:00"/>'
    header = read_header(build_xisf(tmp_path / "a.xisf", image16.tobytes(), plain_attributes(), children))
    assert header.keywords["DATE-OBS"] == "2024-03-02T21:04:05.500000"


def test_subblocks_checksum_big_endian_and_raw_subblock(tmp_path, image16):
    """Two subblocks (the second stored as is: compressed size = uncompressed size), zlib
    over shuffled big-endian samples, a SHA-1 of the stored block."""
    stored = image16.astype(">u2").tobytes()
    shuffled = np.frombuffer(stored, np.uint8).reshape(-1, 2).T.tobytes()
    first, second = shuffled[:40], shuffled[40:]
    block = zlib.compress(first) + second
    digest = hashlib.sha1(block).hexdigest()
    attributes = plain_attributes(
        extra=f'byteOrder="big" compression="zlib+sh:{len(stored)}:2" '
        f'subblocks="{len(zlib.compress(first))},40:{len(second)},{len(second)}" checksum="sha1:{digest}"'
    )
    path = build_xisf(tmp_path / "big.xisf", block, attributes)
    header = read_header(path)
    assert header.dtype == np.dtype(">u2") and header.checksum == ("sha1", digest)
    assert header.subblocks == ((len(zlib.compress(first)), 40), (len(second), len(second)))
    image = read_image(path, header)
    assert image.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(image, image16)
    with XisfFrame(path) as frame:  # a checksum: the block is decoded whole, once
        np.testing.assert_array_equal(frame.read(slice(1, 3)), image16[1:3].astype(np.float32))


def test_checksum_mismatch_is_refused(tmp_path, image16):
    path = build_xisf(tmp_path / "a.xisf", image16.tobytes(), plain_attributes(extra=f'checksum="sha-256:{"0" * 64}"'))
    with pytest.raises(XisfError, match="sha-256 checksum mismatch"):
        read_image(path)
    with XisfFrame(path, label="a.xisf") as frame, pytest.raises(FrameError, match=r"^a\.xisf: .*checksum mismatch"):
        frame.read()


def test_inline_and_embedded_blocks(tmp_path, image16):
    text = base64.b64encode(image16.tobytes()).decode()
    inline = f'<Image geometry="7:5:1" sampleFormat="UInt16" location="inline:base64">{text}</Image>'
    embedded = (
        f'<Image geometry="7:5:1" sampleFormat="UInt16" location="embedded"><Data encoding="base64">{text}</Data>'
        "</Image>"
    )
    for name, image in (("inline.xisf", inline), ("embedded.xisf", embedded)):
        xml = f'<xisf version="1.0" xmlns="http://www.pixinsight.com/xisf">{image}</xisf>'.encode()
        path = tmp_path / name
        path.write_bytes(b"XISF0100" + struct.pack("<I", len(xml)) + b"\0" * 4 + xml)
        np.testing.assert_array_equal(read_image(path), image16)
        with XisfFrame(path) as frame:
            frame.check_complete()
            np.testing.assert_array_equal(frame.read(), image16.astype(np.float32))


def test_normal_pixel_storage_first_channel(tmp_path, image16):
    rgb = np.stack([image16, image16 + 1, image16 + 2], axis=-1)
    attributes = 'geometry="7:5:3" sampleFormat="UInt16" pixelStorage="Normal" location="attachment:{pos}:{size}"'
    path = build_xisf(tmp_path / "rgb.xisf", rgb.tobytes(), attributes)
    assert read_header(path).channels == 3
    np.testing.assert_array_equal(read_image(path), image16)
    with pytest.raises(FrameError, match=r"colour image \(3 channels\): ccdcal calibrates raw mono or CFA frames"):
        XisfFrame(path)


# ----------------------------------------------------------------------------- hostile files
def _hostile(tmp_path: Path, image16: np.ndarray) -> dict[str, tuple[Path, str]]:
    data = image16.tobytes()
    good = build_xisf(tmp_path / "good.xisf", data, plain_attributes())
    cases = {}

    def case(name, content, message):
        path = tmp_path / f"{name}.xisf"
        path.write_bytes(content)
        cases[name] = (path, message)

    raw = good.read_bytes()
    case("signature", b"SIMPLE  " + raw[8:], "no XISF0100 signature")
    case("short", b"XISF01", "truncated file: 6 bytes")
    case("header length", raw[:8] + struct.pack("<I", 10**9) + raw[12:], "XML header is 1000000000 bytes long")
    case("bad xml", raw[:16] + b"<xisf><Image" + raw[28:], "malformed XML header")
    case("truncated", raw[:-10], "truncated file: the image data block ends at byte")
    lz4_block = b"\x1f\x00\x01\x00" * 4

    def built(name, attributes, message, payload=data, children="", root_extra=""):
        build_xisf(tmp_path / f"{name}.xisf", payload, attributes, children, root_extra=root_extra)
        cases[name] = (tmp_path / f"{name}.xisf", message)

    built("no image", plain_attributes(), "holds no Image", root_extra="")
    (tmp_path / "no image.xisf").write_bytes(
        (tmp_path / "no image.xisf").read_bytes().replace(b"<Image ", b"<Imagx ").replace(b"</Image>", b"</Imagx>")
    )
    built("3-d", 'geometry="7:5:2:1" sampleFormat="UInt16" location="attachment:{pos}:{size}"', "is not a 2-D image")
    built("complex", plain_attributes(sample="Complex32"), "sampleFormat 'Complex32' is not supported")
    built("huge", 'geometry="99999999999:5:1" sampleFormat="UInt16" location="attachment:{pos}:{size}"', "too large")
    built("size", plain_attributes(shape=(6, 7)), "holds 70 bytes, the geometry needs 84")
    built("codec", plain_attributes(extra='compression="lzma:70"'), "codec 'lzma' is not supported")
    built("bad zlib", plain_attributes(extra='compression="zlib:70"'), "zlib data cannot be decompressed", b"nonsense")
    built(
        "zlib size",
        plain_attributes(extra='compression="zlib:70"'),
        "decompresses to 35 bytes",
        zlib.compress(data[:35]),
    )
    built(
        "lz4 bomb",
        'geometry="7000:5000:1" sampleFormat="UInt16" location="attachment:{pos}:{size}" compression="lz4:70000000"',
        "cannot hold 70000000",
        lz4_block,
    )
    built(
        "zstd",
        plain_attributes(extra='compression="zstd:70"'),
        "zstd data cannot be decompressed",
        b"\x28\xb5\x2f\xfd junk",
    )
    built(
        "subblocks",
        plain_attributes(extra='compression="zlib:70" subblocks="3,70"'),
        "do not add up",
        zlib.compress(data),
    )
    built(
        "location",
        'geometry="7:5:1" sampleFormat="UInt16" location="url(http://x/y):1"',
        "location 'url(http://x/y):1' is not supported",
    )
    built("checksum algo", plain_attributes(extra='checksum="md5:00"'), "checksum algorithm 'md5' is not supported")
    built("doctype", plain_attributes(), "DOCTYPE", root_extra="")
    path = tmp_path / "doctype.xisf"
    xml_start = path.read_bytes().index(b"<xisf")
    content = path.read_bytes()
    length = struct.unpack("<I", content[8:12])[0]
    entity = b'<!DOCTYPE x [<!ENTITY a "aaaa">]>'
    xml = content[16 : 16 + length]
    xml = xml[: xml_start - 16] + entity + xml[xml_start - 16 :]
    path.write_bytes(b"XISF0100" + struct.pack("<I", len(xml)) + b"\0" * 4 + xml + content[16 + length + len(entity) :])
    return cases


def test_hostile_files_give_clear_errors(tmp_path, image16):
    for name, (path, message) in _hostile(tmp_path, image16).items():
        with pytest.raises(XisfError) as raised:
            read_image(path)
        assert message in str(raised.value), (name, str(raised.value))
        assert str(path) not in str(raised.value)  # callers name the file
        with pytest.raises(FrameError) as framed:
            with open_frame(path, label=path.name) as frame:
                frame.check_complete()
                frame.read()
        assert str(framed.value).startswith(f"{path.name}: ") and message in str(framed.value), name


def test_control_characters_and_bad_keyword_names(tmp_path, image16):
    children = (
        '<FITSKeyword name="OBJECT" value="\'M&#9;31&#127;\'" comment="line&#10;break"/>'
        '<FITSKeyword name="TOO LONG NAME" value="1" comment=""/>'
        '<FITSKeyword name="caf\u00e9" value="1" comment=""/>'
        '<FITSKeyword name="exptime" value="30" comment="lower case name"/>'
        '<Property id="Instrument:Filter:Name" type="String" value="L&#176;"/>'
        '<Property id="Bad:Int" type="Int8" value="300"/>'
    )
    header = read_header(build_xisf(tmp_path / "c.xisf", image16.tobytes(), plain_attributes(), children))
    k = header.keywords
    assert k["OBJECT"] == "M 31?" and k.comments["OBJECT"] == "line break"
    assert k["EXPTIME"] == 30 and k["FILTER"] == "L?"
    assert "TOO LONG NAME" not in k and len([c for c in k.cards if c.keyword.startswith("CAF")]) == 0
    problems = "; ".join(header.problems)
    assert "OBJECT: control characters replaced" in problems
    assert "'TOO LONG NAME' is not a valid FITS keyword: skipped" in problems
    assert "'café' is not a valid FITS keyword" in problems
    assert "FILTER: control characters replaced" in problems and "Bad:Int" in problems
    k.tostring()  # every card can be written
    with XisfFrame(tmp_path / "c.xisf") as frame:
        assert frame.header_problems == list(header.problems)


@pytest.mark.parametrize("name", ["dark frame 001.xisf", "{braces} [x].XISF", "ñandú ☾ 5.xisf"])
def test_odd_file_names(tmp_path, image16, name):
    path = build_xisf(tmp_path / name, image16.tobytes(), plain_attributes())
    assert is_xisf_name(name) and is_frame_name(name)
    with open_frame(path) as frame:
        assert isinstance(frame, XisfFrame) and frame.label == str(path)
        np.testing.assert_array_equal(frame.read(), image16.astype(np.float32))
    with open_header(path) as frame:
        assert isinstance(frame, XisfFrame) and frame.shape == (5, 7)


def test_names_and_factory():
    assert is_frame_name("a.fits.fz") and is_frame_name("b.XISF") and not is_frame_name("c.xisf.gz")
    assert not is_xisf_name("x.fits") and no_fits_message("/n", ["a.xisf"]) is None
    assert "or XISF file (.xisf)" in no_fits_message("/n", ["a.txt"])


def test_frame_reads_rows_digest_and_truncation(tmp_path):
    data = compressible(np.uint16)
    for codec in (None, "zstd"):
        path = tmp_path / f"{codec}.xisf"
        write_package(path, data, codec, shuffle=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for on_read in (False, True):
            with open_frame(path, digest_on_read=on_read) as frame:
                out = np.empty((5, data.shape[1]), np.float32)
                assert frame.read(slice(3, 8), out=out) is out
                np.testing.assert_array_equal(out, data[3:8])
                np.testing.assert_array_equal(frame.read(), data)
                assert frame.digest() == digest
    whole = (tmp_path / "None.xisf").read_bytes()
    with XisfFrame(tmp_path / "None.xisf", label="cut.xisf") as frame:
        (tmp_path / "None.xisf").write_bytes(whole[:-100])  # cut after opening
        with pytest.raises(FrameError, match=r"^cut\.xisf: truncated XISF file"):
            frame.check_complete()
        with pytest.raises(FrameError, match="truncated XISF file"):
            frame.read()


def test_watch_waits_for_a_cut_xisf_only(tmp_path, image16):
    path = build_xisf(tmp_path / "w.xisf", image16.tobytes(), plain_attributes())
    assert structure_is_whole(path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])
    assert not structure_is_whole(path)
    path.write_bytes(whole[:10])
    assert not structure_is_whole(path)
    path.write_bytes(whole.replace(b"geometry", b"geometrx"))  # broken for good: the inventory says why
    assert structure_is_whole(path)


# ----------------------------------------------------------------------------- the inventory and a whole night
def fits_to_xisf(source: Path, dest: Path, codec=None, shuffle=False) -> None:
    """The same pixels and FITS keywords as an XISF file (uint16 when the FITS holds them)."""
    with fits.open(source) as hdul:
        data, header = hdul[0].data, hdul[0].header
        write_package(dest, np.ascontiguousarray(data), codec, shuffle, keyword_table(header))


@pytest.fixture(scope="module")
def tiny_nights(tmp_path_factory):
    """.test/raw (ccdcal.simulate.night_tiny) as FITS and as XISF, some compressed."""
    base = tmp_path_factory.mktemp("xisf_night")
    fits_raw, xisf_raw = base / "raw_fits", base / "raw_xisf"
    shutil.copytree(REPO / ".test" / "raw", fits_raw)
    codecs = [(None, False), ("lz4", True), ("zstd", True), ("zlib", False), ("lz4hc", False)]
    for n, source in enumerate(sorted(fits_raw.rglob("*.fits"))):
        dest = xisf_raw / source.relative_to(fits_raw).with_suffix(".xisf")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fits_to_xisf(source, dest, *codecs[n % len(codecs)])
    return fits_raw, xisf_raw


def test_inventory_sees_xisf_frames_as_fits(tiny_nights):
    fits_raw, xisf_raw = tiny_nights
    config = validated_config()
    fits_rows, fits_cameras = take_inventory(fits_raw, list_raw_files(fits_raw), config)
    xisf_rows, xisf_cameras = take_inventory(xisf_raw, list_raw_files(xisf_raw), config)
    assert len(xisf_rows) == 12 and all(r.ok for r in xisf_rows), [r.reason for r in xisf_rows if not r.ok]
    assert {r.frame_type for r in xisf_rows} == {"bias", "dark", "flat", "light"}
    ignore = {"path", "hdu"}
    for f, x in zip(fits_rows, xisf_rows, strict=True):
        assert x.path == f.path.removesuffix(".fits") + ".xisf"
        assert {k: v for k, v in x.row().items() if k not in ignore} == {
            k: v for k, v in f.row().items() if k not in ignore
        }, x.path
    assert fits_cameras == xisf_cameras
    compressed = [p for p in xisf_raw.rglob("*.xisf") if read_header(p).compression]
    assert len(compressed) >= 8  # the lz4/zstd/zlib/lz4hc files are compressed


def _calibrated(out: Path) -> dict[str, Path]:
    """Calibrated lights by their stem (the raw name without extension)."""
    found = {}
    for path in (out / "calibrated").rglob("*"):
        if path.is_file() and "lights" in path.parts:
            found[path.name.partition(".")[0]] = path
    return found


def test_night_from_xisf_calibrates_as_from_fits(tiny_nights, tmp_path):
    fits_raw, xisf_raw = tiny_nights
    out_fits, out_xisf = tmp_path / "out_fits", tmp_path / "out_xisf"
    run_snakemake(fits_raw, out_fits)
    run_snakemake(xisf_raw, out_xisf)
    lights_fits, lights_xisf = _calibrated(out_fits), _calibrated(out_xisf)
    assert sorted(lights_fits) == sorted(lights_xisf) == ["light_V_60s_001", "light_V_60s_002"]
    # outputs are FITS, named as the FITS night's are
    assert sorted(p.relative_to(out_xisf) for p in lights_xisf.values()) == sorted(
        p.relative_to(out_fits) for p in lights_fits.values()
    )
    assert all(p.name.endswith(".fits") for p in lights_xisf.values())
    for stem, path in lights_fits.items():
        with fits.open(path) as a, fits.open(lights_xisf[stem]) as b:
            for extension in (0, "UNCERT", "MASK"):  # the image (SCI) is the primary HDU
                assert a[extension].data.dtype == b[extension].data.dtype
                np.testing.assert_array_equal(a[extension].data, b[extension].data, err_msg=f"{stem} {extension}")
            assert b[0].header["IMAGETYP"] == a[0].header["IMAGETYP"]
            assert a[0].data.std() > 0  # a real image, not an empty one

    def rows(out):
        with open(out / "inventory.csv", newline="") as handle:
            return {r["path"].rpartition(".")[0]: r for r in csv.DictReader(handle)}

    fits_rows, xisf_rows = rows(out_fits), rows(out_xisf)
    assert sorted(fits_rows) == sorted(xisf_rows)
    columns = [c for c in next(iter(fits_rows.values())) if c in ("frame_type", "status", "setup", "exptime", "filter")]
    assert "frame_type" in columns and "status" in columns
    for key, row in fits_rows.items():
        assert {c: row[c] for c in columns} == {c: xisf_rows[key][c] for c in columns}, key


def test_rawframe_and_xisf_frame_read_the_same_pixels(tiny_nights):
    fits_raw, xisf_raw = tiny_nights
    for source in sorted(fits_raw.rglob("*.fits")):
        dest = xisf_raw / source.relative_to(fits_raw).with_suffix(".xisf")
        with RawFrame(source) as a, open_frame(dest) as b:
            assert isinstance(b, XisfFrame) and a.shape == b.shape and a.bitpix == b.bitpix
            assert a.integer_max == b.integer_max
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.header.get("EXPTIME") == b.header.get("EXPTIME")
