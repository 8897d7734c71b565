"""The steps a light is calibrated with, as data.

A camera profile's ``steps`` lists, in order, the named steps its lights go through
(default ``DEFAULT_STEPS``: overscan, trim, bias, dark, flat, fringe, cosmic_rays,
cosmetic, the last three off until their settings enable them); ``Calibrator`` and the
workflow's light jobs run that list. Calibration frames go through the steps before their
own kind (a flat: overscan, trim, bias, dark). Each step is a small class registered by
name in ``STEPS``, with one job; its ``stage`` says when it acts and which hook it fills:

=========== ========================= ==================================================
stage       steps                     hook
=========== ========================= ==================================================
raw         overscan, trim            ``read(planned, reading)``: what of the planned
                                      layout (the profile's overscan and trim,
                                      ``overscan.layout_for``) the raw rows are read with
arithmetic  bias, dark, flat          ``choose(light)``: take its master (a dark: and how
                                      it is scaled, ``Light.dark_choice``)
image       fringe, cosmic_rays,      ``apply(light)``: act on the calibrated image,
            cosmetic                  UNCERT and MASK, in the order listed, when their
                                      settings enable them
=========== ========================= ==================================================

The steps of the first two stages say what to do and the engine does each stage in one
pass over the frame: the reader corrects and trims as it reads the raw rows
(``overscan.FrameCorrector``), and one cache-blocked pass subtracts, divides and
propagates the variance of every arithmetic step (``calibrate.Calibration``). So their
order within a stage is the physical one (overscan before trim; bias, dark, flat), which
``light_steps`` checks; image steps run one after the other, in the order listed, after
the arithmetic.

A listed arithmetic step whose master is missing flags the light (CALFLAGS, its
``missing_flag``); a step left out of the list is not done and not flagged.

Adding a step: a ``Step`` subclass registered with ``@step`` (here, or in the module of
its science, imported below), and its name in the schema's ``steps`` enum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .products import COSMIC, Product, ascii_header_text
from .sections import Section

if TYPE_CHECKING:
    from .cfa import CfaLayout

#: The stages, in the order they run.
STAGES = ("raw", "arithmetic", "image")
#: What a light goes through when its profile does not say.
DEFAULT_STEPS = ("overscan", "trim", "bias", "dark", "flat", "fringe", "cosmic_rays", "cosmetic")
#: The steps of every light before image steps existed (the recipe that was fixed).
CORE_STEPS = DEFAULT_STEPS[:5]
#: A header card: (value, comment).
Card = tuple[Any, str]


@dataclass
class Light:
    """A light on its way through the steps. ``given``: the masters the caller gave for
    'bias', 'dark' and 'flat' (None when not given); ``dark_choice(bias, dark)`` ->
    (mode, scale): how the dark is applied ('unscaled' or 'scaled', ``Calibrator``).
    ``settings``: each step's settings by its name (the profile's section, e.g.
    ``cosmic_rays``). The arithmetic steps set the masters used; after the arithmetic,
    ``image`` and ``uncert`` (float32, ADU) and ``mask`` (uint8 MASK bits) hold the
    calibrated planes, ``gain`` (e-/ADU) and ``read_noise`` (e-) what they were made
    with; image steps change the planes in place and add header ``cards``. A colour
    frame's image steps compare pixels with their own colour's only (``cfa``)."""

    given: Mapping[str, Product | None]
    dark_choice: Callable[[Product | None, Product], tuple[str | None, float | None]]
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bias: Product | None = None
    dark: Product | None = None
    dark_mode: str | None = None
    dark_scale: float | None = None
    flat: Product | None = None
    image: np.ndarray | None = None
    uncert: np.ndarray | None = None
    mask: np.ndarray | None = None
    gain: float = 1.0
    read_noise: float = 0.0
    cards: dict[str, Card] = field(default_factory=dict)
    cfa: CfaLayout | None = None  # the calibrated array's Bayer layout (ccdcal.cfa); None: monochrome
    source: str = ""  # the raw frame, relative to raw_dir (which lights a fringe frame was made from)

    @property
    def subtracted_bias(self) -> Product | None:
        """The bias subtracted as such: none when the dark is subtracted as it is (a dark
        of the light's exposure includes the bias)."""
        return self.bias if self.dark_mode != "unscaled" else None


class Step:
    """One named step (see the module docstring for the stages and their hooks)."""

    name: ClassVar[str]
    stage: ClassVar[str]
    #: CALFLAGS value of a light that lacks what this step needs (arithmetic steps).
    missing_flag: ClassVar[str | None] = None
    #: MASK bits beyond the core ones (``products.CORE_MASK_BITS``) the step may set.
    mask_bits: ClassVar[tuple[int, ...]] = ()

    def enabled(self, settings: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the step runs, listed, with these settings (by step name)."""
        return True

    def read(self, planned: Any, reading: Any) -> Any:
        """raw: the layout to read with, given the ``planned`` one and what the steps
        before made of it (``reading``)."""
        return reading

    def choose(self, light: Light) -> None:
        """arithmetic: set what this step subtracts or divides by on ``light``."""

    def missing(self, light: Light) -> bool:
        """arithmetic: whether the light lacks this step's master (flagged)."""
        return False

    def apply(self, light: Light) -> None:
        """image: act on ``light.image``, ``light.uncert`` and ``light.mask``."""


#: Every step, by name.
STEPS: dict[str, Step] = {}


def step(cls: type[Step]) -> type[Step]:
    """Register a step class under its name."""
    if cls.stage not in STAGES:
        raise ValueError(f"step {cls.name!r}: stage {cls.stage!r} is not one of {', '.join(STAGES)}")
    STEPS[cls.name] = cls()
    return cls


@step
class Overscan(Step):
    """Subtract each amplifier's overscan fit (the profile's ``overscan``: regions,
    method, order) from its data section, as the raw rows are read."""

    name, stage = "overscan", "raw"

    def read(self, planned, reading):
        return dataclasses.replace(
            reading, amplifiers=planned.amplifiers, method=planned.method, order=planned.order, axis=planned.axis
        )


@step
class Trim(Step):
    """Keep only the trim section (the profile's ``trim``: TRIMSEC/DATASEC or a section);
    without this step the whole raw frame, overscan included, is kept."""

    name, stage = "trim", "raw"

    def read(self, planned, reading):
        return dataclasses.replace(reading, trim=planned.trim)


@step
class Bias(Step):
    """Subtract the master bias (with a scaled dark, as part of bias + k (dark - bias))."""

    name, stage, missing_flag = "bias", "arithmetic", "NOBIAS"

    def choose(self, light: Light) -> None:
        light.bias = light.given.get("bias")

    def missing(self, light: Light) -> bool:
        return light.bias is None and light.dark_mode != "unscaled"


@step
class Dark(Step):
    """Subtract the master dark: as it is when its exposure is the light's (it includes
    the bias), else scaled by the exposures' ratio, k (dark - bias)."""

    name, stage, missing_flag = "dark", "arithmetic", "NODARK"

    def choose(self, light: Light) -> None:
        light.dark = light.given.get("dark")
        light.dark_mode, light.dark_scale = light.dark_choice(light.bias, light.dark)

    def missing(self, light: Light) -> bool:
        return light.dark is None


@step
class Flat(Step):
    """Divide by the master flat (median 1); pixels where it is weak are flagged WEAKFLAT."""

    name, stage, missing_flag = "flat", "arithmetic", "NOFLAT"

    def choose(self, light: Light) -> None:
        light.flat = light.given.get("flat")

    def missing(self, light: Light) -> bool:
        return light.flat is None


class ImageStep(Step):
    """An image step, off unless its settings say ``enabled: true``."""

    stage = "image"

    def enabled(self, settings):
        return bool(settings.get(self.name, {}).get("enabled", False))

    def options(self, light: Light) -> dict[str, Any]:
        """Its settings without ``enabled``: what its science function takes."""
        return {k: v for k, v in light.settings.get(self.name, {}).items() if k != "enabled"}


@step
class CosmicRays(ImageStep):
    """Find cosmic-ray hits (L.A.Cosmic through astroscrappy, ``ccdcal.cosmic``), flag them
    COSMIC and, with ``replace``, replace them by the local median. NCOSMIC says how many
    pixels; CRREPL how many were replaced."""

    name, mask_bits = "cosmic_rays", (COSMIC,)

    def apply(self, light: Light) -> None:
        from .cosmic import find_cosmic_rays  # here: astroscrappy only where it is used

        flagged = replaced = 0
        # a colour frame: each CFA channel on its own (the mosaic's colour steps would
        # look like sharp features to the Laplacian), written back into the planes
        views = [(slice(None), slice(None))] if light.cfa is None else [v for _, v in light.cfa.channels()]
        for view in views:
            planes = [np.ascontiguousarray(p[view]) for p in (light.image, light.uncert, light.mask)]
            found = find_cosmic_rays(
                *planes, gain=light.gain, read_noise=light.read_noise, settings=self.options(light), inplace=True
            )
            for plane, channel in zip((light.image, light.uncert, light.mask), planes):
                if light.cfa is not None:
                    plane[view] = channel
            flagged, replaced = flagged + found.flagged, replaced + found.replaced
        light.cards["NCOSMIC"] = (flagged, "pixels flagged COSMIC (L.A.Cosmic, astroscrappy)")
        if self.options(light).get("replace"):
            light.cards["CRREPL"] = (replaced, "of them replaced by their local median")


@step
class Fringe(ImageStep):
    """Subtract the fringe frame (``given['fringe']``, ``ccdcal.fringe``) scaled by the
    amplitude fitted on the light, when the plan gave it one (lights of the bands the
    profile's ``fringe.filters`` names); UNCERT gains the frame's noise. FRNGAMP (ADU),
    FRNGREL (of the sky) and the fringes' share of the sky before and after (FRNGBEF,
    FRNGAFT) go in the header."""

    name = "fringe"

    def enabled(self, settings):
        return bool(settings.get(self.name, {}).get("filters"))

    def apply(self, light: Light) -> None:
        from .fringe import FringeSettings, remove_fringes  # here: scipy only where it is used

        fringe = light.given.get("fringe")
        if fringe is None:
            return
        settings = FringeSettings.from_dict(light.settings.get(self.name))
        inputs = {str(v) for k, v in fringe.header.items() if k.startswith("IMCMB")}
        fit = remove_fringes(light.image, light.uncert, light.mask, fringe.data, fringe.uncert, fringe.mask, settings)
        light.cards.update(
            FRNGFILE=(fringe.path.name, "fringe frame subtracted"),
            FRNGSUM=(fringe.digest, "sha256[:16] of the fringe frame"),
            FRNGAMP=(round(fit.amplitude, 4), "[ADU] fringe frame x this was subtracted"),
            FRNGAERR=(round(fit.amplitude_error, 4), "[ADU] 1 sigma of FRNGAMP"),
            FRNGREL=(round(fit.relative, 5), "FRNGAMP / sky: 1 = the frame's average fringes"),
            FRNGBEF=(round(fit.before, 6), f"fringes / sky before ({settings.smoothing}-px smoothed rms)"),
            FRNGAFT=(round(fit.after, 6), "fringes / sky after"),
            FRNGSELF=(ascii_header_text(light.source) in inputs, "this light is one of the fringe frame's inputs"),
        )


@step
class Cosmetic(ImageStep):
    """Replace the pixels the masters flag BADPIX (hot, dead; ``bits``) by the median of
    their usable neighbours (``ccdcal.cosmetic``), as Siril's and WBPP's cosmetic
    correction do; they stay flagged. NCOSMETC says how many were replaced."""

    name = "cosmetic"

    def apply(self, light: Light) -> None:
        from .cosmetic import correct_cosmetic

        done = correct_cosmetic(light.image, light.uncert, light.mask, self.options(light), inplace=True, cfa=light.cfa)
        light.cards["NCOSMETC"] = (done.replaced, "flagged pixels replaced by their local median")
        if done.unfilled:
            light.cards["NCOSUNFL"] = (done.unfilled, "flagged pixels with no usable neighbour, kept")


#: The image steps' names: each is also the profile section of its settings (and a
#: ``Calibrator`` parameter, a product setting).
IMAGE_STEPS = tuple(name for name, s in STEPS.items() if s.stage == "image")


def light_steps(names: Iterable[str] | None = None) -> list[Step]:
    """The steps named (``DEFAULT_STEPS`` when None), checked: known, each once, the
    stages in order (raw, arithmetic, image) and the raw and arithmetic steps in their
    physical order. ValueError saying what is wrong."""
    names = list(DEFAULT_STEPS if names is None else names)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(map(repr, unknown))}; known: {', '.join(STEPS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"step(s) listed twice: {', '.join(repeated)}")
    steps = [STEPS[n] for n in names]
    ranks = [STAGES.index(s.stage) for s in steps]
    if ranks != sorted(ranks):
        raise ValueError(
            f"steps {names}: raw steps (overscan, trim) come first, then the arithmetic "
            "(bias, dark, flat), then image steps"
        )
    fused = [n for n in names if STEPS[n].stage != "image"]
    canonical = [n for n in STEPS if n in fused]
    if fused != canonical:
        raise ValueError(f"steps {names}: {', '.join(canonical)} must be in this order (one pass does them)")
    return steps


def masters_wanted(names: Iterable[str] | None, kind: str) -> tuple[str, ...]:
    """The masters ('bias', 'dark', 'flat') a frame of ``kind`` is calibrated with under a
    camera's ``steps`` (None: the default): a light, each one listed; a calibration frame,
    those listed that come before its own kind (a flat: bias and dark)."""
    listed = [s.name for s in light_steps(names) if s.stage == "arithmetic"]
    if kind == "light":
        return tuple(listed)
    order = [name for name, s in STEPS.items() if s.stage == "arithmetic"]
    return tuple(n for n in listed if kind in order and order.index(n) < order.index(kind))


def steps_run(names: Iterable[str] | None, settings: Mapping[str, Mapping[str, Any]]) -> list[Step]:
    """The steps named (``light_steps``) that their ``settings`` enable."""
    return [s for s in light_steps(names) if s.enabled(settings)]


def in_stage(steps: Iterable[Step], stage: str) -> list[Step]:
    return [s for s in steps if s.stage == stage]


def reading_layout(planned: Any, steps: Iterable[Step]) -> Any:
    """The layout (``overscan.Layout``) the raw frame is read with: the ``planned`` one as
    far as the raw steps take it; with none, the whole frame, uncorrected."""
    reading = dataclasses.replace(planned, trim=Section.full(planned.raw_shape), amplifiers=(), method="none")
    for raw_step in in_stage(steps, "raw"):
        reading = raw_step.read(planned, reading)
    return reading


def missing_flags(steps: Iterable[Step], light: Light) -> list[str]:
    """CALFLAGS of the listed arithmetic steps whose master the light lacks."""
    return [s.missing_flag for s in in_stage(steps, "arithmetic") if s.missing(light)]


def history(steps: Iterable[Step]) -> str:
    """The steps as the HISTORY card says them ('overscan/trim, bias, dark, flat')."""
    names = [s.name for s in steps]
    if "overscan" in names and "trim" in names:
        names[names.index("overscan")] = "overscan/trim"
        names.remove("trim")
    return ", ".join(names)
