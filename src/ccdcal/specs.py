"""Building the small frozen dataclasses of options (combine, background) from config
mappings, and checking their values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

Spec = TypeVar("Spec")


def spec_from_mapping(cls: type[Spec], d: Mapping[str, Any] | Spec | None, what: str) -> Spec:
    """``cls`` built from a config mapping: ``None`` values mean the default; an unknown key
    raises ValueError naming it and the valid ones (the dataclass checks the values)."""
    if d is None:
        return cls()
    if isinstance(d, cls):
        return d
    if not isinstance(d, Mapping):
        raise ValueError(f"{what} spec must be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ValueError(
            f"unknown {what} option(s) {', '.join(repr(k) for k in unknown)}; valid options: {', '.join(sorted(known))}"
        )
    return cls(**{k: v for k, v in d.items() if v is not None})


def bad_option(what: str, key: str, message: str, value: Any) -> ValueError:
    """The error for a bad value: "combine option 'maxiters': must be >= 1, got 0"
    (``what``: the options' owner, a spec or a function)."""
    return ValueError(f"{what} {key!r}: {message}, got {value!r}")


def checked_int(what: str, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int, when it is a whole number (not a bool) >= ``minimum`` (and
    <= ``maximum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise bad_option(what, key, "must be an integer", value)
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise bad_option(what, key, "must be an integer", value)
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise bad_option(
            what, key, f"must be >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""), value
        )
    return int(value)


def checked_float(
    what: str, key: str, value: Any, minimum: float = 0.0, strict: bool = False, maximum: float | None = None
) -> float:
    """``value`` as a float, when it is a finite number (not a bool, not text) >= ``minimum``
    (> with ``strict``) and <= ``maximum`` when given."""
    if isinstance(value, (bool, str)):
        raise bad_option(what, key, "must be a number", value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise bad_option(what, key, "must be a number", value) from None
    if (
        not math.isfinite(out)
        or out < minimum
        or (strict and out == minimum)
        or (maximum is not None and out > maximum)
    ):
        raise bad_option(
            what,
            key,
            f"must be finite and {'>' if strict else '>='} {minimum:g}"
            + (f" and <= {maximum:g}" if maximum is not None else ""),
            value,
        )
    return out


def checked_bool(what: str, key: str, value: Any) -> bool:
    """``value`` when it is true or false (not 1 or 'yes')."""
    if not isinstance(value, (bool, np.bool_)):
        raise bad_option(what, key, "must be true or false", value)
    return bool(value)


def checked_name(
    what: str, key: str, value: Any, allowed: Sequence[str], aliases: Mapping[str, str] | None = None
) -> str:
    """The name of ``allowed`` that ``value`` spells: case-folded, '-' read as '_', and an
    alias read as the name it stands for ('Average' -> 'mean')."""
    if not isinstance(value, str):
        raise bad_option(what, key, f"must be one of {', '.join(allowed)}", value)
    name = value.strip().lower().replace("-", "_")
    name = (aliases or {}).get(name, name)
    if name not in allowed:
        raise bad_option(what, key, f"must be one of {', '.join(allowed)}", value)
    return name
