"""A PixInsight master (``pixinsight_library``) converted into a ccdcal master product.

The calibrator and the master builder read ccdcal products (image, UNCERT, MASK and the
header cards of ``masters``); a PixInsight master has only its image. ``import_master``
makes the rest, the same way ``master_recipes`` does for the masters ccdcal builds:

Image (ADU)
    A master stored normalised to [0, 1] (XISF ``bounds="0:1"``, or floats whose largest
    value is at most 1) is multiplied by ``pixinsight_import.scale`` (65535: PixInsight
    maps a 16-bit ADU range to [0, 1]); integer masters and floats above 1 are taken as
    ADU (factor 1). PISCALE says which. A flat is then divided by its median over
    ``flat.normalize_region`` (FLATNORM, in ADU), so it has median 1 there as ccdcal's.
UNCERT (1-sigma)
    Each input frame has variance r^2 + s / g (ADU^2: r the read noise in ADU, g the gain
    in e-/ADU, s the signal in ADU above the bias: 0 for a bias, D - B for a dark with the
    bias master B the plan gives it, the flat's own value for a flat, whose frames were
    already dark-subtracted), and the master, an average of N frames, r^2/N + s/(g N)
    (PixInsight's ImageIntegration averages; its rejection costs little: ``masters``).
    A flat's variance is divided by FLATNORM^2. N is NCOMBINE, else PixInsight's HISTORY
    ``ImageIntegration.numberOfImages``, else ``pixinsight_import.frames``, else 1 (the
    largest UNCERT) with CALFLAGS NOCOUNT; g and r are the setup's (the noise record of
    tonight's frames of that setup), else the camera profile's or the master's keywords
    (EGAIN, RDNOISE), else g = 1 (NOGAIN) and r = 0 (NORDNOISE). A dark without a bias
    master lacks its dark current's shot noise (NODKSHOT). UNCNOTE and HISTORY say all of
    it; nothing is assumed silently. Not in UNCERT: the noise of the bias/darkflat the
    PixInsight flats were calibrated with (unknown; r^2 / N_darkflat, small against s/g).
MASK
    BADPIX: hot pixels of a dark (``background.hot_pixels`` on D - B, or on D without a
    bias, ``dark.hot_pixel_sigma``), dead pixels of a flat (``background.dead_pixels``,
    ``flat.dead_fraction``); WEAKFLAT below ``flat.weak_threshold``; NONFINITE.
Header
    The master's keywords, then ccdcal's cards (CCDCALTY, CAMERA, the setup, EXPTIME,
    FILTER, NCOMBINE, EGAIN, RDNOISE, DARKBIAS 'included', MASTERID = the identity of the
    source file, CALFLAGS, MEDLEVEL) and IMPORTED, PISOURCE (the source path, %-encoded),
    PISHA256 (its SHA-256), PIKIND, PISCALE, UNCNOTE; CHECKSUM/DATASUM
    (``products.write_product``, written atomically).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .camera import CameraProfile, HeaderView
from .cfa import CfaError, raw_layout
from .file_cache import file_digest
from .frames import FrameError, copy_header_cards
from .master_recipes import finish_dark, finish_flat
from .pixinsight_library import MasterReadError, read_master
from .products import NONFINITE, Product, ascii_header_text, write_product
from .provenance import add_software_cards
from .stats import median

log = logging.getLogger("ccdcal.pixinsight")

#: Cards of the source that describe one input or its layout, not the converted master.
DROPPED_CARDS = (
    "DATE-OBS",
    "DATE",
    "TIME-OBS",
    "UT",
    "OBJECT",
    "BIASSEC",
    "DATASEC",
    "TRIMSEC",
    "CHECKSUM",
    "DATASUM",
    "EXPOSURE",
    "SATURATE",
    "BUNIT",
)


def scale_factor(image: np.ndarray, bounds: str, full_scale: float) -> tuple[float, str]:
    """(factor to ADU, why) of a master's samples (module docstring)."""
    if image.dtype.kind != "f":
        return 1.0, f"integer samples ({image.dtype}): ADU as stored"
    if bounds:
        low, _, high = bounds.partition(":")
        if float(low) == 0.0 and float(high) == 1.0:
            return float(full_scale), f"float samples in bounds 0:1: x {full_scale:g} ADU"
        return 1.0, f"float samples in bounds {bounds}: ADU as stored"
    peak = float(np.nanmax(image))
    if peak <= 1.0:
        return float(full_scale), f"float samples, largest {peak:.6g} <= 1: x {full_scale:g} ADU"
    return 1.0, f"float samples, largest {peak:.6g} > 1: ADU as stored"


