"""Reading XISF files (PixInsight's format): the header and the first image, nothing else.

Written from the public XISF 1.0 specification (https://pixinsight.com/doc/docs/XISF-1.0-spec/
XISF-1.0-spec.html); ccdcal reads XISF frames and masters but writes FITS only. A monolithic
XISF file is the signature ``XISF0100``, the length of the XML header (uint32, little
endian), 4 reserved bytes, the UTF-8 XML header (default namespace
``http://www.pixinsight.com/xisf``) and the data blocks it places with
``location="attachment:<position>:<size>"`` (bytes from the start of the file); small blocks
may be held in the header itself (``inline:base64``, ``inline:hex``, ``embedded``).

The first ``Image`` element is read: ``geometry="<width>:<height>:<channels>"`` (numpy shape
(height, width)), ``sampleFormat`` (UInt8, UInt16, UInt32, Float32, Float64; Float images are
usually in ``bounds="0:1"``, returned as stored), ``byteOrder`` (little by default),
``pixelStorage`` (Planar by default: channel after channel; Normal: interleaved),
``compression="<codec>[+sh]:<uncompressed size>[:<item size>]"`` (codecs zlib, lz4, lz4hc,
zstd; ``+sh``: bytes shuffled by item before compression), ``subblocks="<cs>,<us>:..."``
(compressed and uncompressed sizes of subblocks compressed one by one; a subblock whose
compressed size equals its uncompressed size is stored as is) and
``checksum="<algorithm>:<hex digest>"`` (sha1, sha256, sha512, sha3-256, sha3-512, with or
without a hyphen) of the block as stored in the file.

Metadata: the ``FITSKeyword`` elements (name, value text, comment) become an astropy
``Header``, their values parsed as FITS parses a value (a quoted string, T/F, an integer,
a real; other text is kept as a string), characters outside printable ASCII replaced
(white space by a space, others by '?'), invalid keyword names skipped (each recorded in
``XisfHeader.problems``). Then, for a keyword still absent, from XISF properties:

=====================================  ==========  ==========================================
XISF property                          FITS        unit / form
=====================================  ==========  ==========================================
Instrument:Camera:Name                 INSTRUME
Instrument:Telescope:Name              TELESCOP
Instrument:ExposureTime                EXPTIME     s
Instrument:Sensor:Temperature          CCD-TEMP    deg C
Instrument:Sensor:TargetTemperature    SET-TEMP    deg C
Instrument:Camera:Gain                 EGAIN       e-/ADU
Instrument:Camera:XBinning             XBINNING
Instrument:Camera:YBinning             YBINNING
Instrument:Filter:Name                 FILTER
Observation:Time:Start                 DATE-OBS    ISO 8601, UTC, no time zone
Observation:Object:Name                OBJECT
Instrument:Camera:ISOSpeed             ISOSPEED
=====================================  ==========  ==========================================

and from a ``ColorFilterArray`` element (``pattern="RGGB" width="2" height="2"``): BAYERPAT
(the pattern) with XBAYROFF = YBAYROFF = 0 (XISF gives the pattern from the image's first
pixel). Every problem raises ``XisfError`` saying what is wrong, without the file's name
(callers add it).

Not read: images after the first, vector and matrix properties, properties and thumbnails
stored in data blocks, distributed XISF units (``.xish``), URL and path block locations.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
from astropy.io import fits

XISF_SUFFIX = ".xisf"
SIGNATURE = b"XISF0100"
NAMESPACE = "http://www.pixinsight.com/xisf"
#: Largest image axis (pixels) and image (bytes, all channels) accepted: a header giving more is refused.
MAX_AXIS = 1 << 24
MAX_IMAGE_BYTES = 1 << 36
#: Largest XML header accepted (bytes).
MAX_HEADER_BYTES = 1 << 28

SAMPLE_FORMATS = {
    "UInt8": np.dtype("u1"),
    "UInt16": np.dtype("<u2"),
    "UInt32": np.dtype("<u4"),
    "Float32": np.dtype("<f4"),
    "Float64": np.dtype("<f8"),
}
CODECS = ("zlib", "lz4", "lz4hc", "zstd")
#: checksum algorithm as written -> hashlib name
CHECKSUMS = {
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha512": "sha512",
    "sha-512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-512": "sha3_512",
}
#: XISF property -> FITS keyword, used when the FITS keyword is absent (module docstring).
PROPERTY_KEYWORDS = {
    "Instrument:Camera:Name": "INSTRUME",
    "Instrument:Telescope:Name": "TELESCOP",
    "Instrument:ExposureTime": "EXPTIME",
    "Instrument:Sensor:Temperature": "CCD-TEMP",
    "Instrument:Sensor:TargetTemperature": "SET-TEMP",
    "Instrument:Camera:Gain": "EGAIN",
    "Instrument:Camera:XBinning": "XBINNING",
    "Instrument:Camera:YBinning": "YBINNING",
    "Instrument:Filter:Name": "FILTER",
    "Observation:Time:Start": "DATE-OBS",
    "Observation:Object:Name": "OBJECT",
    "Instrument:Camera:ISOSpeed": "ISOSPEED",
}
_PROPERTY_COMMENTS = {
    "EXPTIME": "[s] from XISF Instrument:ExposureTime",
    "CCD-TEMP": "[C] from XISF Instrument:Sensor:Temperature",
    "SET-TEMP": "[C] from XISF Instrument:Sensor:TargetTemperature",
    "EGAIN": "[e-/ADU] from XISF Instrument:Camera:Gain",
}

_KEYWORD_NAME = re.compile(r"[A-Z0-9_-]{1,8}")
_INTEGER = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[DEde][+-]?\d+)?")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_INT_RANGES = {f"{kind}{bits}": bits for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)}


class XisfError(ValueError):
    """A file that is not a usable XISF file; the message says why (not which file)."""


def is_xisf_name(name: str) -> bool:
    """True for a name ending in .xisf (any case)."""
    return name.lower().endswith(XISF_SUFFIX)


@dataclass(frozen=True)
class XisfHeader:
    """What the XML header of an XISF file says of its first image.

    ``shape`` is the numpy (ny, nx) of one channel; ``dtype`` has the file's byte order.
    ``data_offset``/``data_size`` place the block in the file (bytes; for a block held in
    the header, ``data_offset`` is 0 and the decoded bytes are ``inline_data``).
    ``compression`` is (codec, uncompressed size in bytes, shuffle item size or 0);
    ``subblocks`` the (compressed, uncompressed) sizes of its subblocks in order.
    """

    shape: tuple[int, int]
    channels: int
    sample_format: str
    dtype: np.dtype
    bounds: tuple[float, float] | None
    keywords: fits.Header
    properties: dict[str, Any]
    cfa: str | None
    data_offset: int
    data_size: int
    compression: tuple[str, int, int] | None
    checksum: tuple[str, str] | None
    subblocks: tuple[tuple[int, int], ...] = ()
    pixel_storage: str = "Planar"
    inline_data: bytes | None = field(default=None, repr=False)
    problems: tuple[str, ...] = ()

    @property
    def image_bytes(self) -> int:
        """Bytes of the whole image, all channels, uncompressed."""
        return self.shape[0] * self.shape[1] * self.channels * self.dtype.itemsize


def _local(tag: Any) -> str:
    """An element's name without its namespace ('{http://www.pixinsight.com/xisf}Image' -> 'Image')."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _printable(text: str) -> tuple[str, bool]:
    """``text`` with characters a FITS header may not hold replaced (white space by a space,
    others by '?'), and whether any was."""
    if not _NOT_PRINTABLE.search(text):
        return text, False
    return _NOT_PRINTABLE.sub(lambda m: " " if m.group().isspace() else "?", text), True


def fits_value(text: str) -> Any:
    """A FITS keyword value from its text as written in a card after '= ': a quoted string
    (doubled quotes undone, trailing spaces dropped), T/F, an integer, a real (exponent E
    or D); None for nothing; any other text is returned stripped, as a string."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("'"):
        end = len(text) - 1 if len(text) > 1 and text.endswith("'") else len(text)
        return text[1:end].replace("''", "'").rstrip()
    if text in ("T", "F"):
        return text == "T"
    if _INTEGER.fullmatch(text):
        return int(text)
    if _REAL.fullmatch(text):
        return float(text.translate(str.maketrans("dD", "eE")))
    return text


def _uint(text: str) -> int:
    """An XISF unsigned integer literal (decimal, or 0x / 0b / 0o prefixed)."""
    text = text.strip()
    if len(text) > 2 and text[0] == "0" and text[1] in "xXbBoO":
        return int(text[2:], {"x": 16, "b": 2, "o": 8}[text[1].lower()])
    if not text.isdigit():
        raise ValueError(f"{text!r} is not an unsigned integer")
    return int(text)


def _property_value(element: ElementTree.Element) -> Any:
    """The Python value of a scalar, String or TimePoint ``Property`` element; ValueError
    for a value that is not of its type; None for a type ccdcal does not read (vectors,
    matrices, complex numbers, data held in blocks)."""
    kind = element.get("type", "")
    value = element.get("value")
    if kind == "String":
        if element.get("location"):
            location = element.get("location", "")
            if location.startswith("inline:"):
                return _decode_text(element.text or "", location[7:]).decode("utf-8", "replace")
            return None
        return value if value is not None else (element.text or "")
    if value is None:
        return None
    if kind == "Boolean":
        if value.strip().lower() in ("true", "1"):
            return True
        if value.strip().lower() in ("false", "0"):
            return False
        raise ValueError(f"{value!r} is not a Boolean")
    if kind in _INT_RANGES:
        number = int(value.strip(), 0) if kind.startswith("Int") else _uint(value)
        bits = _INT_RANGES[kind]
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.startswith("Int") else (0, (1 << bits) - 1)
        if not low <= number <= high:
            raise ValueError(f"{value} is out of the range of {kind}")
        return number
    if kind in ("Float32", "Float64"):
        return float(value)
    if kind == "TimePoint":
        return value.strip()
    return None


def _decode_text(text: str, encoding: str) -> bytes:
    """The bytes of a block held in the header as base64 or hex text (white space ignored)."""
    compact = "".join(text.split())
    try:
        if encoding.lower() == "base64":
            return base64.b64decode(compact, validate=True)
        if encoding.lower() in ("hex", "base16"):
            return bytes.fromhex(compact)
    except (binascii.Error, ValueError) as exc:
        raise XisfError(f"{encoding} data in the header cannot be decoded ({exc})") from None
    raise XisfError(f"data encoding {encoding!r} is not supported (base64, hex)")


def _iso_utc(text: str) -> str:
    """An ISO 8601 time point as FITS DATE-OBS writes it: UTC, no time zone (``text`` as is,
    without a trailing 'Z', when it cannot be parsed)."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return text.strip().removesuffix("Z")
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat()


def _add_card(header: fits.Header, keyword: str, value: Any, comment: str, problems: list[str]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            card = fits.Card(keyword, value, comment)
            card.image  # noqa: B018 - formatting is lazy: this is the check
            header.append(card, end=True)
    except (ValueError, TypeError, fits.verify.VerifyError) as exc:
        problems.append(f"{keyword}: unusable keyword dropped ({exc})")


def _keywords(
    image: ElementTree.Element, properties: dict[str, Any], cfa: str | None, problems: list[str]
) -> fits.Header:
    header = fits.Header()
    for element in _children(image, "FITSKeyword"):
        raw_name = element.get("name", "")
        name = raw_name.strip().upper()
        if not _KEYWORD_NAME.fullmatch(name):
            problems.append(f"FITS keyword name {raw_name!r} is not a valid FITS keyword: skipped")
            continue
        value_text, bad_value = _printable(element.get("value", ""))
        comment, bad_comment = _printable(element.get("comment", ""))
        if bad_value or bad_comment:
            problems.append(f"{name}: control characters replaced")
        if name in ("COMMENT", "HISTORY"):
            text = comment or fits_value(value_text) or ""
            _add_card(header, name, str(text), "", problems)
            continue
        _add_card(header, name, fits_value(value_text), comment.strip(), problems)
    for prop, keyword in PROPERTY_KEYWORDS.items():
        value = properties.get(prop)
        if keyword in header or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, str):
            value, bad = _printable(value)
            if bad:
                problems.append(f"{keyword}: control characters replaced (from XISF {prop})")
        if keyword == "DATE-OBS":
            value = _iso_utc(str(value))
        _add_card(header, keyword, value, _PROPERTY_COMMENTS.get(keyword, f"from XISF {prop}"), problems)
    if cfa is not None and "BAYERPAT" not in header:
        _add_card(header, "BAYERPAT", cfa, "CFA pattern, from XISF ColorFilterArray", problems)
        for keyword in ("XBAYROFF", "YBAYROFF"):
            if keyword not in header:
                _add_card(header, keyword, 0, "CFA pattern offset, from XISF ColorFilterArray", problems)
    return header


def _properties(elements: list[ElementTree.Element], problems: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for element in elements:
        ident = element.get("id")
        if not ident:
            problems.append("a Property element without id: skipped")
            continue
        try:
            value = _property_value(element)
        except (ValueError, XisfError) as exc:
            problems.append(f"property {ident}: {exc}: skipped")
            continue
        if value is not None:
            properties[ident] = value
    return properties


def _geometry(text: str | None) -> tuple[int, int, int]:
    """(width, height, channels) from ``geometry="<width>:<height>:<channels>"``."""
    if not text:
        raise XisfError("the Image has no geometry attribute")
    parts = text.split(":")
    if len(parts) != 3:
        raise XisfError(f"geometry {text!r} is not a 2-D image (<width>:<height>:<channels>)")
    try:
        width, height, channels = (int(p.strip()) for p in parts)
    except ValueError:
        raise XisfError(f"geometry {text!r} is not made of integers") from None
    if min(width, height, channels) < 1:
        raise XisfError(f"geometry {text!r}: every dimension must be 1 or more")
    if max(width, height) > MAX_AXIS or channels > 1024:
        raise XisfError(f"geometry {text!r} is too large (at most {MAX_AXIS} pixels a side, 1024 channels)")
    return width, height, channels


def _location(image: ElementTree.Element, file_size: int, header_end: int) -> tuple[int, int, bytes | None]:
    """(position, size, bytes held in the header or None) of the image's data block."""
    location = (image.get("location") or "").strip()
    parts = [p.strip() for p in location.split(":")]
    if parts[0] == "attachment":
        if len(parts) != 3:
            raise XisfError(f"malformed location {location!r} (attachment:<position>:<size>)")
        try:
            position, size = int(parts[1]), int(parts[2])
        except ValueError:
            raise XisfError(f"malformed location {location!r} (attachment:<position>:<size>)") from None
        if position < header_end or size <= 0:
            raise XisfError(f"location {location!r} does not place a data block after the header")
        if position + size > file_size:
            raise XisfError(
                f"truncated file: the image data block ends at byte {position + size}, the file has {file_size} bytes"
            )
        return position, size, None
    if parts[0] == "inline" and len(parts) == 2:
        data = _decode_text(image.text or "", parts[1])
        return 0, len(data), data
    if parts[0] == "embedded" and len(parts) == 1:
        blocks = _children(image, "Data")
        if not blocks:
            raise XisfError("location 'embedded' but the Image has no Data element")
        data = _decode_text(blocks[0].text or "", blocks[0].get("encoding", "base64"))
        return 0, len(data), data
    if not location:
        raise XisfError("the Image has no location attribute")
    raise XisfError(f"data block location {location!r} is not supported (attachment, inline, embedded)")


def _compression(
    image: ElementTree.Element, size: int, image_bytes: int
) -> tuple[tuple[str, int, int] | None, tuple[tuple[int, int], ...]]:
    text = (image.get("compression") or "").strip()
    if not text:
        if size != image_bytes:
            raise XisfError(f"the uncompressed data block holds {size} bytes, the geometry needs {image_bytes}")
        return None, ()
    parts = [p.strip() for p in text.split(":")]
    codec = parts[0].lower()
    shuffled = codec.endswith("+sh")
    codec = codec.removesuffix("+sh")
    if codec not in CODECS:
        raise XisfError(f"compression codec {parts[0]!r} is not supported ({', '.join(CODECS)}, with +sh or not)")
    if len(parts) not in (2, 3) or (shuffled and len(parts) != 3):
        raise XisfError(f"malformed compression {text!r} (<codec>:<uncompressed size>, <codec>+sh:<size>:<item size>)")
    try:
        uncompressed = int(parts[1])
        item = int(parts[2]) if shuffled else 0
    except ValueError:
        raise XisfError(f"malformed compression {text!r}: sizes are not integers") from None
    if uncompressed != image_bytes:
        raise XisfError(
            f"compression {text!r} gives {uncompressed} uncompressed bytes, the geometry needs {image_bytes}"
        )
    if shuffled and not 1 <= item <= 16:
        raise XisfError(f"compression {text!r}: shuffle item size {item} is not 1 to 16")
    subblocks_text = (image.get("subblocks") or "").strip()
    if not subblocks_text:
        return (codec, uncompressed, item), ((size, uncompressed),)
    subblocks = []
    for token in subblocks_text.split(":"):
        pair = token.split(",")
        try:
            compressed_size, uncompressed_size = (int(p.strip()) for p in pair)
        except ValueError:
            raise XisfError(f"malformed subblocks {subblocks_text!r} (<cs>,<us>:<cs>,<us>...)") from None
        if compressed_size <= 0 or uncompressed_size <= 0:
            raise XisfError(f"subblocks {subblocks_text!r}: sizes must be 1 or more")
        subblocks.append((compressed_size, uncompressed_size))
    if sum(c for c, _ in subblocks) != size or sum(u for _, u in subblocks) != uncompressed:
        raise XisfError(
            f"subblocks {subblocks_text!r} do not add up to the block ({size} bytes) and its "
            f"uncompressed size ({uncompressed} bytes)"
        )
    return (codec, uncompressed, item), tuple(subblocks)


def _checksum(image: ElementTree.Element) -> tuple[str, str] | None:
    text = (image.get("checksum") or "").strip()
    if not text:
        return None
    algorithm, _, digest = text.partition(":")
    name = CHECKSUMS.get(algorithm.strip().lower())
    if name is None:
        raise XisfError(f"checksum algorithm {algorithm!r} is not supported ({', '.join(CHECKSUMS)})")
    digest = digest.strip().lower()
    if len(digest) != 2 * hashlib.new(name).digest_size or not re.fullmatch(r"[0-9a-f]+", digest):
        raise XisfError(f"checksum {text!r}: the digest is not {hashlib.new(name).digest_size} bytes in hex")
    return algorithm.strip().lower(), digest


def _bounds(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        low, high = (float(p) for p in text.split(":"))
    except ValueError:
        raise XisfError(f"bounds {text!r} is not <low>:<high>") from None
    return low, high


def parse_header(text: str, file_size: int, header_end: int) -> XisfHeader:
    """The ``XisfHeader`` of an XML header ``text`` of a file of ``file_size`` bytes whose
    header ends at byte ``header_end``."""
    if re.search(r"<!(DOCTYPE|ENTITY)", text):
        raise XisfError("the XML header declares a DOCTYPE or entities, which an XISF header may not")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise XisfError(f"malformed XML header ({exc})") from None
    if _local(root.tag) != "xisf":
        raise XisfError(f"the XML header's root element is {_local(root.tag)!r}, not 'xisf'")
    images = _children(root, "Image")
    if not images:
        raise XisfError("the file holds no Image")
    image = images[0]
    width, height, channels = _geometry(image.get("geometry"))
    sample_format = image.get("sampleFormat", "")
    if sample_format not in SAMPLE_FORMATS:
        raise XisfError(f"sampleFormat {sample_format!r} is not supported ({', '.join(SAMPLE_FORMATS)})")
    byte_order = image.get("byteOrder", "little")
    if byte_order not in ("little", "big"):
        raise XisfError(f"byteOrder {byte_order!r} is not 'little' or 'big'")
    dtype = SAMPLE_FORMATS[sample_format].newbyteorder("<" if byte_order == "little" else ">")
    pixel_storage = image.get("pixelStorage", "Planar")
    if pixel_storage not in ("Planar", "Normal"):
        raise XisfError(f"pixelStorage {pixel_storage!r} is not 'Planar' or 'Normal'")
    image_bytes = width * height * channels * dtype.itemsize
    if image_bytes > MAX_IMAGE_BYTES:
        raise XisfError(f"geometry {image.get('geometry')!r} needs {image_bytes} bytes, more than ccdcal reads")
    position, size, inline = _location(image, file_size, header_end)
    compression, subblocks = _compression(image, size, image_bytes)
    problems: list[str] = []
    metadata = [p for m in _children(root, "Metadata") for p in _children(m, "Property")]
    properties = _properties(metadata + _children(root, "Property"), problems)
    properties.update(_properties(_children(image, "Property"), problems))
    cfa_elements = _children(image, "ColorFilterArray")
    cfa = None
    if cfa_elements:
        pattern = (cfa_elements[0].get("pattern") or "").strip().upper()
        cfa = _printable(pattern)[0] or None
    keywords = _keywords(image, properties, cfa, problems)
    return XisfHeader(
        shape=(height, width),
        channels=channels,
        sample_format=sample_format,
        dtype=dtype,
        bounds=_bounds(image.get("bounds")),
        keywords=keywords,
        properties=properties,
        cfa=cfa,
        data_offset=position,
        data_size=size,
        compression=compression,
        checksum=_checksum(image),
        subblocks=subblocks,
        pixel_storage=pixel_storage,
        inline_data=inline,
        problems=tuple(problems),
    )


def read_header(path: str | os.PathLike) -> XisfHeader:
    """The header of an XISF file (its data blocks are not read). XisfError when it is not
    a monolithic XISF 1.0 file ccdcal can read; OSError when it cannot be opened."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        start = handle.read(16)
        if len(start) < 16 or start[:8] != SIGNATURE:
            raise XisfError("not an XISF 1.0 file (no XISF0100 signature)")
        (length,) = struct.unpack("<I", start[8:12])
        if length == 0 or 16 + length > size or length > MAX_HEADER_BYTES:
            raise XisfError(f"truncated file: the XML header is {length} bytes long, the file has {size} bytes")
        raw = handle.read(length)
    try:
        text = raw.decode("utf-8").rstrip("\0 \t\r\n")
    except UnicodeDecodeError as exc:
        raise XisfError(f"the XML header is not UTF-8 ({exc})") from None
    return parse_header(text, size, 16 + length)


def _unshuffle(data: bytes, item: int) -> bytes:
    """Undo XISF byte shuffling: the first bytes of every item, then their second bytes..., the
    bytes after the last whole item left as they are."""
    if item <= 1:
        return data
    count = len(data) // item
    whole = np.frombuffer(data, np.uint8, count * item).reshape(item, count)
    return whole.T.tobytes() + bytes(data[count * item :])


def _decompress(codec: str, data: bytes, size: int) -> bytes:
    """``data`` decompressed by ``codec``; XisfError unless it gives exactly ``size`` bytes."""
    try:
        if codec == "zlib":
            engine = zlib.decompressobj()
            out = engine.decompress(data, size + 1)
        elif codec in ("lz4", "lz4hc"):
            import lz4.block

            if size > 255 * len(data) + 64:  # LZ4 expands at most ~255 times: a false size, not a bomb
                raise XisfError(f"{codec}: {len(data)} bytes cannot hold {size} uncompressed bytes")
            out = lz4.block.decompress(data, uncompressed_size=size)
        else:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                out = reader.read(size + 1)
    except XisfError:
        raise
    except Exception as exc:  # zlib.error, lz4.block.LZ4BlockError, zstandard.ZstdError
        raise XisfError(f"{codec} data cannot be decompressed ({exc})") from None
    if len(out) != size:
        raise XisfError(f"{codec} data decompresses to {len(out)} bytes, the header says {size}")
    return out


def image_from_block(header: XisfHeader, block: bytes | memoryview) -> np.ndarray:
    """The first channel, numpy (ny, nx), in native byte order and the file's sample type,
    from the image's data block as stored (``header.data_size`` bytes): checksum verified
    when declared, decompressed and unshuffled when compressed."""
    if len(block) != header.data_size:
        raise XisfError(f"truncated file: the image data block has {len(block)} of its {header.data_size} bytes")
    if header.checksum is not None:
        algorithm, expected = header.checksum
        got = hashlib.new(CHECKSUMS[algorithm], block).hexdigest()
        if got != expected:
            raise XisfError(f"{algorithm} checksum mismatch of the image data block (header {expected}, data {got})")
    if header.compression is not None:
        codec, _, item = header.compression
        parts, offset = [], 0
        for compressed_size, uncompressed_size in header.subblocks:
            chunk = bytes(block[offset : offset + compressed_size])
            offset += compressed_size
            parts.append(
                chunk if compressed_size == uncompressed_size else _decompress(codec, chunk, uncompressed_size)
            )
        block = _unshuffle(b"".join(parts), item)
    ny, nx = header.shape
    if header.pixel_storage == "Planar" or header.channels == 1:
        samples = np.frombuffer(block, header.dtype, ny * nx).reshape(ny, nx)
    else:
        samples = np.frombuffer(block, header.dtype, ny * nx * header.channels).reshape(ny, nx, header.channels)[..., 0]
    return samples.astype(header.dtype.newbyteorder("="), copy=True)


def read_block(path: str | os.PathLike, header: XisfHeader) -> bytes:
    """The image's data block as stored in the file (``header.data_size`` bytes); XisfError
    when the file ends before it."""
    if header.inline_data is not None:
        return header.inline_data
    with open(path, "rb") as handle:
        handle.seek(header.data_offset)
        block = handle.read(header.data_size)
    if len(block) != header.data_size:
        end = header.data_offset + header.data_size
        raise XisfError(f"truncated file: the image data block ends at byte {end}, the file ends before it")
    return block


def read_image(path: str | os.PathLike, header: XisfHeader | None = None) -> np.ndarray:
    """The first channel of the first image, numpy (ny, nx), native byte order, the file's
    sample type (UInt16 as uint16, Float32 as float32 as stored: no rescaling of 0:1 data).
    The block's checksum is verified when the header declares one. XisfError on a
    truncated file, data that cannot be decompressed, a size or checksum mismatch."""
    header = header or read_header(path)
    return image_from_block(header, read_block(Path(path), header))
