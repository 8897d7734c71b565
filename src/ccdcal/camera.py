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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

#: The calibration frames' types, each combined into masters of that type; also the
#: calibration steps, in the order they are applied.
MASTER_TYPES = ("bias", "dark", "flat")
#: The masters a light may be calibrated with: the calibration frames' and the fringe frame
#: (made from lights of a red band, ``ccdcal.fringe``).
LIGHT_MASTERS = (*MASTER_TYPES, "fringe")
#: Every frame type the inventory gives a frame it calibrates.
FRAME_TYPES = (*MASTER_TYPES, "light")

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
class PhysicalRange:
    """The values a physical quantity can take: ``low`` to ``high`` in ``unit``, each end
    included unless it is open."""

    noun: str
    unit: str
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, number: float) -> bool:
        above = number > self.low if self.low_open else number >= self.low
        below = number < self.high if self.high_open else number <= self.high
        return math.isfinite(number) and above and below

    def problem(self, keyword: str, number: float, shown: str | None = None) -> str:
        """'' when ``number`` is within the range, else why not, naming ``keyword`` and the
        value (``shown``, default '<number> <unit>')."""
        if self.contains(number):
            return ""
        shown = shown or f"{number_text(number)} {self.unit}"
        return f"{keyword} {shown} is not a physical {self.noun} ({self})"

    def __str__(self) -> str:
        low, high = number_text(self.low), number_text(self.high)
        ends = [end for end, is_open in ((low, self.low_open), (high, self.high_open)) if is_open]
        excluded = ", both excluded" if len(ends) == 2 else "".join(f", {e} excluded" for e in ends)
        return f"{low} to {high} {self.unit}{excluded}"


def number_text(number: float) -> str:
    """A number for a message: whole numbers without '.0' (4294967296), others with up to
    10 significant digits (-273.15, 1e+300)."""
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.10g}"


#: What header values (and the config's gain/read noise/saturation) can physically be;
#: a value outside is a broken header, never used.
#: - exposure, s: 0 to 100000 (27.8 h): longer than any night, so no single exposure is;
#:   EXPTIME = 1e300 would scale a dark by ~3e297.
#: - temperature, C (after the kelvin conversion): above absolute zero, below 100 C (no
#:   sensor is read out hotter; 'auto' already reads larger numbers as kelvin).
#: - gain, e-/ADU: above 0 (a zero divides by zero downstream), below 10^4.
#: - read noise, e-: 0 or more, below 10^5.
#: - saturation, raw ADU: above 0, below 2^32 (the largest unsigned 32-bit raw value).
PHYSICAL_RANGES: dict[str, PhysicalRange] = {
    "exptime": PhysicalRange("exposure", "s", 0.0, 1e5),
    "temperature": PhysicalRange("temperature", "C", -273.15, 100.0, low_open=True, high_open=True),
    "gain": PhysicalRange("gain", "e-/ADU", 0.0, 1e4, low_open=True, high_open=True),
    "read_noise": PhysicalRange("read noise", "e-", 0.0, 1e5, high_open=True),
    "saturation": PhysicalRange("saturation", "ADU", 0.0, 2.0**32, low_open=True, high_open=True),
}


def physical_value(what: str, keyword: str, value: Any) -> tuple[float | None, str]:
    """A header value (number or text) as (number, '') when it is a number within
    ``PHYSICAL_RANGES[what]``, else (None, why), e.g. "EXPTIME 'abc' is not a number"."""
    number = to_float(value)
    if number is None:
        return None, f"{keyword} {value!r} is not a number"
    problem = PHYSICAL_RANGES[what].problem(keyword, number)
    return (None, problem) if problem else (number, "")


def card_value_text(image: str) -> str:
    """The value of an 80-character header card image as written: a quoted string with its
    quotes, else the text before any '/' comment (for messages about unparsable values)."""
    match = re.match(r"\s*('(?:[^']|'')*'?|[^/]*)", image[10:] if image[8:10] == "= " else "")
    return match.group(1).strip() if match else ""


@dataclass(frozen=True)
class TypeDecision:
    frame_type: str | None  # bias | dark | flat | light | ignore | None (undecided)
    source: str  # how it was decided, for the inventory


def _unparsable_card_errors() -> tuple[type[Exception], ...]:
    """What astropy raises for a card it cannot parse (imported when one is met: reading
    a camera's settings needs no astropy)."""
    from astropy.io.fits.verify import VerifyError

    return (VerifyError, ValueError)


