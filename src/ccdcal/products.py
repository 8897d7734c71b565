"""The file format of everything ccdcal writes (masters and calibrated frames).

One FITS file: the image (float32, ADU, or dimensionless for a master flat) in the primary
HDU, then ``UNCERT`` (float32, 1-sigma in the same unit) and ``MASK`` (uint8 bit flags).

Compressed products (``output.compression`` rice or gzip, calibrated lights only; named
``.fits.fz``) are FITS tile-compressed as fpack writes them: a primary HDU with the
product's header and no data, then the image (``SCI``), ``UNCERT`` and ``MASK`` as
compressed image extensions (``CompImageHDU``; the image extension carries the product's
header too). Integer planes (MASK, an image in the raw file's integer type) are
compressed losslessly; float planes are quantized with ``quantize_level`` levels per
noise sigma (the noise is estimated per tile, i.e. per row), subtractive dither method 2
(exact zeros kept) with a fixed seed, so the same planes always give the same bytes. The
quantization adds noise q/sqrt(12), q = sigma/quantize_level: at the default 32, 0.9 % of
the pixel noise, which then grows by 0.004 % in quadrature. Read them with
``read_product``, ``astropy.io.fits.open`` or ``CCDData.read(path, hdu="SCI")``.
"""

from __future__ import annotations

import functools
import gzip
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import numpy as np
from astropy.io import fits

from .file_cache import file_digest
from .frames import FrameError
from .writers import BackgroundWriter, write_fits_atomic

#: MASK bits.
BADPIX = 1  # hot pixel (master dark) or dead / non-positive pixel (master flat)
SATURATED = 2  # raw value at or above the saturation level
WEAKFLAT = 4  # master flat response below the weak threshold
NONFINITE = 8  # value is NaN or infinite
COSMIC = 16  # cosmic-ray hit in this light (ccdcal.cosmic)

MASK_BITS = {BADPIX: "BADPIX", SATURATED: "SATURATE", WEAKFLAT: "WEAKFLAT", NONFINITE: "NONFINIT", COSMIC: "COSMIC"}
#: The bits every product's MASK header describes (MASKBn cards); a product whose steps may
#: set another bit (COSMIC) describes it too (``mask_bits`` of ``write_product``).
CORE_MASK_BITS = (BADPIX, SATURATED, WEAKFLAT, NONFINITE)


#: ``output.compression`` -> the FITS tile compression algorithm (ZCMPTYPE).
COMPRESSION_TYPES = {"rice": "RICE_1", "gzip": "GZIP_2"}
#: Quantization levels per noise sigma of compressed float planes (``output.quantize_level``).
DEFAULT_QUANTIZE_LEVEL = 32.0
#: Subtractive dither, method 2: zero-valued pixels are kept exactly.
DITHER_METHOD = "SUBTRACTIVE_DITHER_2"
#: The dither's seed (1-10000), fixed: the same planes give the same file, byte for byte.
DITHER_SEED = 1
#: The suffix added to a compressed product's name (``a.fits`` -> ``a.fits.fz``).
COMPRESSED_SUFFIX = ".fz"
#: The extension holding a compressed product's image (its primary HDU has no data).
COMPRESSED_IMAGE = "SCI"


def compressed_name(name: str, compression: str | None) -> str:
    """The file name of a product written with ``compression`` (``output.compression``):
    ``name`` as it is for none, else with COMPRESSED_SUFFIX added."""
    return name if compression in (None, "none") else name + COMPRESSED_SUFFIX


#: Characters kept as they are in header text: printable ASCII except '%'.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def ascii_header_text(text: str) -> str:
    """``text`` (a file name, say) as a FITS header value, which must be printable ASCII:
    every other character, and '%' itself, is percent-encoded as the %XX of its UTF-8 bytes
    (RFC 3986 style; ``urllib.parse.unquote`` gives the text back). ASCII names without
    '%' are unchanged: 'flat_é.fits' -> 'flat_%C3%A9.fits'."""
    return quote(text, safe=_HEADER_SAFE, errors="surrogateescape")


def mask_header(bits: Iterable[int] = CORE_MASK_BITS) -> fits.Header:
    """The MASK extension's header: a MASKBn card naming each of ``bits`` (``MASK_BITS``)."""
    header = fits.Header()
    header["EXTNAME"] = "MASK"
    for bit in sorted(set(bits)):
        header[f"MASKB{bit}"] = (MASK_BITS[bit], f"meaning of MASK bit value {bit}")
    return header


