"""What makes a master bias, dark or flat what it is: one recipe per kind.

``masters.build_master`` does what every master shares: it opens the inputs (overscan
and trim; a flat's bias and dark), stacks them block by block (``combine``) into the
combined image and the combination's variance factor c(n_used) / n_used, then writes the
product. Around that, the master's ``Recipe`` (``RECIPES[kind]``) does what is its own:

``select``   which inputs go into the stack, and how each is scaled (a flat: divided by
             its own median; one whose median is not positive is dropped);
``finish``   the per-input variance model that turns the variance factor into the
             master's variance (ADU^2, in place), the MASK bits it sets and its header
             cards (a dark: hot pixels and dark current; a flat: normalization to 1,
             weak and dead pixels);
``quality``  what it adds to the master's quality figures (``qc.master_checks``).

Units: images in ADU (a flat after ``finish``: dimensionless, median 1 over
``flat.normalize_region``); read noise r in ADU; gain g in e-/ADU. The variance of one
input is r^2 + signal / g (+ the variance of the bias/dark it was corrected with); see
the ``masters`` module docstring for the combination.

A new kind of master is one ``Recipe`` subclass here and its entry in ``RECIPES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .background import BackgroundSpec, dead_pixels, hot_pixels, reject_sky_flat_stars
from .cfa import CfaLayout, channel_medians, detect_per_channel
from .frames import FrameError
from .memory import release_free_memory
from .parallel import map_in_threads, row_blocks
from .products import BADPIX, WEAKFLAT, Product
from .qc import star_coverage
from .sections import Section
from .stats import median

if TYPE_CHECKING:
    from .masters import InputFrame

#: A header card: (value, comment).
Card = tuple[Any, str]


@dataclass
class MasterJob:
    """What a recipe works with: the plan's entry for the master (``spec``), the camera's
    settings, the masters its inputs were corrected with (by name), the setup's noise
    record (``night_noise``; None without one), the master's shape (ny, nx), the inputs'
    gain (e-/ADU) and read noise (ADU, and where it comes from), and the threads it may
    use."""

    spec: Mapping[str, Any]
    camera: Mapping[str, Any]
    masters: Mapping[str, Product]
    noise: Mapping[str, Any] | None
    shape: tuple[int, int]
    gain: float
    read_noise: float
    read_noise_source: str
    threads: int = 1
    cfa: CfaLayout | None = None  # the master array's Bayer layout; None: monochrome

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass
class Finished:
    """What ``Recipe.finish`` adds to the master: MASK bits (uint8, the master's shape)
    and header cards, in the order they are written."""

    mask: np.ndarray
    cards: dict[str, Card] = field(default_factory=dict)


class Recipe:
    """A kind of master. The base class is the bias's: every input is stacked as it is,
    and each input's variance is the read noise's, r^2."""

    kind: ClassVar[str] = "bias"
    #: BUNIT of the master: ADU, or '' (dimensionless) for a flat.
    unit: ClassVar[str] = "adu"

    def select(self, inputs: list[InputFrame], dropped: dict[str, str], job: MasterJob) -> list[InputFrame]:
        """The inputs to stack (``dropped`` gets {raw path: why} of those left out)."""
        return inputs

    def finish(self, data: np.ndarray, variance: np.ndarray, inputs: list[InputFrame], job: MasterJob) -> Finished:
        """Turn ``variance`` (the combination's factor c(n_used) / n_used on entry) into the
        master's variance in place, scale ``data`` if the kind needs it, and say the MASK
        bits and header cards the kind adds."""
        variance *= np.float32(job.read_noise**2)
        return Finished(np.zeros(job.shape, dtype=np.uint8))

    def quality(self, inputs: list[InputFrame], finished: Finished, job: MasterJob) -> dict[str, Any]:
        """What this kind adds to the master's quality figures (``qc.master_statistics``)."""
        return {}


class BiasRecipe(Recipe):
    """A master bias: the read noise alone."""


class DarkRecipe(Recipe):
    """A master dark (bias included): with a bias, each input's variance adds the shot
    noise of its dark current (dark - bias) / g; without one, the dark current's shot
    noise as measured on the night's dark pairs (``noise.dark_variance_rate``, ADU^2/s,
    a typical pixel's), when it was. Hot pixels (above the local background + k x local
    rms, ``dark.hot_pixel_sigma``) are flagged BADPIX; with a bias, the median dark
    current is written as DARKCUR (e-/s)."""

    kind = "dark"

    def _bias(self, job: MasterJob) -> Product | None:
        return job.masters.get(job.spec["bias"]) if job.spec.get("bias") else None

    def finish(self, data: np.ndarray, variance: np.ndarray, inputs: list[InputFrame], job: MasterJob) -> Finished:
        bias = self._bias(job)
        rn2, inv_gain = np.float32(job.read_noise**2), np.float32(1.0 / job.gain)
        cards: dict[str, Card] = {}
        dark_variance = 0.0
        if bias is None and job.noise and job.noise.get("dark_variance_rate"):
            dark_variance = float(job.noise["dark_variance_rate"]) * float(job.spec.get("exptime") or 0.0)
            cards["DARKVAR"] = (round(dark_variance, 4), "[ADU^2] dark shot noise per frame in UNCERT")
        for rows in row_blocks(job.shape[0], 64):
            if bias is not None:  # shot noise of the dark current
                per_frame = np.maximum(data[rows] - bias.data[rows], 0) * inv_gain + rn2
            else:
                per_frame = rn2 + np.float32(dark_variance)
            variance[rows] *= per_frame
        mask, dark_cards = finish_dark(data, bias, job.spec.get("exptime"), job.gain, job.camera, job.cfa, job.threads)
        cards.update(dark_cards)
        return Finished(mask, cards)

    def quality(self, inputs: list[InputFrame], finished: Finished, job: MasterJob) -> dict[str, Any]:
        return {"dark_current": finished.cards["DARKCUR"][0]} if "DARKCUR" in finished.cards else {}


#: Star detection for the quality checks when the profile rejects none: far enough above
#: the local background that noise does not count (k), without growing.
QC_STAR_SIGMA = 5.0
#: ... in this many of a master's flats at most, spread evenly over them (the star coverage
#: is the fraction of pixels starred in half or more of the flats looked at: stars that
#: stay put across the flats are in any of them, and a flat's detection costs ~0.1 s of
#: CPU at 2048 x 2048, ~0.4 s at 4096 x 4096).
QC_STAR_FLATS = 5


def qc_star_flats(count: int) -> set[int]:
    """The indices (0-based) of the flats, of ``count``, whose stars the quality checks
    detect: QC_STAR_FLATS of them at most, evenly spread, first and last included."""
    if count <= QC_STAR_FLATS:
        return set(range(count))
    return {round(i * (count - 1) / (QC_STAR_FLATS - 1)) for i in range(QC_STAR_FLATS)}


class FlatRecipe(Recipe):
    """A master flat. Each (bias/dark-subtracted) flat is measured first: its median over
    ``flat.normalize_region`` (its level), its star pixels to reject (sky flats,
    ``flat.star_rejection``) and, for the quality checks, its raw 99.9th percentile and
    stars; it is then divided by its level (``normalize_each``). The combined master is
    divided by its own median over the region (FLATNORM), so it has median 1 there;
    pixels below ``flat.weak_threshold`` are flagged WEAKFLAT, dead pixels
    (``flat.dead_fraction`` of the local background) BADPIX."""

    kind = "flat"
    unit = ""

    def select(self, inputs: list[InputFrame], dropped: dict[str, str], job: MasterJob) -> list[InputFrame]:
        camera, shape = job.camera, job.shape
        region = normalize_region(camera, shape)

        looked_at = qc_star_flats(len(inputs))

        def measure(index: int, frame: InputFrame) -> float:
            """The flat's own median (and its star pixels, and for the quality checks its
            raw peak and, in QC_STAR_FLATS of the flats, its stars), one frame in memory
            per thread."""
            full = frame.block(0, shape[0])
            frame.rejected = _star_pixels(full, camera)
            if frame.rejected is not None:
                frame.stars = frame.rejected
            elif index in looked_at:
                frame.stars = _stars_for_qc(full, camera)
            frame.peak = float(np.nanpercentile(full, 99.9)) + _raw_offset(frame, shape)
            return median(full[region])

        levels = map_in_threads(lambda item: measure(*item), list(enumerate(inputs)), job.threads)
        release_free_memory()
        kept = []
        for frame, level in zip(inputs, levels):
            if not level > 0:
                dropped[frame.rel_path] = f"median {level:.1f} ADU after bias/dark is not positive"
                continue
            frame.level = level
            frame.scale = 1.0 / level if camera["flat"]["normalize_each"] else 1.0
            kept.append(frame)
        if not kept:
            raise FrameError(
                f"master {job.name}: no flat with a positive level: "
                + "; ".join(f"{rel}: {why}" for rel, why in dropped.items())
            )
        return kept

    def finish(self, data: np.ndarray, variance: np.ndarray, inputs: list[InputFrame], job: MasterJob) -> Finished:
        camera, shape = job.camera, job.shape
        # each flat was multiplied by its scale s (1 / its level, or 1 with normalize_each
        # off): its variance s^2 (r^2 + signal / g) is s^2 r^2 + s x (the combined value) / g
        a = np.float32(np.mean([(job.read_noise * f.scale) ** 2 for f in inputs]))
        b = np.float32(np.mean([f.scale / job.gain for f in inputs]))
        # the bias/dark each flat was corrected with, averaged over the flats: the variance
        # of each distinct one (flats of one exposure share theirs), times its flats
        subs = [f.sub for f in inputs if f.sub is not None and f.sub.variance(slice(0, 0)) is not None]
        sub_scale = np.mean([f.scale**2 for f in inputs]) / max(len(subs), 1)
        distinct: dict[tuple, list] = {}
        for sub in subs:
            distinct.setdefault((id(sub.bias), id(sub.dark), sub.mode, sub.scale), [sub, 0])[1] += 1
        for rows in row_blocks(shape[0], 64):
            per_frame = np.maximum(data[rows], 0) * b + a
            for sub, count in distinct.values():
                per_frame += sub.variance(rows) * np.float32(count * sub_scale)
            variance[rows] *= per_frame
        mask, cards = finish_flat(data, variance, camera, job.cfa, job.threads)
        rejected = [f.rejected.size for f in inputs if f.rejected is not None]
        if rejected:
            cards["NSTARREJ"] = (int(sum(rejected)), "sky-flat pixels rejected as stars")
        for i, frame in enumerate(inputs, start=1):
            cards[f"FLEVL{i:03d}"] = (round(frame.level, 3), f"median ADU of input {i}")
        return Finished(mask, cards)

    def quality(self, inputs: list[InputFrame], finished: Finished, job: MasterJob) -> dict[str, Any]:
        return {
            "saturation": float(inputs[0].saturation) if inputs[0].saturation else None,
            "inputs": [{"path": f.rel_path, "level": f.level, "peak": f.peak} for f in inputs],
            "star_coverage": star_coverage((f.stars for f in inputs), job.shape),
        }


def finish_dark(
    data: np.ndarray,
    bias: Product | None,
    exptime: float | None,
    gain: float,
    camera: Mapping[str, Any],
    cfa: CfaLayout | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, dict[str, Card]]:
    """A master dark's MASK and cards (ADU; ``gain`` e-/ADU; ``exptime`` s): its hot
    pixels, above the local background of the dark current (dark - bias, or the dark
    itself without a bias) + ``dark.hot_pixel_sigma`` x its local rms, each compared
    with pixels of its own colour on a colour sensor (``cfa``), flagged BADPIX
    (NHOTPIX, HOTSIGMA); with a bias, the median dark current (DARKCUR, e-/s)."""
    cards: dict[str, Card] = {}
    mask = np.zeros(data.shape, dtype=np.uint8)
    current = data - bias.data if bias is not None else data.copy()
    center = median(current)
    k = camera["dark"]["hot_pixel_sigma"]
    spec = BackgroundSpec.from_dict(camera["background"])
    hot = detect_per_channel(cfa, current, lambda plane: hot_pixels(plane, spec, k, threads=threads))
    del current
    mask[hot] |= BADPIX
    cards["NHOTPIX"] = (int(hot.sum()), "pixels flagged hot (BADPIX)")
    cards["HOTSIGMA"] = (k, "hot: above local background + this x local rms")
    if bias is not None and exptime:
        cards["DARKCUR"] = (round(center * gain / float(exptime), 6), "[e-/s] median dark current")
        cards["BIASFILE"] = (bias.path.name, "bias used to measure the dark current")
    cards["DARKBIAS"] = ("included", "the master dark includes the bias")
    return mask, cards


def finish_flat(
    data: np.ndarray,
    variance: np.ndarray,
    camera: Mapping[str, Any],
    cfa: CfaLayout | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, dict[str, Card]]:
    """Normalize a combined flat (ADU) and its variance (ADU^2), in place, to median 1
    over ``flat.normalize_region`` (FLATNORM: the median), or with ``flat.cfa:
    per_channel`` on a colour sensor each CFA channel by its own median (FLATNRR,
    FLATNRG1, FLATNRG2, FLATNRB); flag pixels below ``flat.weak_threshold`` WEAKFLAT
    and dead ones (``flat.dead_fraction`` of the local background of their own colour)
    BADPIX. Returns the MASK and the cards. FrameError when the median is not > 0."""
    region = normalize_region(camera, data.shape)
    norm = median(data[region])
    if not (np.isfinite(norm) and norm > 0):
        raise FrameError(f"the flat's median {norm!r} over the normalize region is not > 0")
    cards: dict[str, Card] = {}
    how = camera["flat"].get("cfa", "together")
    if cfa is not None and how == "per_channel":
        # each colour by its own median: the flat lamp's colour does not tint the lights
        channel_norms = channel_medians(cfa, data, region)
        for name, view in cfa.channels():
            data[view] /= np.float32(channel_norms[name])
            variance[view] /= np.float32(channel_norms[name] ** 2)
        for name, level in channel_norms.items():
            cards[f"FLATNR{name}"[:8]] = (level, f"median ({name} pixels) the master's {name} was divided by")
    else:
        data /= np.float32(norm)
        variance /= np.float32(norm * norm)
    mask = np.zeros(data.shape, dtype=np.uint8)
    mask[~(data >= camera["flat"]["weak_threshold"])] |= WEAKFLAT
    spec = BackgroundSpec.from_dict(camera["background"])
    fraction = camera["flat"]["dead_fraction"]
    dead = detect_per_channel(cfa, data, lambda plane: dead_pixels(plane, spec, fraction, threads=threads))
    mask[dead] |= BADPIX
    cards["NDEADPIX"] = (int(dead.sum()), "pixels flagged dead (BADPIX)")
    cards["FLATNORM"] = (norm, "median (ADU/level) of the master before normalizing")
    cards["NORMREG"] = (camera["flat"]["normalize_region"], "region of the median used to normalize")
    cards["NORMSTAT"] = ("median", "statistic used to normalize")
    if cfa is not None:
        cards["FLATCFA"] = (how, "CFA channels normalized together or per channel")
    return mask, cards


#: The recipe of each kind of master.
RECIPES: dict[str, Recipe] = {recipe.kind: recipe for recipe in (BiasRecipe(), DarkRecipe(), FlatRecipe())}


def normalize_region(camera: Mapping[str, Any], shape: tuple[int, int]) -> tuple[slice, slice]:
    """The numpy slices of ``flat.normalize_region`` ('full', or a FITS section, 1-based)."""
    region = camera["flat"]["normalize_region"]
    if region == "full":
        return slice(0, shape[0]), slice(0, shape[1])
    section = Section.parse(region)
    section.check_inside(shape, "flat.normalize_region")
    return section.slices


def central_rows(shape: tuple[int, int], size: int = 512) -> tuple[int, int]:
    """The first and end row (numpy, end excluded) of the ``size`` rows at the centre."""
    ny = shape[0]
    half = min(ny, size) // 2
    return ny // 2 - half, ny // 2 - half + min(ny, size)


def _stars_for_qc(flat: np.ndarray, camera: Mapping[str, Any]) -> np.ndarray:
    """Flat indices of one sky flat's star pixels, for the star-coverage check."""
    found = reject_sky_flat_stars(
        flat, BackgroundSpec.from_dict(camera["background"]), method="sigma", k=QC_STAR_SIGMA, grow=0
    )
    found &= np.isfinite(flat)  # saturated (NaN) pixels are not stars here
    return np.flatnonzero(found).astype(np.int64)


def _raw_offset(frame: InputFrame, shape: tuple[int, int]) -> float:
    """What was subtracted from a flat's raw pixels before it is measured (ADU): its
    overscan level and the median of its bias/dark over central rows."""
    offset = float(np.mean(frame.corrector.levels)) if frame.corrector.levels else 0.0
    if frame.sub is not None:
        y0, y1 = central_rows(shape, 64)
        image = frame.sub.image(slice(y0, y1))
        if image is not None:
            offset += float(np.median(image))
    return offset


def _star_pixels(flat: np.ndarray, camera: Mapping[str, Any]) -> np.ndarray | None:
    """Flat indices of the pixels of one (bias/dark-subtracted) sky flat to reject, per the
    camera's ``flat.star_rejection``; None when rejection is off."""
    spec = camera["flat"]["star_rejection"]
    if spec["method"] == "none":
        return None
    rejected = reject_sky_flat_stars(
        flat,
        BackgroundSpec.from_dict(camera["background"]),
        method=spec["method"],
        k=spec["k"],
        low=spec["low"],
        high=spec["high"],
        grow=spec["grow"],
    )
    return np.flatnonzero(rejected).astype(np.int64)
