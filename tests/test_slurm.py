"""The demo night on a real SLURM cluster, through the project's SLURM profile.

The suite finds a running single-node SLURM (``.ci/run`` starts one with
``tools/slurm/start_slurm.sh``) or, as root, starts it. Without root or SLURM the module
is skipped, saying why; in CI (CI=true) it fails instead, since there it must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, SNAKEFILE, SNAKEMAKE, fault_env, run_snakemake, tree_digests, unavailable

START = REPO / "tools" / "slurm" / "start_slurm.sh"
# the project's profile, with the test cluster's short status intervals
PROFILE_ARGS = (
    "--workflow-profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--latency-wait",
    "5",
    "--jobs",
    "8",
    "--slurm-no-account",
)


def cluster_answers() -> bool:
    return (
        shutil.which("sbatch") is not None and subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="module")
def cluster():
    if cluster_answers():
        return
    if os.geteuid() != 0:
        unavailable("no SLURM cluster answers and starting one needs root")
    started = subprocess.run(
        ["bash", str(START)], env={**os.environ, "SLURM_CPUS": "8"}, capture_output=True, text=True
    )
    if started.returncode != 0 or not cluster_answers():
        unavailable(f"could not start SLURM: {started.stdout[-1500:]}{started.stderr[-1500:]}")


def test_slurm_run_is_byte_identical_to_a_local_run(cluster, demo_night, tmp_path):
    out = tmp_path / "slurm"
    result = run_snakemake(demo_night["raw"], out, *PROFILE_ARGS)
    log = result.stdout + result.stderr
    assert "has been submitted with SLURM jobid" in log  # really went through sbatch
    assert "rule_master_bias" in log  # the pixel jobs ran as SLURM jobs
    # the bookkeeping ran in Snakemake's own process, on the submit host: no queue wait
    # before the night's plan is known
    assert "rule_inventory" not in log and "rule_summary" not in log
    local, remote = tree_digests(demo_night["out"]), tree_digests(out)
    assert len(local) > 20 and remote == local


def _jobs() -> list[tuple[str, str]]:
    """(job id, comment) of this user's queued and running jobs; the comment names the rule."""
    listing = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True).stdout
    return [tuple(line.split("|", 1)) for line in listing.splitlines() if "|" in line]


def test_a_cancelled_job_is_redone_by_a_rerun_and_nothing_else(cluster, demo_night, tmp_path):
    """A master flat job is held just before it puts its master in place (the fault hook
    of tests/faults, which sbatch hands on with the environment), then cancelled with
    scancel: no race with a job that finishes before the cancel reaches it."""
    out, faults = tmp_path / "fault", tmp_path / "faults"
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / SNAKEFILE),
        "--directory",
        str(REPO),
        "--config",
        f"raw_dir={demo_night['raw']}",
        f"output_dir={out}",
        *PROFILE_ARGS,
        "--retries",
        "0",
    ]
    env = {**os.environ, **fault_env(faults, CCDCAL_PAUSE_AT=r"/masters/flat_[^/]*\.fits$")}
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (faults / "paused").exists():
        assert run.poll() is None, f"the run ended before a master flat was held:\n{run.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no master flat job was held"
        time.sleep(0.1)
    held = Path((faults / "paused").read_text().split(" ", 1)[1].strip()).stem
    cancelled = [job_id for job_id, comment in _jobs() if held in comment]
    assert len(cancelled) == 1, (held, _jobs())
    subprocess.run(["scancel", cancelled[0]], check=True)
    first_log, _ = run.communicate(timeout=600)
    assert run.returncode != 0, f"the run with a cancelled job should fail:\n{first_log[-3000:]}"
    assert not (out / "masters" / f"{held}.fits").exists()

    masters = out / "masters"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in masters.glob("*.fits")}
    assert any(n.startswith("bias_") for n in before), "nothing had completed before the cancel"

    rerun = run_snakemake(demo_night["raw"], out, *PROFILE_ARGS)
    log = rerun.stdout + rerun.stderr
    assert "rule_inventory" not in log and "rule_master_bias" not in log
    for name, (mtime, data) in before.items():
        path = masters / name
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data, f"{name} was redone"
    assert tree_digests(out) == tree_digests(demo_night["out"])