def noise_values(
    header: fits.Header, camera: Mapping[str, Any], noise: Mapping[str, Any] | None
) -> tuple[float, str, float, str, list[str]]:
    """(gain e-/ADU, its source, read noise e-, its source, CALFLAGS words) of a master's
    frames: the setup's noise record when it knows them, else the camera profile or the
    master's keywords, else gain 1 (NOGAIN) and read noise 0 (NORDNOISE)."""
    profile, view = CameraProfile(dict(camera)), HeaderView(header)
    flags = []
    gain, gain_source = None, "unknown"
    rn, rn_source = None, "unknown"
    if noise is not None:
        if "NOGAIN" not in noise.get("flags", []):
            gain, gain_source = float(noise["gain"]), f"setup: {noise['gain_source']}"
        if "NORDNOISE" not in noise.get("flags", []):
            rn, rn_source = float(noise["read_noise_e"]), f"setup: {noise['read_noise_source']}"
    if gain is None:
        gain, gain_source = profile.value_or_keyword(view, "gain")
    if rn is None:
        rn, rn_source = profile.value_or_keyword(view, "read_noise")
    if gain is None:
        gain, gain_source = 1.0, f"unknown ({gain_source}): 1.0 taken"
        flags.append("NOGAIN")
    if rn is None:
        rn, rn_source = 0.0, f"unknown ({rn_source}): UNCERT lacks it"
        flags.append("NORDNOISE")
    return float(gain), gain_source, float(rn), rn_source, flags


