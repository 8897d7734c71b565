"""kill -9 at any moment, and two runs at once: the same command then completes the night
with every output byte-identical to an uninterrupted run, with no --unlock, nothing
lost and nothing reported that is not there.

The run is paused at a chosen point (tests/faults/sitecustomize.py: just before a given
file is renamed or linked into place, i.e. with that file written but not yet there),
then its whole process group is killed with SIGKILL.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, fault_env, fresh_clone, run_snakemake, small_night, snakemake_command, tree_digests

#: Where to kill: the destination path (regex) whose placing the run is paused before.
KILL_POINTS = {
    # the checkpoint: inventory.csv written, plan.json not yet
    "inventory": r"/plan\.json$",
    # a setup's gain and read noise record written to its temporary file, not in place
    "noise": r"/work/noise/[^/]*\.json$",
    # a master flat written to its temporary file, not renamed yet
    "master": r"/masters/flat_[^/]*\.fits$",
    # a light group: one light's temporary file written, not in place
    "light group mid-write": r"/work/lights/[^/]+/ccd/lights/NGC7331_R_002\.fits$",
    # a light calibrated and filled into a temporary entry of the light cache, not committed
    "light cache filing": r"/work/cache/lights/[0-9a-f]{64}$",
    # publishing: the first light linked into calibrated/, the second not
    "publish": r"/calibrated/ccd/lights/NGC7331_R_002\.fits$",
    # the summary: summary.csv in place, summary.txt not
    "summary": r"/summary\.txt$",
}
OUTPUTS = ("**/*.fits", "**/*.csv", "**/*.json", "summary.txt")


def outputs(out: Path) -> dict[str, str]:
    """Every output's digest; the light cache's records hold file times and are left out
    (its files are the published lights, compared as such)."""
    return {k: v for k, v in tree_digests(out, OUTPUTS).items() if not re.fullmatch(r"work/cache/.*\.json", k)}


@pytest.fixture(scope="module")
def reference(demo_raw, tmp_path_factory):
    """The small night and the outputs of an uninterrupted run."""
    base = tmp_path_factory.mktemp("kill")
    raw = small_night(demo_raw, base / "raw")
    run_snakemake(raw, base / "reference")
    digests = outputs(base / "reference")
    assert len(digests) > 15
    return {"raw": raw, "digests": digests}


def start_paused(
    raw: Path, out: Path, faults: Path, pause_at: str, checkout: Path = REPO, log: Path | None = None
) -> subprocess.Popen:
    """Start the workflow in a process group of its own and wait until it is paused."""
    env = {**os.environ, **fault_env(faults, CCDCAL_PAUSE_AT=pause_at)}
    handle = open(log or faults / "run.log", "w")
    process = subprocess.Popen(
        snakemake_command(raw, out, checkout=checkout),
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not (faults / "paused").exists():
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended before pausing at {pause_at}:\n" + (faults / "run.log").read_text()[-3000:]
            )
        assert time.monotonic() < deadline, f"never reached {pause_at}"
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_anywhere_the_same_command_completes_identically(point, reference, tmp_path):
    out, faults = tmp_path / "out", tmp_path / "faults"
    process = start_paused(reference["raw"], out, faults, KILL_POINTS[point])
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert outputs(out) != reference["digests"]  # the night really was cut short

    result = run_snakemake(reference["raw"], out, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LockException" not in result.stderr
    assert outputs(out) == reference["digests"]
    assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"


def test_killed_while_taking_lights_from_the_cache_the_same_command_completes_identically(reference, tmp_path):
    """A group's folder deleted by hand: its job reruns and links its lights from the light
    cache; killed half-way, the same command again gives the uninterrupted run's outputs,
    still without calibrating a light."""
    out, faults = tmp_path / "out", tmp_path / "faults"
    run_snakemake(reference["raw"], out)
    (group,) = (p for p in (out / "work" / "lights").iterdir() if p.is_dir())
    shutil.rmtree(group)
    process = start_paused(reference["raw"], out, faults, KILL_POINTS["light group mid-write"])
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert outputs(out) != reference["digests"]

    result = run_snakemake(reference["raw"], out, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert outputs(out) == reference["digests"]
    log = (out / "logs" / "lights" / f"{group.name}.log").read_text()
    assert "light cache: 3 lights reused, 0 calibrated now" in log
    assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"


def test_a_second_run_on_the_same_output_dir_is_refused_naming_the_first(reference, tmp_path):
    """Two checkouts on one output_dir deleted each other's files; now the second refuses
    at once, names the first, and the first completes untouched."""
    checkout = fresh_clone(tmp_path / "checkout")
    out, faults = tmp_path / "out", tmp_path / "faults"
    first = start_paused(reference["raw"], out, faults, KILL_POINTS["master"])
    try:
        second = run_snakemake(reference["raw"], out, check=False, checkout=checkout)
        said = second.stdout + second.stderr
        assert second.returncode != 0
        assert "in use by another ccdcal run" in said and f"pid {first.pid} " in said, said[-2000:]
    finally:
        (faults / "release").touch()
    assert first.wait(timeout=300) == 0, (faults / "run.log").read_text()[-3000:]
    assert outputs(out) == reference["digests"]
