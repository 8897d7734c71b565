"""Camera profiles: which frames belong to a camera and how to read their headers.

A profile is the validated ``cameras[i]`` (or ``default_camera``) mapping of the
configuration (see ``workflow/schemas/config.schema.yaml``; validation fills every
default, so this module never invents one). Header values are free text: they are
normalised here and never used raw in file names (see ``safe_name``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Mapping

FRAME_TYPES = ("bias", "dark", "flat", "light")

#: Frame-type values seen in the wild (case-insensitive, spaces/underscores/dashes folded).
TYPE_SYNONYMS: dict[str, str] = {
    "bias": "bias",
    "biasframe": "bias",
    "zero": "bias",
    "masterbias": "bias",
    "dark": "dark",
    "darkframe": "dark",
    "darkflat": "dark",
    "flatdark": "dark",
    "darkflatframe": "dark",
    "flat": "flat",
    "flatfield": "flat",
    "flatframe": "flat",
    "skyflat": "flat",
    "domeflat": "flat",
    "twilightflat": "flat",
    "light": "light",
    "lightframe": "light",
    "object": "light",
    "science": "light",
    "target": "light",
}

#: File-name words, checked in this order (so 'darkflat_...' is a dark).
FILENAME_WORDS: tuple[tuple[str, str], ...] = (
    ("bias", "bias"),
    ("zero", "bias"),
    ("dark", "dark"),
    ("flat", "flat"),
)


def fold(value: Any) -> str:
    """Case-fold a header value and drop spaces, underscores and dashes: 'Bias Frame' -> 'biasframe'."""
    return re.sub(r"[\s_\-]+", "", str(value).strip().lower())


#: Longest ``safe_name``: a master name joins several, and a file name has 255 bytes.
SAFE_NAME_MAX = 40


def safe_name(value: Any, fallback: str = "none", limit: int = SAFE_NAME_MAX) -> str:
    """A header value made safe for a file name: [A-Za-z0-9.+-], other runs become '_', no
    leading or trailing '_' or '.'. Longer than ``limit``: cut, and the first 8 hex digits
    of the SHA-256 of the whole value appended, so different long values stay different."""
    text = re.sub(r"[^A-Za-z0-9.+\-]+", "_", str(value).strip()).strip("_.")
    if len(text) > limit:
        digest = hashlib.sha256(str(value).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        text = f"{text[: limit - 9].rstrip('_.')}-{digest}"
    return text or fallback


@dataclass(frozen=True)
class TypeDecision:
    frame_type: str | None  # bias | dark | flat | light | ignore | None (undecided)
    source: str  # how it was decided, for the inventory


class HeaderView:
    """Look up keywords in an image HDU's header, falling back to the primary header.

    Multi-extension files often keep IMAGETYP/EXPTIME in the primary header and the
    geometry (BIASSEC, TRIMSEC) in the image extension: the extension wins.
    """

    def __init__(self, *headers: Mapping[str, Any]):
        self._headers = [h for h in headers if h is not None]

    def get(self, key: str, default: Any = None) -> Any:
        for header in self._headers:
            if key in header:
                value = header[key]
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                return value
        return default

    def first(self, keys: list[str]) -> tuple[str | None, Any]:
        """The first of ``keys`` present with a value: (keyword, value), or (None, None)."""
        for key in keys:
            value = self.get(key)
            if value is not None:
                return key, value
        return None, None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


@dataclass
class CameraProfile:
    """A validated camera profile (a plain mapping from the config) with helpers."""

    config: dict[str, Any]
    name: str = field(default="")

    def __post_init__(self):
        if not self.name:
            self.name = self.config.get("name", "")

    # ------------------------------------------------------------------ matching
    def matches(self, rel_path: str, header: HeaderView) -> bool:
        """True when every configured header value matches and a path glob (if any) matches.

        An empty ``match`` matches every frame (profiles are tried in order).
        """
        match = self.config["match"]
        for key, wanted in match["header"].items():
            value = header.get(key)
            if value is None or not fnmatch.fnmatchcase(
                str(value).strip().lower(), str(wanted).strip().lower()
            ):
                return False
        if match["paths"]:
            return any(path_matches(rel_path, pattern) for pattern in match["paths"])
        return True

    # -------------------------------------------------------------- frame type
    def frame_type(self, rel_path: str, header: HeaderView) -> TypeDecision:
        """Decide the frame type: overrides, then keywords, then file-name words."""
        spec = self.config["frame_type"]
        for pattern, frame_type in spec["overrides"].items():
            if path_matches(rel_path, pattern):
                return TypeDecision(frame_type, f"override glob '{pattern}'")
        extra = {fold(k): v for k, v in spec["values"].items()}
        seen = []
        for key in spec["keywords"]:
            value = header.get(key)
            if value is None:
                continue
            folded = fold(value)
            if folded in extra:
                return TypeDecision(extra[folded], f"{key}='{value}' (config values)")
            if folded in TYPE_SYNONYMS:
                return TypeDecision(TYPE_SYNONYMS[folded], f"{key}='{value}'")
            seen.append(f"{key}='{value}'")
        if seen and spec["default"]:
            return TypeDecision(spec["default"], f"{seen[0]} (config default)")
        if spec["filename_words"]:
            name = PurePosixPath(rel_path).name.lower()
            for word, frame_type in FILENAME_WORDS:
                if word in name:
                    return TypeDecision(frame_type, f"file name word '{word}'")
        if seen:
            return TypeDecision(None, "unknown frame type " + ", ".join(seen))
        keys = "/".join(spec["keywords"])
        return TypeDecision(None, f"no {keys} keyword and no bias/dark/flat word in the file name")

    # ------------------------------------------------------------------ values
    def keyword_value(self, header: HeaderView, what: str) -> tuple[str | None, Any]:
        """(keyword, value) of the first alias of ``what`` (e.g. 'exptime') present."""
        return header.first(self.config["keywords"][what])

    def exptime(self, header: HeaderView) -> float | None:
        return to_float(self.keyword_value(header, "exptime")[1])

    def temperature(self, header: HeaderView, what: str = "temperature") -> float | None:
        """Sensor temperature in degrees C (kelvin converted, see ``temperature_unit``)."""
        value = to_float(self.keyword_value(header, what)[1])
        if value is None:
            return None
        unit = self.config["temperature_unit"]
        if unit == "K" or (unit == "auto" and value > 100.0):
            value -= 273.15
        return round(value, 3)

    def text(self, header: HeaderView, what: str) -> str:
        value = self.keyword_value(header, what)[1]
        return "" if value is None else str(value).strip()

    def number_or_text(self, header: HeaderView, what: str) -> str:
        """A setting (GAIN, OFFSET...) as text, '120' rather than '120.0'."""
        value = self.keyword_value(header, what)[1]
        if value is None:
            return ""
        number = to_float(value)
        if number is not None and number.is_integer():
            return str(int(number))
        return str(value).strip()

    def value_or_keyword(self, header: HeaderView, what: str) -> tuple[float | None, str]:
        """A physical value (gain, read_noise, saturation) and where it came from."""
        spec = self.config[what]
        if spec.get("value") is not None:
            return float(spec["value"]), "config"
        key = spec.get("keyword")
        if key:
            value = to_float(header.get(key))
            if value is not None:
                return value, f"header {key}"
        return None, "unknown"


def binning(header: HeaderView) -> str:
    """Binning as 'XxY' from XBINNING/YBINNING or CCDSUM ('2 1' -> '2x1'); '1x1' when absent."""
    xb, yb = header.get("XBINNING"), header.get("YBINNING")
    if xb is not None or yb is not None:
        return f"{int(to_float(xb) or 1)}x{int(to_float(yb or xb) or 1)}"
    ccdsum = header.get("CCDSUM")
    if ccdsum is not None:
        parts = str(ccdsum).split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return f"{parts[0]}x{parts[1]}"
    for key in ("BINNING", "BINNING_X"):
        value = to_float(header.get(key))
        if value is not None:
            return f"{int(value)}x{int(value)}"
    return "1x1"


def to_float(value: Any) -> float | None:
    """A header value as float, None when absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def path_matches(rel_path: str, pattern: str) -> bool:
    """Glob match of a raw_dir-relative POSIX path; '**' crosses folders, '*' does not."""
    regex = _glob_regex(pattern)
    return regex.fullmatch(rel_path) is not None


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE)


def profiles_from_config(config: Mapping[str, Any]) -> list[CameraProfile]:
    """Configured camera profiles, in match order."""
    return [CameraProfile(dict(c)) for c in config.get("cameras", [])]


def profile_for(
    rel_path: str, header: HeaderView, profiles: list[CameraProfile], default: Mapping[str, Any]
) -> CameraProfile:
    """The first configured profile matching the frame, else the default profile named
    after the frame's INSTRUME (or 'camera' when it has none)."""
    for profile in profiles:
        if profile.matches(rel_path, header):
            return profile
    profile = CameraProfile(dict(default))
    _, instrument = profile.keyword_value(header, "instrument")
    profile.name = default.get("name") or safe_name(instrument or "", fallback="camera")
    return profile