def import_master(
    spec: Mapping[str, Any],
    camera: Mapping[str, Any],
    settings: Mapping[str, Any],
    output: str | Path,
    bias: Product | None = None,
    noise: Mapping[str, Any] | None = None,
    config_digest: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Convert the PixInsight master of plan entry ``spec`` (source 'pixinsight') into a
    ccdcal product at ``output`` (module docstring). ``settings``: ``pixinsight_import``;
    ``bias``: the bias master of a dark (its dark current s = D - B); ``noise``: the
    setup's noise record. FrameError naming the file when it changed since the plan
    was made, cannot be read or does not have the planned shape. Returns a summary."""
    source = Path(spec["file"])
    details = spec["imported"]
    kind, name = spec["type"], spec["name"]
    try:
        sha256 = file_digest(source, length=64)
    except OSError as exc:
        raise FrameError(f"PixInsight master {source}: cannot be read ({exc.strerror or exc})") from None
    if sha256 != details["sha256"]:
        raise FrameError(
            f"PixInsight master {source} changed since the night was planned (sha256 {sha256[:16]}, "
            f"planned {details['sha256'][:16]}): run again with --forcerun inventory"
        )
    try:
        found = read_master(source)
    except MasterReadError as exc:
        raise FrameError(f"PixInsight master {source}: {exc}") from None
    shape = tuple(int(v) for v in spec["setup"]["shape"].split("x"))
    if found.image.shape != shape:
        raise FrameError(f"PixInsight master {source}: image {found.image.shape}, the plan's {shape}")
    factor, scale_note = scale_factor(found.image, found.bounds, float(settings["scale"]))
    data = found.image.astype(np.float32) * np.float32(factor)
    del found.image
    gain, gain_source, rn_e, rn_source, flags = noise_values(found.header, camera, noise)
    rn_adu = rn_e / gain
    count, count_source = details.get("count"), "the master's keywords"
    if count is None and settings.get("frames"):
        count, count_source = int(settings["frames"]), "pixinsight_import.frames"
    if count is None:
        count, count_source = 1, "unknown: 1 taken (the largest UNCERT)"
        flags.append("NOCOUNT")
    notes = [f"N = {count} ({count_source})", f"gain {gain:.4g} e-/ADU ({gain_source})"]
    notes.append(f"read noise {rn_e:.4g} e- ({rn_source})")
    cards: dict[str, tuple[Any, str]] = {}
    mask = np.zeros(data.shape, dtype=np.uint8)
    try:  # a colour master's pixels are compared with their own colour's
        layout = raw_layout(found.header, data.shape, camera.get("bayer_pattern", "header"))
    except CfaError as exc:
        raise FrameError(f"PixInsight master {source}: {exc}") from None
    if kind == "bias":
        variance = np.full(data.shape, rn_adu**2 / count, dtype=np.float32)
        notes.append("UNCERT^2 = r^2 / N")
    elif kind == "dark":
        current = data - bias.data if bias is not None else data
        per_frame = np.float32(rn_adu**2)
        if bias is not None:
            per_frame = per_frame + np.maximum(current, 0) / np.float32(gain)
            notes.append(f"UNCERT^2 = (r^2 + (D - B) / g) / N, B = {bias.path.name}")
        else:
            flags.append("NODKSHOT")
            notes.append("UNCERT^2 = r^2 / N: no bias master, the dark current's shot noise is not in it")
        variance = np.broadcast_to(np.asarray(per_frame, dtype=np.float32) / np.float32(count), data.shape).copy()
        del current
        mask, dark_cards = finish_dark(data, bias, spec.get("exptime"), gain, camera, layout, threads)
        cards.update(dark_cards)
    else:
        variance = (np.maximum(data, 0) / np.float32(gain) + np.float32(rn_adu**2)) / np.float32(count)
        try:
            mask, flat_cards = finish_flat(data, variance, camera, layout, threads)
        except FrameError as exc:
            raise FrameError(f"PixInsight master flat {source}: {exc}") from None
        cards.update(flat_cards)
        notes.append("UNCERT^2 = (r^2 + F / g) / N / FLATNORM^2 (F the flat in ADU)")
        notes.append("not in UNCERT: the darkflat/bias the PixInsight flats were calibrated with")
    mask[~np.isfinite(data)] |= NONFINITE
    uncert = np.sqrt(variance, out=variance)
    header = _header(spec, found.header, count, gain, gain_source, rn_e, rn_source, flags)
    header["PISCALE"] = (factor, "ADU per unit of the source's samples")
    header["PISCNOTE"] = (scale_note[:68], "why PISCALE")
    header["MEDLEVEL"] = (round(median(data), 6), "median of the master (ADU; 1 for a flat)")
    for key, value in cards.items():
        header[key] = value
    header["UNCNOTE"] = ("; ".join(notes)[:68], "how UNCERT was modelled (HISTORY: all)")
    for note in notes:
        header.add_history(ascii_header_text(f"ccdcal import: {note}"))
    add_software_cards(header, config_digest)
    write_product(output, data, uncert, mask, header, unit="" if kind == "flat" else "adu")
    for note in notes:
        log.info("%s: %s", name, note)
    return {
        "name": name,
        "type": kind,
        "source": str(source),
        "scale": factor,
        "count": count,
        "gain": gain,
        "read_noise_e": rn_e,
        "flags": flags,
        "median": float(header["MEDLEVEL"]),
        "notes": notes,
    }


def _header(
    spec: Mapping[str, Any],
    source: fits.Header,
    count: int,
    gain: float,
    gain_source: str,
    rn_e: float,
    rn_source: str,
    flags: list[str],
) -> fits.Header:
    """The converted master's header: the source's keywords, then ccdcal's cards."""
    header = fits.Header()
    copy_header_cards(header, source)
    for key in DROPPED_CARDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    kind, setup, details = spec["type"], spec["setup"], spec["imported"]
    header["IMAGETYP"] = (f"MASTER {kind.upper()}", "ccdcal master (imported from PixInsight)")
    header["CCDCALTY"] = (kind, "master type")
    header["CAMERA"] = (spec["camera"], "ccdcal camera profile")
    if setup.get("instrument"):
        header["INSTRUME"] = setup["instrument"]
    xb, yb = setup["binning"].split("x")
    header["XBINNING"] = (int(xb), "binning of the inputs")
    header["YBINNING"] = (int(yb), "binning of the inputs")
    for key, field in (("GAIN", "gain_setting"), ("OFFSET", "offset"), ("READOUTM", "readout_mode")):
        if setup.get(field):
            header[key] = (setup[field], f"camera {field.replace('_', ' ')} of the inputs")
    if spec.get("temperature_c") is not None:
        header["CCD-TEMP"] = (spec["temperature_c"], "[C] sensor temperature of the inputs")
    header["EXPTIME"] = (round(float(spec.get("exptime") or 0.0), 6), "[s] exposure of the inputs")
    if kind == "flat":
        header["FILTER"] = spec.get("filter", "")
    if spec.get("date_begin"):
        header["DATE-BEG"] = (spec["date_begin"], f"first input ({details['sources'].get('date', '')})"[:47])
        header["DATE-END"] = (spec["date_begin"], "as DATE-BEG: the last input's is not known")
    header["MASTERID"] = (spec["identity"], "sha256[:16] of the PixInsight master file")
    header["NCOMBINE"] = (count, "number of frames combined (see UNCNOTE)")
    header["EGAIN"] = (round(gain, 6), "[e-/ADU] gain used")
    header["GAINSRC"] = (gain_source[:68], "where EGAIN comes from")
    header["RDNOISE"] = (round(rn_e, 4), "[e-] read noise")
    header["RNSOURCE"] = (rn_source[:68], "where RDNOISE comes from")
    header["CALFLAGS"] = (",".join(flags) or "OK", "what the import did not know")
    header["IMPORTED"] = ("pixinsight", "converted from a PixInsight master")
    header["PIKIND"] = (details["kind"], "PixInsight's kind of master")
    header["PIFORMAT"] = (details["format"], "format of the source file")
    header["PISOURCE"] = (ascii_header_text(spec["file"]), "source file (%-encoded)")
    header["PISHA256"] = details["sha256"]
    return header