def shorten_comments(header: fits.Header) -> None:
    """Cut comments so every card fits in 80 characters (no truncation warnings, no CONTINUE
    cards made only for a comment)."""
    for card in header.cards:
        if not card.comment or card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        bare = fits.Card(card.keyword, card.value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a value shorter than the fixed-format field is padded to column 30 when a
            # comment follows ("KEY     = 'median  '           / comment")
            room = 80 - max(len(bare.image.rstrip()), 30) - 3
        if len(bare.image) > 80 or room <= 0:
            header.comments[card.keyword] = ""
        elif len(card.comment) > room:
            header.comments[card.keyword] = card.comment[:room]


def product_hdul(
    data: np.ndarray,
    uncert: np.ndarray,
    mask: np.ndarray,
    header: fits.Header,
    unit: str = "adu",
    mask_bits: Iterable[int] = CORE_MASK_BITS,
    compression: str = "none",
    quantize_level: float = DEFAULT_QUANTIZE_LEVEL,
) -> fits.HDUList:
    """Primary image (float32, or an integer type as given) + UNCERT + MASK (its header
    describing ``mask_bits``), ready to write. ``compression`` rice or gzip: the
    tile-compressed layout (module docstring), float planes quantized with
    ``quantize_level``."""
    header = header.copy()
    shorten_comments(header)
    header["BUNIT"] = (unit, "unit of the image and of UNCERT")
    data = np.asarray(data)
    if data.dtype.kind == "f" and data.dtype.itemsize != 4:  # integer images ('same') kept as they are
        data = data.astype(np.float32)
    uncert_header = fits.Header()
    uncert_header["EXTNAME"] = "UNCERT"
    uncert_header["BUNIT"] = (unit, "1-sigma uncertainty of the primary image")
    uncert = np.asarray(uncert)
    uncert = uncert if uncert.dtype.itemsize == 4 else uncert.astype(np.float32)
    mask = np.asarray(mask, dtype=np.uint8)
    if compression not in (None, "none"):
        return _compressed_hdul(data, uncert, mask, header, uncert_header, mask_bits, compression, quantize_level)
    primary = fits.PrimaryHDU(data, header=header)
    uncert_hdu = fits.ImageHDU(uncert, header=uncert_header)
    mask_hdu = fits.ImageHDU(mask, header=mask_header(mask_bits))
    return fits.HDUList([primary, uncert_hdu, mask_hdu])


def _reproducible_gzip() -> None:
    """Make astropy's GZIP tile codecs stamp their streams with time 0: they call
    ``gzip.compress``, which writes the current time into every tile, so the same planes
    gave other bytes each second. (The time is not read back; fpack writes 0 too.)"""
    try:
        from astropy.io.fits.hdu.compressed import _codecs
    except ImportError:  # pragma: no cover - another astropy layout
        return
    if getattr(_codecs, "gzip_compress", None) is gzip.compress:
        _codecs.gzip_compress = functools.partial(gzip.compress, mtime=0)


def _compressed_hdul(
    data: np.ndarray,
    uncert: np.ndarray,
    mask: np.ndarray,
    header: fits.Header,
    uncert_header: fits.Header,
    mask_bits: Iterable[int],
    compression: str,
    quantize_level: float,
) -> fits.HDUList:
    """The tile-compressed product (module docstring): an empty primary HDU with the
    product's header, then SCI, UNCERT and MASK compressed; the headers say how."""
    if compression not in COMPRESSION_TYPES:
        raise ValueError(f"output.compression {compression!r}: give none, {', '.join(COMPRESSION_TYPES)}")
    if not quantize_level > 0:
        raise ValueError(f"output.quantize_level {quantize_level!r}: give a number of levels per sigma above 0")
    algorithm = COMPRESSION_TYPES[compression]
    if algorithm.startswith("GZIP"):
        _reproducible_gzip()
    quantized = data.dtype.kind == "f"
    header["COMPRESS"] = (algorithm, "planes tile-compressed (fpack format)")
    header["QUANTLVL"] = (float(quantize_level), "float planes: levels per noise sigma")
    header["QUANTMTH"] = (DITHER_METHOD, "dither of quantized planes")
    header["DITHSEED"] = (DITHER_SEED, "dither seed (fixed: same bytes)")
    header["IMGLOSS"] = ("quantized" if quantized else "lossless", "image plane compression")
    header.add_history(
        f"ccdcal: compressed {algorithm}; float planes quantized at {quantize_level:g} levels per noise "
        f"sigma ({DITHER_METHOD}, seed {DITHER_SEED}), integer planes lossless"
    )
    primary = fits.PrimaryHDU(header=header)

    def compressed(array: np.ndarray, hdu_header: fits.Header) -> fits.CompImageHDU:
        return fits.CompImageHDU(
            array,
            header=hdu_header,
            compression_type=algorithm,
            quantize_level=quantize_level,
            quantize_method=2,  # SUBTRACTIVE_DITHER_2
            dither_seed=DITHER_SEED,
        )

    image_header = header.copy()
    for key in ("SIMPLE", "EXTEND", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"):
        image_header.remove(key, ignore_missing=True)
    image_header["EXTNAME"] = COMPRESSED_IMAGE
    for key, card in (("QUANTLVL", header.cards["QUANTLVL"]), ("COMPRESS", header.cards["COMPRESS"])):
        uncert_header[key] = (card.value, card.comment)
    return fits.HDUList(
        [
            primary,
            compressed(data, image_header),
            compressed(uncert, uncert_header),
            compressed(mask, mask_header(mask_bits)),
        ]
    )


def _big_endian_in_place(array: np.ndarray, block_rows: int = 64) -> np.ndarray:
    """The same values as a big-endian (FITS) view, bytes swapped in place: astropy then
    writes them without swapping twice. The caller's native-order array is spent.

    Swapped a block of rows at a time through a small buffer: numpy's casting to '>f4'
    has a vectorized swap loop, ``byteswap(inplace=True)`` only a bytewise one (1.6 times
    slower on a 4096^2 plane)."""
    if array.dtype.byteorder in (">", "|") or (array.dtype.byteorder == "=" and not _LITTLE):
        return array
    swapped = array.dtype.newbyteorder(">")
    if array.ndim != 2 or not array.flags.c_contiguous:
        array.byteswap(inplace=True)
        return array.view(swapped)
    scratch = np.empty((min(block_rows, array.shape[0]), array.shape[1]), dtype=swapped)
    as_bytes, scratch_bytes = array.view(np.uint8), scratch.view(np.uint8)
    for y0 in range(0, array.shape[0], block_rows):
        block = array[y0 : y0 + block_rows]
        n = block.shape[0]
        np.copyto(scratch[:n], block)  # the swapping cast
        as_bytes[y0 : y0 + n] = scratch_bytes[:n]
    return array.view(swapped)


_LITTLE = np.little_endian


def write_product(
    path: str | Path,
    data,
    uncert,
    mask,
    header,
    unit: str = "adu",
    consume: bool = False,
    checksum: bool = True,
    drop_cache: bool = False,
    writer: BackgroundWriter | None = None,
    mask_bits: Iterable[int] = CORE_MASK_BITS,
    compression: str = "none",
    quantize_level: float = DEFAULT_QUANTIZE_LEVEL,
) -> Future | None:
    """Write a product atomically, with FITS checksums unless ``checksum`` is False. With
    ``consume``, ``data`` and ``uncert`` are swapped to FITS byte order in place to save a
    pass (do not use them afterwards). ``drop_cache``, ``writer`` and what is returned:
    see ``write_fits_atomic``; the planes may be reused once this returns. ``mask_bits``:
    the MASK bits its header describes. ``compression`` (none, rice, gzip) and
    ``quantize_level``: ``product_hdul``; the caller names the file (``compressed_name``)."""
    compressed = compression not in (None, "none")
    if consume and not compressed:  # compressing reads the planes in any byte order
        data = _big_endian_in_place(
            np.asarray(data, dtype=np.float32) if np.asarray(data).dtype.kind == "f" else np.asarray(data)
        )
        uncert = _big_endian_in_place(np.asarray(uncert, dtype=np.float32))
    return write_fits_atomic(
        product_hdul(data, uncert, mask, header, unit, mask_bits, compression, quantize_level),
        path,
        checksum=checksum,
        drop_cache=drop_cache,
        writer=writer,
    )


@dataclass
class Product:
    """A master or calibrated frame read back: float32 image, 1-sigma, mask, header, digest."""

    path: Path
    data: np.ndarray
    uncert: np.ndarray
    mask: np.ndarray
    header: fits.Header
    digest: str

    @cached_property
    def variance(self) -> np.ndarray:
        """UNCERT squared (computed once)."""
        return self.uncert * self.uncert


def fits_size_problem(hdul: fits.HDUList, size: int) -> str | None:
    """Why a FITS file of ``size`` bytes is not exactly the HDUs ``hdul`` read from it
    describe (every header read: the end of the last HDU's data, padded to 2880 bytes),
    or None when it is."""
    hdul.readall()
    needed = max(info["datLoc"] + info["datSpan"] for info in map(hdul.fileinfo, range(len(hdul))))
    if size < needed:
        return f"truncated: {size} bytes, the headers need {needed}"
    if size > needed:  # cut inside a header (astropy drops that HDU), or bytes after the end
        return f"{size} bytes, the headers need {needed} (cut inside a header, or bytes after the last HDU)"
    return None


@contextmanager
def damage_warnings_ignored():
    """astropy's warnings about a truncated or cut file, silenced: ccdcal says what is
    wrong with the file itself (``fits_size_problem``). ``warnings.catch_warnings`` swaps
    the process's filter list, so threads reading files at once must be inside one entered
    by the thread that started them (``read_products``), or one's exit drops another's
    filters."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="File may have been truncated")
        warnings.filterwarnings("ignore", message="Error validating header")
        yield


def _read_planes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, fits.Header]:
    """The planes and primary header of a product; FrameError naming the file and the
    problem when it is not a whole, readable ccdcal product."""
    try:
        with damage_warnings_ignored():  # a truncated file is reported below
            with fits.open(path, memmap=False) as hdul:
                problem = fits_size_problem(hdul, path.stat().st_size)
                if problem:
                    raise FrameError(f"{path}: {problem}")
                for name in ("UNCERT", "MASK"):
                    if name not in hdul:
                        raise FrameError(
                            f"{path}: not a ccdcal product (no {name} extension); give a master made by ccdcal"
                        )
                image = hdul[0]
                if not image.header.get("NAXIS") and COMPRESSED_IMAGE in hdul:  # tile-compressed (.fits.fz)
                    image = hdul[COMPRESSED_IMAGE]
                shapes = {"PRIMARY": getattr(image, "shape", None)}
                shapes.update({name: getattr(hdul[name], "shape", None) for name in ("UNCERT", "MASK")})
                if shapes["PRIMARY"] is None or len(shapes["PRIMARY"]) != 2 or len(set(shapes.values())) > 1:
                    described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
                    raise FrameError(
                        f"{path}: not a ccdcal product (planes of different shapes or no 2-D image: {described})"
                    )
                data = np.asarray(image.data, dtype=np.float32)
                uncert = np.asarray(hdul["UNCERT"].data, dtype=np.float32)
                mask = np.asarray(hdul["MASK"].data, dtype=np.uint8)
                header = hdul[0].header.copy()
    except FrameError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
        raise FrameError(f"{path}: not a readable FITS file ({exc})") from None
    return data, uncert, mask, header


def read_product(path: str | Path) -> Product:
    """A master or calibrated frame, its planes in native byte order; FrameError naming
    the file and why when it is not a whole, readable ccdcal product."""
    path = Path(path)
    return Product(path, *_read_planes(path), file_digest(path))


def read_products(paths: Sequence[str | Path], threads: int = 1) -> list[Product]:
    """``read_product`` of each path, the files' planes and digests read ``threads`` at a
    time (astropy's reads, numpy's conversions and hashlib release the GIL)."""
    paths = [Path(p) for p in paths]
    if threads <= 1:
        return [read_product(p) for p in paths]
    with damage_warnings_ignored(), ThreadPoolExecutor(max_workers=threads) as pool:
        digests = [pool.submit(file_digest, p) for p in paths]
        planes = [pool.submit(_read_planes, p) for p in paths]
        return [Product(p, *read.result(), digest.result()) for p, read, digest in zip(paths, planes, digests)]
