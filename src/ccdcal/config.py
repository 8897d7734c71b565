"""The configuration schema and its defaults, for callers outside Snakemake.

The schema (``config.schema.yaml`` in this package; ``workflow/schemas/config.schema.yaml``
links to it) is the one place where defaults are written. ``validated`` fills them in as
Snakemake's ``validate`` does, so the package and the workflow see the same values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("ccdcal").joinpath("config.schema.yaml").read_text())


def _validator():
    import jsonschema
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
    Raises jsonschema.ValidationError naming the offending key."""
    extended, registry = _validator()
    result = copy.deepcopy(dict(config))
    extended(schema(), registry=registry, format_checker=extended.FORMAT_CHECKER).validate(result)
    return result


def camera_defaults(**overrides: Any) -> dict[str, Any]:
    """A camera profile with every default (as ``default_camera`` gets it), updated with
    ``overrides`` (validated too)."""
    config = validated({"raw_dir": ".", "output_dir": ".", "default_camera": dict(overrides)})
    return config["default_camera"]
