"""A configuration the schema refuses is said in a few lines (ccdcal.config.error_message):
the key path, the value given and what is allowed there, never jsonschema's dump of the
schema; the same text from ccdcal.config.validated and from the workflow."""

from __future__ import annotations

import jsonschema
import pytest

from ccdcal.config import ConfigError, error_message, key_path, validated
from ccdcal.inventory import no_fits_message

BASE = {"raw_dir": "raw", "output_dir": "out"}


def message(**config) -> str:
    with pytest.raises(ConfigError) as info:
        validated({**BASE, **config})
    text = str(info.value)
    assert len(text.splitlines()) < 10, text
    assert "Failed validating" not in text and "description" not in text, text
    return text


@pytest.mark.parametrize(
    "config, words",
    [
        # a misspelled key at the top level
        ({"threds": 4}, ["unknown key threds", "value 4", "did you mean 'threads'", "memory_limit_mb, lights_per_job"]),
        # inside a camera profile
        (
            {"cameras": [{"name": "c", "overscn": {"method": "none"}}]},
            ["unknown key cameras[0].overscn", "{method: none}", "did you mean 'overscan'", "cameras[0]: name, match"],
        ),
        # inside a nested section of a camera profile
        (
            {"cameras": [{"name": "c", "overscan": {"metod": "polynomial"}}]},
            ["unknown key cameras[0].overscan.metod", "value 'polynomial'", "method, order, axis, regions"],
        ),
        (
            {"cameras": [{"name": "c", "matching": {"darkflat": {"windw_hours": 2}}}]},
            ["unknown key cameras[0].matching.darkflat.windw_hours", "value 2", "window_hours, prefer"],
        ),
        # a key of a section whose names are an enum (propertyNames)
        ({"cameras": [{"name": "c", "qc": {"gradiant": {}}}]}, ["unknown key cameras[0].qc.gradiant", "gradient"]),
        # a value that is not among the allowed ones
        (
            {"cameras": [{"name": "c", "overscan": {"method": "polynomal"}}]},
            [
                "cameras[0].overscan.method is 'polynomal'",
                "did you mean 'polynomial'",
                "'median_per_row', 'polynomial'",
            ],
        ),
        (
            {"missing_calibration": {"policy": "halt"}},
            ["missing_calibration.policy is 'halt'", "'flag', 'skip', 'stop'"],
        ),
        ({"default_camera": {"matching": {"flat": {"equal": ["filtre"]}}}}, ["default_camera.matching.flat.equal[0]"]),
        # a value of the wrong type
        ({"threads": "two"}, ["threads is 'two'", "expected an integer"]),
        ({"cameras": {"name": "c"}}, ["cameras is {name: c}", "expected a list"]),
        ({"lights_per_job": "many"}, ["lights_per_job is 'many'", "expected an integer or 'auto'"]),
        ({"cameras": [{"name": "c", "overscan": {"regions": "hdr"}}]}, ["regions is 'hdr'", "'header' or a list"]),
        # out of range, not of the form
        ({"memory_limit_mb": 12}, ["memory_limit_mb is 12", "at least 64"]),
        ({"cameras": [{"name": "c", "gain": {"value": 0}}]}, ["cameras[0].gain.value is 0", "above 0"]),
        ({"cameras": [{"name": "c", "trim": "[1:2]"}]}, ["cameras[0].trim is '[1:2]'", "a FITS section"]),
    ],
)
def test_a_refused_configuration_is_said_in_a_few_lines(config, words):
    text = message(**config)
    assert all(word in text for word in words), text


def test_a_missing_folder_says_how_to_give_it():
    for key in ("output_dir", "raw_dir"):
        with pytest.raises(ConfigError) as info:
            validated({k: v for k, v in BASE.items() if k != key})
        text = str(info.value)
        assert text.startswith(f"config: {key} is not set: pass --config {key}=FOLDER (") and "\n" not in text


def test_the_error_is_still_a_jsonschema_error_with_its_path():
    with pytest.raises(jsonschema.ValidationError) as info:
        validated({**BASE, "cameras": [{"name": "c", "overscan": {"method": "x"}}]})
    assert list(info.value.absolute_path) == ["cameras", 0, "overscan", "method"]
    assert error_message(info.value) == str(info.value)


def test_key_path_is_written_as_in_the_configuration():
    assert key_path(["cameras", 0, "overscan", "metod"]) == "cameras[0].overscan.metod"
    assert key_path(["threads"]) == "threads"
    assert key_path([]) == ""


def test_a_raw_dir_without_fits_files_is_said_naming_it():
    assert no_fits_message("/night", ["a.fits", "notes.txt"]) is None
    assert no_fits_message("/night", ["x/a.FIT.gz"]) is None
    empty = no_fits_message("/night", [])
    assert empty.startswith("raw_dir /night holds no files") and "\n" not in empty
    text = no_fits_message("/night", ["a.txt", "b.txt", "c.CR2", "README"])
    assert text.startswith("raw_dir /night holds 4 file(s) but no FITS file")
    assert "extensions seen: .txt (2), (none) (1), .cr2 (1)" in text
    blocked = no_fits_message("/night", [], ["private"])
    assert "1 folder(s) in it could not be read: private" in blocked