class HeaderView:
    """Look up keywords in an image HDU's header, falling back to the primary header.

    Multi-extension files often keep IMAGETYP/EXPTIME in the primary header and the
    geometry (BIASSEC, TRIMSEC) in the image extension: the extension wins.
    """

    def __init__(self, *headers: Mapping[str, Any]):
        self._headers = [h for h in headers if h is not None]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``; a blank value, or a card astropy cannot parse, counts as absent."""
        for header in self._headers:
            if key in header:
                try:
                    value = header[key]
                except _unparsable_card_errors():  # 'Unparsable card', e.g. EXPTIME = 1.0.0
                    continue
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

    def unparsable(self, keys: list[str]) -> tuple[str | None, str | None]:
        """The first of ``keys`` whose card is there but cannot be parsed: (keyword, value as
        written, e.g. '1.0.0'), or (None, None)."""
        from astropy.io import fits

        for key in keys:
            for header in self._headers:
                if not isinstance(header, fits.Header) or key not in header:
                    continue
                try:
                    header[key]
                except _unparsable_card_errors():
                    return key, card_value_text(header.cards[key]._image or "")
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
            if value is None or not fnmatch.fnmatchcase(str(value).strip().lower(), str(wanted).strip().lower()):
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

    def keyword_value_or_unparsable(self, header: HeaderView, what: str) -> tuple[str | None, Any]:
        """``keyword_value``, or when no alias has a readable value, the first alias whose
        card cannot be parsed, with its value as written (text)."""
        key, value = self.keyword_value(header, what)
        if key is None:
            key, value = header.unparsable(self.config["keywords"][what])
        return key, value

    def exptime(self, header: HeaderView, problems: list[str] | None = None) -> float | None:
        """Exposure time in s; None when absent or not a physical exposure
        (``PHYSICAL_RANGES['exptime']``), and then why is appended to ``problems``."""
        key, value = self.keyword_value_or_unparsable(header, "exptime")
        if key is None:
            return None
        seconds, problem = physical_value("exptime", key, value)
        if problem and problems is not None:
            problems.append(problem)
        return seconds

    def temperature(
        self, header: HeaderView, what: str = "temperature", problems: list[str] | None = None
    ) -> float | None:
        """Sensor temperature in degrees C (kelvin converted, see ``temperature_unit``);
        None when absent, not a number or not physical, and then why is appended to
        ``problems``."""
        key, value = self.keyword_value_or_unparsable(header, what)
        if key is None:
            return None
        label = what.replace("_", " ")
        number = to_float(value)
        if number is None:
            problem = f"{key} {value!r} is not a number"
        else:
            celsius, shown = number, None
            unit = self.config["temperature_unit"]
            if unit == "K" or (unit == "auto" and number > 100.0):
                celsius = number - 273.15
                shown = f"{number_text(number)} K ({number_text(round(celsius, 3))} C)"
            problem = PHYSICAL_RANGES["temperature"].problem(key, celsius, shown)
            if not problem:
                return round(celsius, 3)
        if problems is not None:
            problems.append(f"{problem}: {label} unknown")
        return None

    def pedestal(self, header: HeaderView) -> tuple[str | None, float]:
        """(keyword, ADU) to add to a frame the camera software calibrated and offset by a
        pedestal (MaxIm DL's PEDESTAL = -100: add it to get zero-based ADU); (None, 0.0)
        when there is no such card or it is not a number."""
        key, value = self.keyword_value(header, "pedestal")
        number = to_float(value)
        return (key, number) if key is not None and number is not None else (None, 0.0)

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
        """A physical value (gain in e-/ADU, read_noise in e-, saturation in raw ADU) and
        where it came from: 'config', 'header KEY', or why it is unknown: 'unknown', or for
        a header value that is not a number or not physical (``PHYSICAL_RANGES``) e.g.
        'header EGAIN 0 e-/ADU is not a physical gain (0 to 10000 e-/ADU, both excluded):
        gain unknown'."""
        spec = self.config[what]
        if spec.get("value") is not None:  # the schema refuses values that are not physical
            return float(spec["value"]), "config"
        key = spec.get("keyword")
        if key:
            value = header.get(key)
            if value is None:
                value = header.unparsable([key])[1]
            if value is not None:
                number, problem = physical_value(what, key, value)
                if problem:  # '; ' would split the inventory's warnings
                    return None, f"header {problem}: {PHYSICAL_RANGES[what].noun} unknown"
                return number, f"header {key}"
        return None, "unknown"


#: The largest binning factor taken as one (a larger one, or one that is not a whole
#: number, is a broken header, not a readout mode).
MAX_BINNING = 256


def _binning_factor(keyword: str, value: Any) -> int:
    number = to_float(value)
    if number is None or not number.is_integer() or not 1 <= number <= MAX_BINNING:
        raise ValueError(f"{keyword} {value!r} is not a binning factor (a whole number from 1 to {MAX_BINNING})")
    return int(number)


def binning(header: HeaderView) -> str:
    """Binning as 'XxY' from XBINNING/YBINNING or CCDSUM ('2 1' -> '2x1'); '1x1' when absent.
    Raises ValueError naming the keyword when a factor is not a whole number from 1 to
    MAX_BINNING."""
    xb, yb = header.get("XBINNING"), header.get("YBINNING")
    if xb is not None or yb is not None:
        x = _binning_factor("XBINNING", xb) if xb is not None else None
        y = _binning_factor("YBINNING", yb) if yb is not None else x
        return f"{x or y}x{y}"
    ccdsum = header.get("CCDSUM")
    if ccdsum is not None:
        parts = str(ccdsum).split()
        if len(parts) == 2:
            return "x".join(str(_binning_factor("CCDSUM", p)) for p in parts)
    for key in ("BINNING", "BINNING_X"):
        value = header.get(key)
        if value is not None:
            factor = _binning_factor(key, value)
            return f"{factor}x{factor}"
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
