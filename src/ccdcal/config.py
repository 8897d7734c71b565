"""The configuration schema and its defaults, for callers outside Snakemake.

The schema (``config.schema.yaml`` in this package) is the one place where defaults are
written; ``workflow/schemas/config.schema.yaml`` is a byte-for-byte copy for the workflow
catalog and snakedeploy (``make schema`` writes it, a test checks it). ``validated`` fills
the defaults in; the workflow validates its configuration with it too, so the package and
the workflow see the same values and, for a configuration that is wrong, the same short
message (``ConfigError``, from ``error_message``): where, what was given and what is
allowed.
"""

from __future__ import annotations

import copy
import difflib
import textwrap
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

#: How to give each folder a run needs, said when it is missing.
REQUIRED_HINTS = {
    "raw_dir": "pass --config raw_dir=FOLDER (the folder of the night's raw frames)",
    "output_dir": "pass --config output_dir=FOLDER (where masters, calibrated frames and the summary go)",
}

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


class ConfigError(jsonschema.ValidationError):
    """A configuration the schema refuses. Its text is the short message of
    ``error_message`` (a few lines), not jsonschema's dump of the schema; it is still a
    jsonschema.ValidationError, with the original error's path, value and schema."""

    def __init__(self, error: jsonschema.ValidationError):
        super().__init__(
            error.message,
            validator=error.validator,
            path=error.path,
            context=error.context,
            cause=error.cause,
            validator_value=error.validator_value,
            instance=error.instance,
            schema=error.schema,
            schema_path=error.schema_path,
        )
        self.short = error_message(error)

    def __str__(self) -> str:
        return self.short


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("ccdcal").joinpath("config.schema.yaml").read_text())


def _validator():
    from referencing import Registry, Resource

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        for name, sub in properties.items():
            if "default" in sub and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    extended = jsonschema.validators.extend(base, {"properties": set_defaults})
    registry = Registry().with_resource("urn:ccdcal", Resource.from_contents(schema()))
    return extended, registry


