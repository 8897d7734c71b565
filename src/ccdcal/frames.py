"""Reading raw frames.

Raw files are opened read-only and never written; uncompressed images are read with
``os.preadv`` (where the system has none, or ``CCDCAL_PORTABLE_IO`` is set, through a
file object: seek and ``readinto``, see ccdcal.platform_io), compressed ones
(tile-compressed, .gz) decompressed once. XISF files (PixInsight's format, read by
ccdcal.xisf) are opened as ``XisfFrame``, with the same interface (``open_frame`` chooses
by the file's name). Images are
returned as float32 ADU with BZERO/BSCALE applied (16-bit cameras store unsigned data as
BITPIX=16 with BZERO=32768). A frame that cannot be used raises FrameError naming the
file and the problem. The inventory reads headers only (``open_header``): a plain image
file's without astropy (``fits_header``), any other with astropy as ``RawFrame`` does.
Outputs are written by ccdcal.writers.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from . import platform_io
from .camera import HeaderView, card_value_text
from .file_cache import file_digest
from .fits_header import NOT_PRINTABLE, HeaderCards, card_images, header_text, read_simple_header
from .parallel import thread_buffer
from .xisf import XISF_SUFFIX, XisfError, image_from_block, is_xisf_name, read_header

FITS_SUFFIXES = (".fits", ".fit", ".fts")
COMPRESSED_SUFFIXES = (".fz", ".gz")

#: Header cards describing the data layout; never copied from a raw header to an output.
STRUCTURAL_KEYWORDS = {
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "NAXIS3",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "BZERO",
    "BSCALE",
    "BLANK",
    "CHECKSUM",
    "DATASUM",
    "EXTNAME",
    "EXTVER",
    "INHERIT",
    "ZIMAGE",
    "ZBITPIX",
    "ZNAXIS",
    "ZNAXIS1",
    "ZNAXIS2",
    "ZTILE1",
    "ZTILE2",
    "ZCMPTYPE",
    "ZNAME1",
    "ZVAL1",
    "ZNAME2",
    "ZVAL2",
    "ZQUANTIZ",
    "ZDITHER0",
    "ZSIMPLE",
    "ZTENSION",
    "ZEXTEND",
    "ZPCOUNT",
    "ZGCOUNT",
    "TFIELDS",
    "TTYPE1",
    "TFORM1",
}


_BITPIX_DTYPES = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}


class _PortableSource:
    """A raw file read where the system has no ``os.preadv`` (or ``CCDCAL_PORTABLE_IO``):
    an unbuffered file object whose position is moved for each read, so one thread at a
    time reads it."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by RawFrame.close
        self.lock = threading.Lock()

    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def close(self) -> None:
        self.file.close()


