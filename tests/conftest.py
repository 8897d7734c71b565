"""Shared test helpers: configurations with every default filled by the workflow's own schema."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from snakemake.utils import validate

SCHEMA = str(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml")
# this checkout's package first: a worktree's tests test its own ccdcal, not the venv's install
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


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


# ------------------------------------------------------------------ the demo night
REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: Where a checkout keeps the workflow (the Snakemake workflow catalog's layout).
SNAKEFILE = Path("workflow") / "Snakefile"
ON_CI = os.environ.get("CI") == "true"


#: Fault injection for the hostile-night tests (see its sitecustomize.py).
FAULTS = Path(__file__).resolve().parent / "faults"


def python_path(*first: Path) -> str:
    """PYTHONPATH for the workflow's processes: ``first``, then this checkout's ``src`` (so a
    worktree's tests run its own ccdcal, not the one installed in the venv), then the
    caller's."""
    parts = [*map(str, first), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def unavailable(reason: str):
    """What a test needs is missing here: it is skipped saying why, but fails in CI
    (CI=true), where every test must run."""
    if ON_CI:
        pytest.fail(f"must run in CI: {reason}")
    pytest.skip(reason)


def snakemake_command(raw: Path, out: Path, *extra: str, checkout: Path = REPO) -> list[str]:
    """The command a user types in a checkout (default config + overrides), with the
    checkout's default profile, as Snakemake finds it when run from there."""
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(checkout / SNAKEFILE),
        "--directory",
        str(checkout),
        "--config",
        f"raw_dir={raw}",
        f"output_dir={out}",
        *extra,
    ]
    if "--workflow-profile" not in extra:
        cmd += ["--workflow-profile", str(checkout / "profiles" / "default")]
    if not any(arg.startswith(("--cores", "--workflow-profile", "-c")) for arg in extra):
        cmd += ["--cores", "2"]
    return cmd


def run_snakemake(
    raw: Path,
    out: Path,
    *extra: str,
    check: bool = True,
    env: dict | None = None,
    prefix: tuple[str, ...] = (),
    checkout: Path = REPO,
) -> subprocess.CompletedProcess:
    """Run the workflow as a user would; ``env`` adds variables, ``prefix`` wraps the
    command (e.g. setpriv)."""
    cmd = [*prefix, *snakemake_command(raw, out, *extra, checkout=checkout)]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": python_path(checkout / "src"), **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def fresh_clone(dest: Path) -> Path:
    """The repository as a fresh clone of it has it, with this working tree's changes:
    its tracked and new (not ignored) files in a new git repository at ``dest``, one
    commit on branch ``main``. No demo/, results or .snakemake/ of earlier runs."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in sorted(set(filter(None, listed.split("\0")))):
        source = REPO / rel
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    git = ["git", "-C", str(dest), "-c", "user.name=ccdcal tests", "-c", "user.email=tests@ccdcal.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fresh clone"]):
        subprocess.run([*git, *args], capture_output=True, check=True)
    return dest


def fault_env(fault_dir: Path, **settings: str) -> dict[str, str]:
    """Environment that loads tests/faults/sitecustomize.py with these CCDCAL_* settings."""
    fault_dir.mkdir(parents=True, exist_ok=True)
    return {"PYTHONPATH": python_path(FAULTS), "CCDCAL_FAULT_DIR": str(fault_dir), **settings}


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory):
    """The demo night's raw frames, written once: copy what a test needs, never change it."""
    from ccdcal.simulate import write_demo_night

    base = tmp_path_factory.mktemp("demo-raw")
    write_demo_night(base / "raw", base / "truth")
    return base / "raw"


#: The demo night's CCD in one band: 15 biases, 10 darks, 9 R flats, 3 R lights.
SMALL_NIGHT = ("ccd/bias/*.fits", "ccd/darks/*.fits", "ccd/flats/flat_R_*.fits", "ccd/lights/NGC7331_R_*.fits")


def small_night(demo_raw: Path, raw: Path) -> Path:
    """Copy the small night (SMALL_NIGHT) of the demo night into ``raw``."""
    for pattern in SMALL_NIGHT:
        for path in sorted(demo_raw.glob(pattern)):
            target = raw / path.relative_to(demo_raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return raw


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root: Path, patterns=("**/*.fits", "*.csv")) -> dict[str, str]:
    """sha256 of every output file under ``root`` (logs left out)."""
    found = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and "logs" not in path.parts:
                found[path.relative_to(root).as_posix()] = sha256(path)
    return found


@pytest.fixture(scope="session")
def demo_night(tmp_path_factory):
    """The simulated demo night, calibrated once locally with ``--cores 2``."""
    from ccdcal.simulate import write_demo_night

    base = tmp_path_factory.mktemp("demo")
    raw, truth = base / "raw", base / "truth"
    manifest = write_demo_night(raw, truth)
    raw_before = {
        p.relative_to(raw).as_posix(): (sha256(p), p.stat().st_mtime_ns) for p in raw.rglob("*") if p.is_file()
    }
    out = base / "out"
    result = run_snakemake(raw, out)
    return {
        "raw": raw,
        "truth": truth,
        "manifest": manifest,
        "out": out,
        "result": result,
        "raw_before": raw_before,
        "base": base,
    }


def o_direct_available(folder: Path) -> bool:
    """Whether files in ``folder`` can be opened with O_DIRECT."""
    try:
        probe = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0))
    except OSError:
        return False
    os.close(probe)
    os.unlink(folder / "probe")
    return hasattr(os, "O_DIRECT")
