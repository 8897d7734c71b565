"""Shared test helpers: configurations with every default filled by the workflow's own schema."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from snakemake.utils import validate

SCHEMA = str(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml")


def validated_config(**overrides) -> dict:
    """A configuration dict validated against the schema (defaults filled in place)."""
    cfg = {"raw_dir": "raw", "output_dir": "out"}
    cfg.update(copy.deepcopy(overrides))
    validate(cfg, SCHEMA)
    return cfg


def validated_camera(**overrides) -> dict:
    """One camera profile (as in ``cameras[i]``), validated with every default filled."""
    camera = {"name": "cam"}
    camera.update(copy.deepcopy(overrides))
    return validated_config(cameras=[camera])["cameras"][0]


@pytest.fixture
def make_config():
    """``make_config(**overrides)`` -> validated configuration dict."""
    return validated_config


@pytest.fixture
def camera_profile():
    """``camera_profile(**overrides)`` -> validated camera profile dict (name 'cam' unless given)."""
    return validated_camera
