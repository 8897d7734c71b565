"""Building the small frozen dataclasses of options (combine, background) from config mappings."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

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
        raise ValueError(f"unknown {what} option(s) {', '.join(repr(k) for k in unknown)}; "
                         f"valid options: {', '.join(sorted(known))}")
    return cls(**{k: v for k, v in d.items() if v is not None})