def _read_into_buffer(source: int | _PortableSource, offset: int, count: int) -> memoryview:
    """``count`` bytes from ``offset`` (fewer at the end of the file), read into this
    thread's reusable buffer (``thread_buffer``; valid until the thread's next read).
    ``source``: a descriptor (read with ``os.preadv``) or a ``_PortableSource``."""
    view = memoryview(thread_buffer("raw read", (count,), np.uint8))
    got = 0
    if isinstance(source, _PortableSource):
        with source.lock:
            source.file.seek(offset)
            while got < count:
                n = source.file.readinto(view[got:])
                if not n:
                    break
                got += n
        return view[:got]
    while got < count:  # a single read stops short of 2 GiB, or at the end of a truncated file
        n = os.preadv(source, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return view[:got]


def _float32_out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` checked to fit ``shape`` (float32, C-contiguous), or a new array."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(
            f"read(out=): a C-contiguous float32 array of shape {tuple(shape)} is needed, got {out.dtype} {out.shape}"
        )
    return out


class FrameError(Exception):
    """A raw frame that cannot be used; the message names the file and the problem."""


def is_fits_name(name: str) -> bool:
    """True for .fits/.fit/.fts, optionally followed by .fz or .gz (case-insensitive)."""
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            if lower.endswith(FITS_SUFFIXES) or suffix == ".fz":
                return True
    return lower.endswith(FITS_SUFFIXES)


def plain_output_name(rel_path: str) -> str:
    """A raw frame's calibrated (FITS) file: its raw path with a .fz/.gz suffix dropped,
    and an XISF frame's .xisf made .fits (outputs are FITS)."""
    for suffix in COMPRESSED_SUFFIXES:
        if rel_path.lower().endswith(suffix):
            return rel_path[: -len(suffix)]
    if is_xisf_name(rel_path):
        return rel_path[: -len(XISF_SUFFIX)] + ".fits"
    return rel_path


def _image_hdu_index(hdul: fits.HDUList) -> int:
    for index, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            if hdu.header.get("NAXIS", 0) == 2 or (
                isinstance(hdu, fits.CompImageHDU) and hdu.header.get("ZNAXIS", 0) == 2
            ):
                return index
    raise FrameError("no 2-D image in any HDU")


def _printable(match: re.Match) -> str:
    return " " if match.group() in "\t\n\r\v\f" else "?"


def repair_header(header: fits.Header) -> list[str]:
    """Make the cards of ``header`` (as read from a file) readable, in place.

    A card holding a character outside printable ASCII (a tab, a newline, a control byte)
    makes astropy raise VerifyError 'Unparsable card' when its keyword is read: such
    characters become a space (white space) or '?', and the card is parsed again; a card
    still unparsable is removed. Returns what was done ('OBJECT: control characters
    replaced', 'FOO: unparsable card dropped'); a header without such characters costs
    one regular-expression scan of its card images.
    """
    images = [card._image or "" for card in header._cards]  # as read; None for a card made in memory
    if not NOT_PRINTABLE.search("".join(images)):
        return []
    problems = []
    for index in reversed(range(len(images))):  # from the end: a removal keeps earlier indices
        if not NOT_PRINTABLE.search(images[index]):
            continue
        cleaned = NOT_PRINTABLE.sub(_printable, images[index])
        card = fits.Card.fromstring(cleaned)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                card.value  # noqa: B018 - parsing is lazy: this is the check
                keyword = card.keyword
            parsed = True
        except (fits.verify.VerifyError, ValueError):
            keyword, parsed = cleaned[:8].strip(), False
        del header[index]
        if parsed:
            header.insert(index, card)
        problems.append(f"{keyword}: {'control characters replaced' if parsed else 'unparsable card dropped'}")
    return problems[::-1]


def _bitpix_problem(bitpix: Any) -> str:
    return f"BITPIX {bitpix} is not a FITS BITPIX ({', '.join(str(b) for b in _BITPIX_DTYPES)})"


_INTEGER = re.compile(r"[+-]?\d+")
_STRUCTURE_DEFAULTS = {"PCOUNT": "0", "GCOUNT": "1"}  # a primary header has neither


def structure_problem(path: str | os.PathLike) -> str | None:
    """Why the structural cards (BITPIX, NAXIS, NAXISn, PCOUNT, GCOUNT) of the file's
    headers make it unreadable, e.g. "NAXIS1 'abc' is not an integer", read from the
    80-character cards themselves (for a message when astropy cannot open the file);
    None when they look valid or the file cannot be read this way."""
    path = Path(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            while True:
                values = _header_values(handle)
                if values is None:
                    return None
                numbers = {}
                naxis = values.get("NAXIS", "0")
                keys = ["BITPIX", "NAXIS"]
                if _INTEGER.fullmatch(naxis) and 0 <= int(naxis) <= 999:
                    keys += [f"NAXIS{n}" for n in range(1, int(naxis) + 1)]
                for key in [*keys, "PCOUNT", "GCOUNT"]:
                    text = values.get(key, _STRUCTURE_DEFAULTS.get(key))
                    if text is None:
                        return f"{key} missing"
                    if not _INTEGER.fullmatch(text):
                        return f"{key} {text} is not an integer"
                    numbers[key] = int(text)
                if numbers["BITPIX"] not in _BITPIX_DTYPES:
                    return _bitpix_problem(numbers["BITPIX"])
                if not 0 <= numbers["NAXIS"] <= 999:
                    return f"NAXIS {numbers['NAXIS']} is not a FITS NAXIS (0 to 999)"
                lengths = [numbers[k] for k in keys[2:]]
                negative = next((k for k in keys[2:] if numbers[k] < 0), None)
                if negative:
                    return f"{negative} {numbers[negative]} is not an axis length (0 or more)"
                size = (
                    abs(numbers["BITPIX"])
                    // 8
                    * numbers["GCOUNT"]
                    * (numbers["PCOUNT"] + (math.prod(lengths) if lengths else 0))
                )
                handle.seek(-(-size // 2880) * 2880, os.SEEK_CUR)  # the data, to the next header
    except (OSError, EOFError, ValueError):
        return None


def _header_values(handle) -> dict[str, str] | None:
    """keyword -> value as written (``camera.card_value_text``) of the header at the
    file's position (``fits_header.header_text``); None at the end of the file or when no
    FITS header starts there."""
    found = header_text(handle)
    if found is None:
        return None
    values: dict[str, str] = {}
    for image in card_images(*found):
        values.setdefault(image[:8].strip(), card_value_text(image))
    return values


class _OpenFile:
    """What ``RawFrame`` and ``XisfFrame`` share: the file's SHA-256 (from the bytes of a
    whole read when one hashed them), the source their rows are read from (``_fd``: a
    descriptor for ``os.preadv``, or a ``_PortableSource``) and its closing."""

    path: Path
    _fd: int | _PortableSource | None
    _digest: str | None
    _cache: np.ndarray | None

    def _source_size(self) -> int:
        """Bytes in the open source's file."""
        return self._fd.size() if isinstance(self._fd, _PortableSource) else os.fstat(self._fd).st_size

    def digest(self, length: int = 16) -> str:
        """First ``length`` hex digits of the SHA-256 of the file (as ``file_digest``); from
        the bytes of a whole-image ``read`` when there was one, so the file is read once."""
        if self._digest is None:
            return file_digest(self.path, length)
        return self._digest[:length]

    def close(self) -> None:
        if isinstance(self._fd, _PortableSource):
            self._fd.close()
        elif self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._cache = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawFrame(_OpenFile):
    """A raw FITS frame opened read-only.

    ``header`` looks keywords up in the image HDU then the primary header; cards with
    characters a header may not hold were repaired on opening (``header_problems`` says
    which, see ``repair_header``).
    ``shape`` is the numpy (ny, nx) of the image; ``read(rows)`` returns float32 ADU.
    With ``digest_on_read``, a read of the whole image reads the whole file and hashes it
    (``digest()``), so a frame calibrated in one piece is read once, not twice.
    """

    def __init__(self, path: str | os.PathLike, label: str | None = None, digest_on_read: bool = False):
        self.path = Path(path)
        self.label = label or str(path)
        self._digest_on_read = digest_on_read
        self._hdul = None
        # uncompressed images are read with os.preadv, or through a file object (platform_io)
        self._fd: int | _PortableSource | None = None
        try:
            # memmap=False: astropy refuses to memory-map scaled (BZERO) data, which broke
            # reading .gz and tile-compressed uint16 frames; uncompressed images are
            # memory-mapped below with np.memmap instead (header-only inventory stays cheap).
            with warnings.catch_warnings():  # a truncated file is reported by check_complete
                warnings.filterwarnings("ignore", message="File may have been truncated")
                self._hdul = fits.open(self.path, mode="readonly", memmap=False, lazy_load_hdus=True)
                self.hdu_index = _image_hdu_index(self._hdul)
            #: What was wrong in the headers and was repaired ('KEYWORD: ...'), see repair_header.
            self.header_problems: list[str] = repair_header(self._hdul[0].header)
            if self.hdu_index:
                extension = repair_header(self._hdul[self.hdu_index].header)
                self.header_problems = list(dict.fromkeys(self.header_problems + extension))
            self.hdu = self._hdul[self.hdu_index]
            primary = self._hdul[0].header if self.hdu_index else None
            self.primary_header = self._hdul[0].header
            self.image_header = self.hdu.header
            self.header = HeaderView(self.hdu.header, primary)
            self.shape = tuple(self.hdu.shape)
            self.bitpix = int(self.hdu.header.get("ZBITPIX", self.hdu.header.get("BITPIX")))
            if self.bitpix not in _BITPIX_DTYPES:
                raise FrameError(f"not a readable FITS file ({_bitpix_problem(self.bitpix)})")
            if not isinstance(self.hdu, fits.CompImageHDU) and self.path.suffix.lower() not in COMPRESSED_SUFFIXES:
                self._dtype = _BITPIX_DTYPES[self.bitpix]
                self._bzero = float(self.hdu.header.get("BZERO", 0) or 0)
                self._bscale = float(self.hdu.header.get("BSCALE", 1) or 1)
                self._offset = self._hdul.fileinfo(self.hdu_index)["datLoc"]
                if platform_io.POSITIONAL_READS:
                    self._fd = os.open(self.path, os.O_RDONLY | platform_io.O_CLOEXEC)
                else:
                    self._fd = _PortableSource(self.path)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
            if self._hdul is not None:  # opened but unusable (no 2-D image): release the file
                self._hdul.close()
            if isinstance(exc, FrameError):
                raise FrameError(f"{self.label}: {exc}") from None
            # astropy's own message can be cryptic ("unsupported operand type(s) for +: 'int'
            # and 'str'" for NAXIS1 = 'abc'): say which structural card is wrong when one is
            why = structure_problem(self.path) or exc
            raise FrameError(f"{self.label}: not a readable FITS file ({why})") from None
        self._cache: np.ndarray | None = None
        self._digest: str | None = None  # SHA-256 of the file, when a read of it gave it
        self._lock = threading.Lock()

    def check_complete(self) -> None:
        """Raise FrameError when the file is shorter than its header says (truncated)."""
        if self.path.suffix.lower() in COMPRESSED_SUFFIXES:
            return
        info = self._hdul.fileinfo(self.hdu_index)
        needed = info["datLoc"] + self.hdu.size  # .size is in bytes
        actual = self.path.stat().st_size
        if actual < needed:
            raise FrameError(f"{self.label}: truncated FITS file ({actual} bytes, the header needs {needed})")

    def read(self, rows: slice | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Image rows as a new float32 array in ADU (BZERO/BSCALE applied), or written into
        ``out`` (float32, C-contiguous, of the rows' shape) and returned.

        Uncompressed images are read with ``os.preadv``: only the requested rows, no shared
        file position (safe from several threads) and no memory map (a file truncated while
        mapped would kill the process with SIGBUS); without it (ccdcal.platform_io), the
        same rows through a file object, one thread at a time. A whole-file read hashed on the way
        (``digest_on_read``) goes through a per-thread buffer reused from frame to frame.
        """
        start, stop, _ = (rows or slice(None)).indices(self.shape[0])
        try:
            if self._fd is not None:
                ny, nx = self.shape
                row_bytes = nx * self._dtype.itemsize
                count = max(stop - start, 0) * row_bytes
                if self._digest_on_read and start == 0 and stop == ny:  # the file, hashed too
                    size = self._source_size()
                    buffer = _read_into_buffer(self._fd, 0, size)
                    self._digest = hashlib.sha256(buffer).hexdigest()
                    data_start = self._offset
                else:
                    buffer = _read_into_buffer(self._fd, self._offset + start * row_bytes, count)
                    data_start = 0
                if len(buffer) < data_start + count:
                    raise FrameError(f"{self.label}: truncated FITS file (rows {start}-{stop} missing)")
                raw = np.frombuffer(
                    buffer, dtype=self._dtype, count=count // self._dtype.itemsize, offset=data_start
                ).reshape(-1, nx)
                out = _float32_out(out, raw.shape)
                if self._bscale != 1.0:
                    np.multiply(raw, np.float32(self._bscale), out=out, dtype=np.float32, casting="unsafe")
                    out += np.float32(self._bzero)
                else:  # one pass: integer -> float32 with BZERO added (exact below 2**24)
                    np.add(raw, np.float32(self._bzero), out=out, dtype=np.float32, casting="unsafe")
                return out
            with self._lock:  # compressed: decompress once, keep in memory
                if self._cache is None:
                    self._cache = np.asarray(self.hdu.data, dtype=np.float32)
            rows_read = self._cache[start:stop]
            out = _float32_out(out, rows_read.shape)
            out[...] = rows_read
            return out
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(f"{self.label}: cannot read image data ({exc})") from None

    @property
    def integer_max(self) -> float | None:
        """Largest raw value the file format can hold (65535 for BZERO=32768 16-bit), or None for floats."""
        if self.bitpix < 0:
            return None
        bzero = float(self.image_header.get("BZERO", 0) or 0)
        bscale = float(self.image_header.get("BSCALE", 1) or 1)
        return (2 ** (self.bitpix - 1) - 1) * bscale + bzero

    def close(self) -> None:
        super().close()
        self._hdul.close()


class FrameHeader:
    """The header of a raw frame read by ``fits_header.read_simple_header`` (one image in
    the primary HDU, nothing to repair, the file complete): what the inventory reads of a
    ``RawFrame``, without its image."""

    hdu_index = 0

    def __init__(self, cards: HeaderCards, shape: tuple[int, int], bitpix: int):
        self.header = HeaderView(cards)
        self.primary_header = self.image_header = cards
        self.header_problems: list[str] = []
        self.shape, self.bitpix = shape, bitpix

    def check_complete(self) -> None:
        """Nothing to do: ``read_simple_header`` reads complete files only."""

    def __enter__(self) -> FrameHeader:
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_header(path: str | os.PathLike, label: str | None = None) -> FrameHeader | RawFrame | XisfFrame:
    """The frame's headers, for reading them only: an ``XisfFrame`` for a .xisf name (its
    XML header only is read), a ``FrameHeader`` when ``fits_header.read_simple_header`` can
    be sure to read its file as astropy does (never a compressed one: .fz, .gz), else a
    ``RawFrame`` (FrameError naming the file and the problem when it cannot be used)."""
    if is_xisf_name(Path(path).name):
        return XisfFrame(path, label)
    compressed = Path(path).suffix.lower() in COMPRESSED_SUFFIXES
    simple = None if compressed else read_simple_header(path)
    return RawFrame(path, label) if simple is None else FrameHeader(*simple)


_XISF_BITPIX = {"UInt8": 8, "UInt16": 16, "UInt32": 32, "Float32": -32, "Float64": -64}
_XISF_INTEGER_MAX = {"UInt8": 255.0, "UInt16": 65535.0, "UInt32": 4294967295.0}


class XisfFrame(_OpenFile):
    """A raw XISF frame (PixInsight's format) opened read-only, with ``RawFrame``'s interface.

    Read by ccdcal's own reader (``ccdcal.xisf``): the first image of the file, which must
    have one channel (a raw mono or CFA frame). ``header`` reads the file's FITSKeyword
    table (``primary_header`` and ``image_header`` are that same astropy Header; XISF
    properties fill the keywords it lacks, see ``ccdcal.xisf``); ``bitpix`` is the FITS
    equivalent of the sample format (UInt16 -> 16, Float32 -> -32); ``read(rows)`` returns
    float32 ADU as stored (unsigned integers need no BZERO; floats, often in 0:1, are not
    rescaled). An uncompressed image is read row by row as ``RawFrame`` reads one; a
    compressed one, or one whose block declares a checksum (which needs the whole block),
    is decoded once and kept. The file is opened when first read.
    """

    hdu_index = 0

    def __init__(self, path: str | os.PathLike, label: str | None = None, digest_on_read: bool = False):
        self.path = Path(path)
        self.label = label or str(path)
        self._digest_on_read = digest_on_read
        self._fd: int | _PortableSource | None = None
        try:
            self.xisf = read_header(self.path)
        except XisfError as exc:
            raise FrameError(f"{self.label}: not a readable XISF file ({exc})") from None
        except OSError as exc:
            raise FrameError(f"{self.label}: cannot be read ({exc.strerror or exc})") from None
        if self.xisf.channels != 1:
            raise FrameError(
                f"{self.label}: colour image ({self.xisf.channels} channels): ccdcal calibrates raw mono or CFA frames"
            )
        self.primary_header = self.image_header = self.xisf.keywords
        self.header = HeaderView(self.xisf.keywords)
        #: What was wrong in the metadata and was repaired or skipped ('KEYWORD: ...').
        self.header_problems: list[str] = list(self.xisf.problems)
        self.shape: tuple[int, int] = self.xisf.shape
        self.bitpix = _XISF_BITPIX[self.xisf.sample_format]
        self._rows_readable = (
            self.xisf.compression is None and self.xisf.checksum is None and self.xisf.inline_data is None
        )
        self._cache: np.ndarray | None = None
        self._digest: str | None = None
        self._lock = threading.Lock()

    def check_complete(self) -> None:
        """Raise FrameError when the file ends before its image data block does (truncated)."""
        if self.xisf.inline_data is not None:
            return
        needed = self.xisf.data_offset + self.xisf.data_size
        actual = self.path.stat().st_size
        if actual < needed:
            raise FrameError(f"{self.label}: truncated XISF file ({actual} bytes, the header needs {needed})")

    def _source(self) -> int | _PortableSource:
        if self._fd is None:
            if platform_io.POSITIONAL_READS:
                self._fd = os.open(self.path, os.O_RDONLY | platform_io.O_CLOEXEC)
            else:
                self._fd = _PortableSource(self.path)
        return self._fd

    def _decoded(self) -> np.ndarray:
        """The whole image decoded (checksum verified, decompressed), kept for later reads."""
        if self._cache is None:
            header = self.xisf
            if header.inline_data is not None:
                block: bytes | memoryview = header.inline_data
            elif self._digest_on_read:  # the file, hashed too: read once
                source = self._source()
                buffer = _read_into_buffer(source, 0, self._source_size())
                self._digest = hashlib.sha256(buffer).hexdigest()
                block = buffer[header.data_offset : header.data_offset + header.data_size]
            else:
                block = _read_into_buffer(self._source(), header.data_offset, header.data_size)
            self._cache = image_from_block(header, block)
        return self._cache

    def read(self, rows: slice | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Image rows as a new float32 array in ADU (as stored), or written into ``out``
        (float32, C-contiguous, of the rows' shape) and returned. FrameError naming the
        file when the data are truncated, cannot be decompressed or fail their checksum."""
        start, stop, _ = (rows or slice(None)).indices(self.shape[0])
        ny, nx = self.shape
        try:
            if self._rows_readable and not (self._digest_on_read and start == 0 and stop == ny):
                dtype = self.xisf.dtype
                row_bytes = nx * dtype.itemsize
                count = max(stop - start, 0) * row_bytes
                buffer = _read_into_buffer(self._source(), self.xisf.data_offset + start * row_bytes, count)
                if len(buffer) < count:
                    raise FrameError(f"{self.label}: truncated XISF file (rows {start}-{stop} missing)")
                raw = np.frombuffer(buffer, dtype=dtype, count=count // dtype.itemsize).reshape(-1, nx)
            else:
                with self._lock:
                    raw = self._decoded()[start:stop]
            out = _float32_out(out, raw.shape)
            np.copyto(out, raw, casting="unsafe")
            return out
        except FrameError:
            raise
        except XisfError as exc:
            raise FrameError(f"{self.label}: {exc}") from None
        except Exception as exc:
            raise FrameError(f"{self.label}: cannot read image data ({exc})") from None

    @property
    def integer_max(self) -> float | None:
        """Largest raw value the sample format holds (65535 for UInt16), or None for floats."""
        return _XISF_INTEGER_MAX.get(self.xisf.sample_format)


def is_frame_name(name: str) -> bool:
    """True for a raw frame's name: a FITS name (``is_fits_name``) or .xisf (any case)."""
    return is_fits_name(name) or is_xisf_name(name)


def open_frame(path: str | os.PathLike, label: str | None = None, digest_on_read: bool = False) -> RawFrame | XisfFrame:
    """A raw frame opened read-only: an ``XisfFrame`` for a .xisf name, else a ``RawFrame``
    (FrameError naming the file and the problem when it cannot be used)."""
    if is_xisf_name(Path(path).name):
        return XisfFrame(path, label, digest_on_read)
    return RawFrame(path, label, digest_on_read)


def copy_header_cards(target: fits.Header, *sources: fits.Header) -> None:
    """Copy non-structural cards (primary first, then the image HDU's, which wins)."""
    for source in sources:
        if source is None:
            continue
        for card in source.cards:
            key = card.keyword
            if not key or key in STRUCTURAL_KEYWORDS or key in ("COMMENT", "HISTORY"):
                continue
            try:
                target[key] = (card.value, card.comment)
            except (ValueError, fits.verify.VerifyError):
                continue  # a malformed raw card is dropped rather than sinking the output
