"""Reading raw frames and writing outputs.

Raw files are opened read-only (memory-mapped when uncompressed) and never written.
Images are returned as float32 ADU with BZERO/BSCALE applied (16-bit cameras store
unsigned data as BITPIX=16 with BZERO=32768). Outputs are written to a temporary file
in the destination folder and renamed into place, so they appear complete or not at all.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import io
import math
import mmap
import os
import queue
import re
import secrets
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy.io import fits

from .camera import HeaderView, card_value_text
from .parallel import thread_buffer

FITS_SUFFIXES = (".fits", ".fit", ".fts")
COMPRESSED_SUFFIXES = (".fz", ".gz")

#: Header cards describing the data layout; never copied from a raw header to an output.
STRUCTURAL_KEYWORDS = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
    "PCOUNT", "GCOUNT", "BZERO", "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "EXTNAME",
    "EXTVER", "INHERIT", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZTILE1",
    "ZTILE2", "ZCMPTYPE", "ZNAME1", "ZVAL1", "ZNAME2", "ZVAL2", "ZQUANTIZ", "ZDITHER0",
    "ZSIMPLE", "ZTENSION", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "TFIELDS", "TTYPE1", "TFORM1",
}


_BITPIX_DTYPES = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}


def _read_into_buffer(fd: int, offset: int, count: int) -> memoryview:
    """``count`` bytes from ``offset`` (fewer at the end of the file), read into this
    thread's reusable buffer (``thread_buffer``; valid until the thread's next read)."""
    view = memoryview(thread_buffer("raw read", (count,), np.uint8))
    got = 0
    while got < count:  # a single read stops short of 2 GiB, or at the end of a truncated file
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return view[:got]


def _float32_out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` checked to fit ``shape`` (float32, C-contiguous), or a new array."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"read(out=): a C-contiguous float32 array of shape {tuple(shape)} is needed, "
                         f"got {out.dtype} {out.shape}")
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


def _image_hdu_index(hdul: fits.HDUList) -> int:
    for index, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            if hdu.header.get("NAXIS", 0) == 2 or (
                isinstance(hdu, fits.CompImageHDU) and hdu.header.get("ZNAXIS", 0) == 2
            ):
                return index
    raise FrameError("no 2-D image in any HDU")


#: A character a FITS header card may not hold: only printable ASCII (0x20-0x7E) is allowed.
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


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
    if not _NOT_PRINTABLE.search("".join(images)):
        return []
    problems = []
    for index in reversed(range(len(images))):  # from the end: a removal keeps earlier indices
        if not _NOT_PRINTABLE.search(images[index]):
            continue
        cleaned = _NOT_PRINTABLE.sub(_printable, images[index])
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
                size = (abs(numbers["BITPIX"]) // 8 * numbers["GCOUNT"]
                        * (numbers["PCOUNT"] + (math.prod(lengths) if lengths else 0)))
                handle.seek(-(-size // 2880) * 2880, os.SEEK_CUR)  # the data, to the next header
    except (OSError, EOFError, ValueError):
        return None


def _header_values(handle) -> dict[str, str] | None:
    """keyword -> value as written (``camera.card_value_text``) of the header at the
    file's position, read in 2880-byte blocks up to END; None at the end of the file or
    when no FITS header starts there."""
    values: dict[str, str] = {}
    while True:
        block = handle.read(2880)
        if len(block) < 2880:
            return None
        text = block.decode("ascii", "replace")
        for start in range(0, 2880, 80):
            image = text[start:start + 80]
            keyword = image[:8].strip()
            if not values and start == 0 and keyword not in ("SIMPLE", "XTENSION"):
                return None
            if keyword == "END":
                return values
            values.setdefault(keyword, card_value_text(image))


class RawFrame:
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
        self._fd: int | None = None  # uncompressed images are read with os.pread
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
                self._fd = os.open(self.path, os.O_RDONLY)
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
            raise FrameError(
                f"{self.label}: truncated FITS file ({actual} bytes, the header needs {needed})"
            )

    def read(self, rows: slice | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Image rows as a new float32 array in ADU (BZERO/BSCALE applied), or written into
        ``out`` (float32, C-contiguous, of the rows' shape) and returned.

        Uncompressed images are read with ``os.pread``: only the requested rows, no shared
        file position (safe from several threads) and no memory map (a file truncated while
        mapped would kill the process with SIGBUS). A whole-file read hashed on the way
        (``digest_on_read``) goes through a per-thread buffer reused from frame to frame.
        """
        start, stop, _ = (rows or slice(None)).indices(self.shape[0])
        try:
            if self._fd is not None:
                ny, nx = self.shape
                row_bytes = nx * self._dtype.itemsize
                count = max(stop - start, 0) * row_bytes
                if self._digest_on_read and start == 0 and stop == ny:  # the file, hashed too
                    buffer = _read_into_buffer(self._fd, 0, os.fstat(self._fd).st_size)
                    self._digest = hashlib.sha256(buffer).hexdigest()
                    data_start = self._offset
                else:
                    buffer = _read_into_buffer(self._fd, self._offset + start * row_bytes, count)
                    data_start = 0
                if len(buffer) < data_start + count:
                    raise FrameError(f"{self.label}: truncated FITS file (rows {start}-{stop} missing)")
                raw = np.frombuffer(buffer, dtype=self._dtype, count=count // self._dtype.itemsize,
                                    offset=data_start).reshape(-1, nx)
                out = _float32_out(out, raw.shape)
                if self._bscale != 1.0:
                    np.multiply(raw, np.float32(self._bscale), out=out, dtype=np.float32,
                                casting="unsafe")
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

    def digest(self, length: int = 16) -> str:
        """First ``length`` hex digits of the SHA-256 of the file (as ``file_digest``); from
        the bytes of a whole-image ``read`` when there was one, so the file is read once."""
        if self._digest is None:
            return file_digest(self.path, length)
        return self._digest[:length]

    @property
    def integer_max(self) -> float | None:
        """Largest raw value the file format can hold (65535 for BZERO=32768 16-bit), or None for floats."""
        if self.bitpix < 0:
            return None
        bzero = float(self.image_header.get("BZERO", 0) or 0)
        bscale = float(self.image_header.get("BSCALE", 1) or 1)
        return (2 ** (self.bitpix - 1) - 1) * bscale + bzero

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._cache = None
        self._hdul.close()

    def __enter__(self) -> "RawFrame":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


