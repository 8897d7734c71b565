"""What produced an output: software versions and a digest of the configuration.

Nothing here depends on the clock or the machine, so identical inputs and configuration
give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .steps import CORE_STEPS, DEFAULT_STEPS, IMAGE_STEPS

if TYPE_CHECKING:
    from astropy.io import fits

#: The settings every frame is read with: its steps, overscan and trim, gain, read noise, saturation.
_READING = ("steps", "overscan", "trim", "gain", "read_noise", "saturation")
#: The settings of a light's calibration up to the flat (its raw and arithmetic steps).
_LIGHT_ARITHMETIC = (
    *_READING,
    "keywords.exptime",
    "keywords.pedestal",
    "dark.exposure_tolerance",
    "flat.weak_threshold",
    "bayer_pattern",
)
#: The camera-profile settings that change each kind of product (dotted paths into the
#: profile). A product's header carries their digest (CFGDIGST), the workflow reruns a job
#: when they change (and only then), and a master's identity (MASTERID) includes them.
PRODUCT_SETTINGS: dict[str, tuple[str, ...]] = {
    "bias": (*_READING, "combine.bias", "bayer_pattern"),
    "dark": (
        *_READING,
        "combine.dark",
        "dark.hot_pixel_sigma",
        "bayer_pattern",
        "background",
    ),
    "flat": (
        *_READING,
        "combine.flat",
        "flat.normalize_each",
        "flat.cfa",
        "flat.normalize_region",
        "flat.weak_threshold",
        "flat.dead_fraction",
        "bayer_pattern",
        "flat.star_rejection",
        "background",
    ),
    "noise": _READING,
    # a fringe frame is made from lights calibrated up to the flat
    "fringe": (*_LIGHT_ARITHMETIC, "fringe"),
    "light": (*_LIGHT_ARITHMETIC, "output", *IMAGE_STEPS),
}

#: The default steps before the fringe step (which does nothing until fringe.filters names a band).
DEFAULT_BEFORE_FRINGE = tuple(n for n in DEFAULT_STEPS if n != "fringe")

#: Settings added after products were made, and when they do what was done before them:
#: then they are left out of a product's settings, so that products and library masters
#: made before keep their CFGDIGST and MASTERID.
NEUTRAL_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "steps": lambda names: tuple(names) in (DEFAULT_STEPS, CORE_STEPS, DEFAULT_BEFORE_FRINGE),
    **{name: (lambda section: not section.get("enabled")) for name in IMAGE_STEPS},
    "fringe": lambda section: not section.get("filters"),
    "bayer_pattern": lambda pattern: pattern == "header",
    "flat.cfa": lambda how: how == "together",
}

#: Top-level configuration keys that do not change the plan: where the data lie and how
#: much of the machine a job uses.
NOT_PLAN_SETTINGS = ("raw_dir", "output_dir", "threads", "memory_limit_mb", "keep_intermediates", "qc")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def settings_for(camera: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The part of a camera profile that changes a product of ``kind`` (bias, dark, flat,
    light), nested as in the profile, with the camera's name (``NEUTRAL_SETTINGS`` at
    their neutral value left out)."""
    settings: dict[str, Any] = {"name": camera.get("name", "")}
    for path in PRODUCT_SETTINGS[kind]:
        *parents, leaf = path.split(".")
        source = camera
        for key in parents:
            source = source.get(key, {})
        if path in NEUTRAL_SETTINGS and (leaf not in source or NEUTRAL_SETTINGS[path](source[leaf])):
            continue
        target = settings
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = source[leaf]
    return settings


def settings_digest(settings: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``settings`` (CFGDIGST)."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:16]


def plan_settings_digest(config: Mapping[str, Any]) -> str:
    """Digest of the configuration that the plan depends on (NOT_PLAN_SETTINGS left out)."""
    return settings_digest({k: v for k, v in config.items() if k not in NOT_PLAN_SETTINGS})


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    import astropy
    import numpy

    return {"ccdcal": __version__, "numpy": numpy.__version__, "astropy": astropy.__version__}


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of ccdcal's own code (every .py and .yaml file of the package, with its
    name): what the version number does not say between releases (a checkout, an
    editable install being worked on)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.iterdir()):
        if path.suffix in (".py", ".yaml"):
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def add_software_cards(header: fits.Header, config_digest_hex: str | None = None) -> None:
    """CCDCALV/NUMPYV/ASTROPYV (+ CFGDIGST, the ``settings_digest`` of what made it) cards."""
    versions = software_versions()
    header["CCDCALV"] = (versions["ccdcal"], "ccdcal version")
    header["NUMPYV"] = (versions["numpy"], "numpy version")
    header["ASTROPYV"] = (versions["astropy"], "astropy version")
    if config_digest_hex:
        header["CFGDIGST"] = (config_digest_hex, "sha256[:16] of the settings that made it")
