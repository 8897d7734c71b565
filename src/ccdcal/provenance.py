"""What produced an output: software versions and a digest of the configuration.

Nothing here depends on the clock or the machine, so identical inputs and configuration
give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any, Mapping

from astropy.io import fits

from . import __version__

#: Keys that say where the data lie, not how they are calibrated: left out of the digest
#: so that the same night calibrated into another folder gives identical files.
LOCATION_KEYS = ("raw_dir", "output_dir")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_digest(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the configuration (locations left out)."""
    relevant = {k: v for k, v in config.items() if k not in LOCATION_KEYS}
    return hashlib.sha256(canonical_json(relevant).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    import astropy
    import numpy

    return {"ccdcal": __version__, "numpy": numpy.__version__, "astropy": astropy.__version__}


def add_software_cards(header: fits.Header, config_digest_hex: str | None = None) -> None:
    """CCDCALV/NUMPYV/ASTROPYV (+ CFGDIGST) cards."""
    versions = software_versions()
    header["CCDCALV"] = (versions["ccdcal"], "ccdcal version")
    header["NUMPYV"] = (versions["numpy"], "numpy version")
    header["ASTROPYV"] = (versions["astropy"], "astropy version")
    if config_digest_hex:
        header["CFGDIGST"] = (config_digest_hex, "sha256[:16] of the ccdcal config")