class _HandedToDisk:
    """A binary file-like over an open file, for astropy's writer: every large piece
    written (an image plane) is handed to the disk and dropped from the page cache at
    once (``posix_fadvise`` DONTNEED), so that no more than one plane per writer is dirty
    at a time. astropy writes the planes of a file-like object with ``write(memoryview)``
    (no copy)."""

    #: Pieces smaller than this (headers, padding) are left to the kernel.
    LARGE = 1 << 20

    def __init__(self, handle) -> None:
        self._handle = handle
        self._advise = True
        self.name = handle.name
        self.mode = "wb"

    def write(self, data) -> int:
        written = self._handle.write(data)
        if written >= self.LARGE and self._advise:
            self._handle.flush()
            try:
                os.posix_fadvise(self._handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:  # advice only: a file system that does not take it is written as usual
                self._advise = False
        return written

    def flush(self) -> None:
        self._handle.flush()

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)


def _temporary_beside(path: Path, direct: bool = False) -> tuple[int, str, bool]:
    """A new hidden file in ``path``'s folder (made if missing), open for writing, with
    the permissions any new file gets (0666 less the umask, as the kernel applies it;
    ``tempfile.mkstemp`` would make it 0600, readable by its owner alone). With
    ``direct``, opened with O_DIRECT where the system and file system allow it; the third
    value says whether it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    o_direct = getattr(os, "O_DIRECT", 0) if direct else 0
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            if o_direct:
                try:
                    return os.open(tmp, flags | o_direct, 0o666), tmp, True
                except OSError as exc:  # EINVAL: a file system without O_DIRECT (older tmpfs, some FUSE)
                    if exc.errno != errno.EINVAL:
                        raise
                    Path(tmp).unlink(missing_ok=True)
                    o_direct = 0
            return os.open(tmp, flags, 0o666), tmp, False
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


_STAGING = threading.local()


def _run_task(task: Callable[[], Any], future: Future) -> None:
    """Run ``task``, its result or exception into ``future``."""
    try:
        future.set_result(task())
    except BaseException as exc:  # handed to whoever waits on the file
        future.set_exception(exc)


class _WriteAtOnce:
    """The writer of a file written by the thread that makes it: that thread's own
    staging chunk, and every task run on the spot (see ``BackgroundWriter``)."""

    def take_chunk(self) -> mmap.mmap:
        staging = getattr(_STAGING, "buffer", None)
        if staging is None:
            staging = _STAGING.buffer = mmap.mmap(-1, _DirectWriter.CHUNK)  # page-aligned
        return staging

    def give_back(self, chunk: mmap.mmap) -> None:
        pass

    def submit(self, task: Callable[[], Any]) -> Future:
        future: Future = Future()
        _run_task(task, future)
        return future


class _DirectWriter:
    """A binary file-like for astropy's writer over a descriptor opened with O_DIRECT:
    the bytes go from an aligned buffer straight to the disk, not through the page cache.

    On a VM (and on a busy node) copying a light's 150 MB into the page cache costs more
    CPU than calibrating it, and a night's gigabytes of dirty pages get the writer
    throttled; nothing reads the calibrated light again soon. What astropy writes is
    gathered into a page-aligned staging buffer of CHUNK bytes, written whole; the last
    write is padded to DIRECT_ALIGN and the file cut to its length, so the file is byte
    for byte what a plain write gives. Where a write is refused (EINVAL: alignment the
    file system does not take), O_DIRECT is turned off and the rest written as usual.

    The chunks are taken from and handed to a ``writer``: a ``BackgroundWriter`` (its
    pool, its thread writes them), or by default ``_WriteAtOnce`` (this thread's own
    chunk, written on the spot). A write that fails is kept and raised by ``finish``.
    """

    CHUNK = 8 << 20
    #: File offsets, lengths and memory of O_DIRECT writes are multiples of this
    #: (4 KiB covers devices with 512-byte and 4 KiB logical blocks).
    DIRECT_ALIGN = 4096

    def __init__(self, fd: int, name: str, writer: BackgroundWriter | _WriteAtOnce) -> None:
        self._fd = fd
        self.name = name
        self.mode = "wb"
        self.size = 0
        self.direct = True
        self._writer = writer
        self._error: BaseException | None = None  # the first failed write
        self._take_staging()

    def _take_staging(self) -> None:
        self._staging = self._writer.take_chunk()
        self._bytes = np.frombuffer(self._staging, dtype=np.uint8)
        self._fill = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n, done = len(view), 0
        while done < n:
            take = min(self.CHUNK - self._fill, n - done)
            self._bytes[self._fill: self._fill + take] = np.frombuffer(view[done: done + take], dtype=np.uint8)
            self._fill += take
            done += take
            if self._fill == self.CHUNK:
                self._hand_over(self.CHUNK)
        self.size += n
        return n

    def _hand_over(self, length: int, last: bool = False) -> None:
        """Hand the staging buffer's first ``length`` bytes to the writer (and, unless
        ``last``, take the next chunk)."""
        staging, writer = self._staging, self._writer

        def write_chunk() -> None:
            try:
                if self._error is None:
                    self._write_staged(staging, length)
            except BaseException as exc:
                self._error = exc
            finally:
                writer.give_back(staging)

        self._bytes = self._staging = None
        writer.submit(write_chunk)
        if not last:
            self._take_staging()

    def _give_back_staging(self) -> None:
        if self._staging is not None:
            self._writer.give_back(self._staging)
            self._bytes = self._staging = None

    def _write_staged(self, staging: mmap.mmap, length: int) -> None:
        view = memoryview(staging)[:length]
        done = 0
        try:
            while done < length:
                try:
                    done += os.write(self._fd, view[done:])
                except OSError as exc:
                    if exc.errno != errno.EINVAL or not self.direct:
                        raise
                    fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                    self.direct = False
        finally:
            view.release()

    def finish(self, path: Path) -> Future:
        """Write what is left (padded to the alignment; the file is then cut to its
        length), close the file and rename it to ``path``; on any failure remove it. The
        Future (done at once with ``_WriteAtOnce``) gives ``path`` or the error."""
        length = -(-self._fill // self.DIRECT_ALIGN) * self.DIRECT_ALIGN
        self._bytes[self._fill: length] = 0  # cut off again when O_DIRECT was turned off
        if self._fill:
            self._hand_over(length, last=True)
        self._give_back_staging()
        return self._writer.submit(lambda: self._close(path))

    def abandon(self) -> None:
        """Close and remove the file (after its chunks are written)."""
        self._give_back_staging()
        self._writer.submit(lambda: self._close(None))

    def _close(self, path: Path | None) -> Path | None:
        """Close the file and rename it to ``path``; with None, remove it."""
        try:
            try:
                if path is not None and self._error is not None:
                    raise self._error
                if path is not None:
                    os.ftruncate(self._fd, self.size)
            finally:
                os.close(self._fd)
            if path is not None:
                os.replace(self.name, path)
        except BaseException:
            Path(self.name).unlink(missing_ok=True)
            raise
        if path is None:
            Path(self.name).unlink(missing_ok=True)
        return path

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        if (whence == 0 and offset == self.size) or (whence in (1, 2) and offset == 0):
            return self.size
        raise io.UnsupportedOperation("a file written around the page cache is written in order")


class BackgroundWriter:
    """One thread that finishes the files handed to it (``write_fits_atomic(writer=...)``):
    their disk writes, closing and renaming into place, in the order handed. The threads
    that make the files go on with their next frame meanwhile: a 2048^2 light's 38 MB
    keep the disk ~17 ms, half of what calibrating it takes, and a light job whose
    threads each waited for their own writes kept neither the cores nor the disk busy.

    The bytes pass in staging chunks of ``_DirectWriter.CHUNK`` from a pool of ``chunks``
    (``chunks`` x 8 MiB of memory, whatever the size and number of frames); a maker waits
    for a chunk only when all are queued, i.e. when the disk is what limits. The pool is
    a stack, so a writer that keeps up touches the memory of few chunks.

    A context manager: leaving it waits until every file handed is written (or has
    failed; each file's Future says which).
    """

    #: Staging chunks in the pool, and the memory they take (MiB).
    CHUNKS = 8
    POOL_MB = CHUNKS * _DirectWriter.CHUNK >> 20

    def __init__(self, chunks: int = CHUNKS) -> None:
        self._free: queue.LifoQueue = queue.LifoQueue()
        for _ in range(chunks):
            self._free.put(mmap.mmap(-1, _DirectWriter.CHUNK))  # page-aligned, as O_DIRECT needs
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ccdcal-writer", daemon=True)
        self._thread.start()

    def take_chunk(self) -> mmap.mmap:
        """A free staging chunk (waits while all are queued)."""
        return self._free.get()

    def give_back(self, chunk: mmap.mmap) -> None:
        self._free.put(chunk)

    def submit(self, task: Callable[[], Any]) -> Future:
        """Run ``task`` on the writer's thread after everything handed before it."""
        future: Future = Future()
        self._tasks.put((task, future))
        return future

    def _run(self) -> None:
        while (item := self._tasks.get()) is not None:
            _run_task(*item)

    def close(self) -> None:
        """Wait for everything handed, then end the thread."""
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() or not os.path.ismount(path):
        if path.parent == path:
            break
        path = path.parent
    return path


#: astropy's words for a write the disk took only part of (an OSError with no errno).
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def disk_full(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """When ``exc`` is, or masks, a full disk or quota, an OSError that says so plainly for
    ``path`` (its cause the disk's own error), else None. Raise it as it is. (astropy
    reports a full disk as '1000000 requested and 261424 written', with no errno, and its
    clean-up then raises an AttributeError over it.)"""
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes and contexts
        if seen is None:
            return None
        if isinstance(seen, OSError) and (seen.errno in (errno.ENOSPC, errno.EDQUOT) or (
                seen.errno is None and _SHORT_WRITE.match(str(seen)))):
            code = errno.EDQUOT if seen.errno == errno.EDQUOT else errno.ENOSPC
            what = "no quota" if code == errno.EDQUOT else "no space"
            error = OSError(code, f"{what} left on the file system at {_mount_point(Path(path))} "
                                  f"(writing {path}); free some space and run the same command again")
            error.__cause__ = seen  # the disk's own error, not what masked it
            return error
        seen = seen.__cause__ or seen.__context__
    return None


def write_fits_atomic(hdul: fits.HDUList, path: str | os.PathLike, checksum: bool = True,
                      drop_cache: bool = False, writer: BackgroundWriter | None = None) -> Future | None:
    """``_write_fits_atomic`` (below), a full disk reported as such."""
    try:
        return _write_fits_atomic(hdul, path, checksum, drop_cache, writer)
    except Exception as exc:
        full = disk_full(exc, path)
        if full is None:
            raise
        raise full


def _write_fits_atomic(hdul: fits.HDUList, path: str | os.PathLike, checksum: bool = True,
                       drop_cache: bool = False, writer: BackgroundWriter | None = None) -> Future | None:
    """Write ``hdul`` to ``path`` via a temporary file in the same folder and a rename.

    CHECKSUM/DATASUM cards are added unless ``checksum`` is False; nothing time-dependent
    is written. ``drop_cache``, for outputs nothing reads again soon: the file is written
    around the page cache (O_DIRECT, ``_DirectWriter``), or where the file system does not
    allow that, each image plane is handed to the disk and dropped from the page cache as
    soon as it is written (``posix_fadvise`` DONTNEED). Either way a night's gigabytes of
    dirty pages do not hold up the writer (Linux throttles writers by their dirty pages).

    With a ``writer`` (``drop_cache`` implied) this returns once the file's bytes are
    made: the disk writes and the rename are the writer's (``BackgroundWriter``), and the
    Future returned gives ``path`` once the file is in place, or raises what went wrong.
    Without one the file is in place on return (None).
    """
    path = Path(path)
    for hdu in hdul if checksum else ():
        # astropy's default comment is the wall-clock time: give a fixed one instead
        hdu.add_checksum(when="FITS checksum")
    drop_cache = drop_cache or writer is not None
    fd, tmp, direct = _temporary_beside(path, direct=drop_cache)
    if direct:
        try:
            out = _DirectWriter(fd, tmp, writer or _WriteAtOnce())
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            hdul.writeto(out, checksum=False)
        except BaseException:
            out.abandon()
            raise
        finished = out.finish(path)
        if writer is None:
            finished.result()  # in place, or its error raised
            return None
        return finished
    try:
        with os.fdopen(fd, "wb") as handle:
            dropping = drop_cache and hasattr(os, "posix_fadvise")
            hdul.writeto(_HandedToDisk(handle) if dropping else handle, checksum=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if writer is None:
        return None
    done: Future = Future()
    done.set_result(path)
    return done


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write text (UTF-8, newlines as they are) to ``path`` atomically (``write_bytes_atomic``)."""
    write_bytes_atomic(text.encode("utf-8"), path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically (a full disk reported as such)."""
    path = Path(path)
    fd, tmp, _ = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full(exc, path) if isinstance(exc, Exception) else None
        if full is None:
            raise
        raise full


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
