"""The ``ccdcal`` command: ``ccdcal plan RAW_DIR`` prints the night's inventory and plan
without writing anything, and refuses a bad configuration in a few lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ccdcal(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ccdcal ARGS`` run in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "ccdcal", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_plan_prints_the_nights_plan_and_writes_nothing(demo_raw, tmp_path):
    before = sorted(p.relative_to(demo_raw) for p in demo_raw.rglob("*"))
    shown = ccdcal("plan", demo_raw, "--configfile", REPO / "config" / "config.yaml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    as_json = ccdcal("plan", demo_raw, "--configfile", REPO / "config" / "config.yaml", "--json", cwd=tmp_path)
    plan = json.loads(as_json.stdout)
    assert plan["lights"] and plan["masters"]
    for rel, light in plan["lights"].items():  # every light, with the masters it would get
        line = next(line for line in text.splitlines() if line.strip().startswith(rel + ":"))
        assert all(light[kind] in line for kind in ("bias", "dark", "flat") if light[kind])
    assert all(name in text for name in plan["masters"])
    assert "excluded (2):" in text and "truncated FITS file" in text and "not a FITS file" in text
    assert sorted(p.relative_to(demo_raw) for p in demo_raw.rglob("*")) == before
    assert not any(tmp_path.iterdir())  # nothing written where it ran either


def test_plan_refuses_a_bad_configuration_and_a_missing_folder(demo_raw, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("cameras: [{name: x, overscan: {metod: mean}}]\n")
    refused = ccdcal("plan", demo_raw, "--configfile", config, cwd=tmp_path)
    assert refused.returncode == 2
    assert "cameras[0].overscan.metod" in refused.stderr and "did you mean 'method'" in refused.stderr
    assert len(refused.stderr.splitlines()) < 10
    missing = ccdcal("plan", tmp_path / "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