def validated(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` checked against the schema, every default filled in.
    Raises ConfigError (a jsonschema.ValidationError) whose text says, in a few lines,
    which key is wrong, its value and what is allowed (``error_message``)."""
    extended, registry = _validator()
    result = copy.deepcopy(dict(config))
    checker = extended(schema(), registry=registry, format_checker=extended.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(checker.iter_errors(result))
    if error is not None:
        raise ConfigError(error)
    return result


def unpaired_raw_dir_message(given: Mapping[str, Any]) -> str | None:
    """The error for a run given a raw_dir but no output_dir (``given``: what the command
    line gave, ``--configfile`` and ``--config``), else None. The workflow's
    config/config.yaml names both, for the bundled test night, so that ``snakemake -n``
    works in a fresh clone; a night given without its own output_dir would be calibrated
    into that one's."""
    if "raw_dir" in given and "output_dir" not in given:
        return f"config: output_dir is not set: {REQUIRED_HINTS['output_dir']}"
    return None


def camera_defaults(**overrides: Any) -> dict[str, Any]:
    """A camera profile with every default (as ``default_camera`` gets it), updated with
    ``overrides`` (validated too)."""
    config = validated({"raw_dir": ".", "output_dir": ".", "default_camera": dict(overrides)})
    return config["default_camera"]


# ------------------------------------------------------------------ short messages
def key_path(path: Any) -> str:
    """A path into the configuration as it is written: cameras[0].overscan.method."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _value(value: Any, width: int = 80) -> str:
    """A value as YAML writes it inline, shortened to ``width`` characters."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip() or repr(value)
    if isinstance(value, str):
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _listing(label: str, items: list[str]) -> list[str]:
    """'  label: a, b, c' wrapped at 100 columns."""
    return textwrap.wrap(f"{label}: {', '.join(items)}", 100, initial_indent="  ", subsequent_indent="    ")


def _suggestion(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_names(types: Any) -> str:
    names = [_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return " or ".join(names)


def _known_keys(subschema: Mapping[str, Any]) -> list[str]:
    keys = list(subschema.get("properties", {}))
    names = subschema.get("propertyNames", {})
    keys += [k for k in names.get("enum", []) if k not in keys]
    return keys


def _resolve(subschema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A subschema with its local $ref ('#/$defs/...') merged in (one level)."""
    ref = subschema.get("$ref", "")
    if not ref.startswith("#/"):
        return subschema
    target: Any = schema()
    for part in ref[2:].split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in subschema.items() if k != "$ref"}}


def _expected(subschema: Mapping[str, Any]) -> str:
    """What a subschema takes, in a few words: 'an integer', 'one of none, mean'."""
    subschema = _resolve(subschema)
    if "const" in subschema:
        return _value(subschema["const"])
    if "enum" in subschema and len(subschema["enum"]) == 1:
        return _value(subschema["enum"][0])
    if "enum" in subschema:
        return "one of " + ", ".join(_value(v) for v in subschema["enum"])
    for branches in ("oneOf", "anyOf"):
        if branches in subschema:
            return " or ".join(_expected(b) for b in subschema[branches])
    if "type" in subschema:
        return _type_names(subschema["type"])
    return "see config/README.md"


def error_message(error: jsonschema.ValidationError) -> str:
    """A configuration error in a few lines (under 10): the key path, the value given and
    what is allowed there: the known keys for an unknown key, the allowed values for a
    value not among them, the expected type for a value of another type."""
    while (  # a value that fits none of the forms a key takes: say them all
        error.parent is not None
        and error.parent.validator in ("oneOf", "anyOf")
        and list(error.parent.absolute_path) == list(error.absolute_path)
        and error.validator in ("type", "enum", "const")
    ):
        error = error.parent
    path = key_path(error.absolute_path)
    where = path or "the configuration"
    kind = error.validator
    given = _value(error.instance)
    lines: list[str]
    if kind == "additionalProperties" and isinstance(error.instance, Mapping):
        known = _known_keys(error.schema)
        unknown = [k for k in error.instance if k not in known]
        lines = [
            f"config: unknown key {_join(path, str(k))} (value {_value(error.instance[k])}){_suggestion(k, known)}"
            for k in unknown[:3]
        ]
        if len(unknown) > 3:
            lines.append(f"config: and {len(unknown) - 3} more unknown keys in {where}")
        lines += _listing(f"the keys of {where}" if path else "the top-level keys", known)
    elif kind == "enum" and list(error.relative_schema_path)[-2:-1] == ["propertyNames"]:
        known = [str(k) for k in error.validator_value]
        lines = [f"config: unknown key {_join(path, str(error.instance))}{_suggestion(error.instance, known)}"]
        lines += _listing(f"the keys of {where}", known)
    elif kind == "required":
        present = error.instance if isinstance(error.instance, Mapping) else {}
        key = next((k for k in error.validator_value if k not in present), str(error.validator_value))
        if not path and key in REQUIRED_HINTS:
            return f"config: {key} is not set: {REQUIRED_HINTS[key]}"
        lines = [f"config: {_join(path, key)} is missing (it is required)"]
    elif kind == "enum":
        choices = [str(v) for v in error.validator_value]
        lines = [f"config: {where} is {given}, which is not allowed{_suggestion(error.instance, choices)}"]
        lines += _listing("allowed values", [_value(v) for v in error.validator_value])
    elif kind == "const":
        lines = [f"config: {where} is {given}; expected {_value(error.validator_value)}"]
    elif kind == "type":
        lines = [f"config: {where} is {given}; expected {_type_names(error.validator_value)}"]
    elif kind in ("oneOf", "anyOf"):
        lines = [f"config: {where} is {given}; expected {_expected(error.schema)}"]
    elif kind in _BOUNDS:
        lines = [f"config: {where} is {given}; expected {_BOUNDS[kind]} {_value(error.validator_value)}"]
    elif kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        lines = [f"config: {where} is {given}; expected a list of {bound} {error.validator_value} item(s)"]
    elif kind == "pattern":
        described = _resolve(error.schema).get("description")
        lines = [f"config: {where} is {given}, which is not of the form expected"]
        lines += textwrap.wrap(
            f"expected: {_shorten(described or error.validator_value)}",
            100,
            initial_indent="  ",
            subsequent_indent="    ",
        )
    else:
        lines = [f"config: {where} is {given}: {_shorten(error.message)}"]
    return "\n".join(lines[:9])


_BOUNDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "above",
    "exclusiveMaximum": "below",
}


def _shorten(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
