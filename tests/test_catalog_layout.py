"""The workflow as the Snakemake workflow catalog, snakedeploy and a fresh clone see it, and
the package as ``pip install .`` gives it (issue #16): the catalog's files, the conda
environments' pins, the bundled test night run as the catalog's CI runs it, a deployment
made by snakedeploy, and the README's Python example and ``ccdcal plan`` in a clean
virtual environment."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from conftest import REPO, SNAKEFILE, SNAKEMAKE, fresh_clone, unavailable
from packaging.specifiers import SpecifierSet

from ccdcal import simulate
from ccdcal.cli import night_plan
from ccdcal.products import write_product

BIN = Path(sys.executable).parent
TEST_NIGHT = Path(".test") / "raw"
#: The bundled night's lights, their sky (e-) and their camera's gain (e-/ADU), as
#: simulate.night_tiny() makes them.
TEST_LIGHTS = ["ccd/lights/light_V_60s_001.fits", "ccd/lights/light_V_60s_002.fits"]
TEST_SKY_E, TEST_GAIN = 800.0, 1.5


def run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, env=env)


def said(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-3000:] + result.stderr[-3000:]


def job_counts(dry_run: subprocess.CompletedProcess) -> dict[str, int]:
    """The job stats table of a dry run: rule -> number of jobs."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry_run.stdout, re.M) if m[1] != "total"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("clone") / "ccdcal")


def assert_test_night_calibrated(out: Path) -> None:
    """The bundled night's outputs in ``out``: both lights calibrated with every step, the
    sky at its simulated level and UNCERT at the noise it should have, no check failed."""
    calibrated = sorted(p.relative_to(out / "calibrated").as_posix() for p in (out / "calibrated").rglob("*.fits"))
    assert calibrated == TEST_LIGHTS
    for rel in TEST_LIGHTS:
        with fits.open(out / "calibrated" / rel) as hdul:
            image, uncert, header = hdul[0].data, hdul["UNCERT"].data, hdul[0].header
            assert np.isfinite(image).all() and np.isfinite(uncert).all() and (uncert > 0).all()
            assert header["CALFLAGS"] == "OK" and header["GAINSRC"] == "header EGAIN"
            assert header["GAINUSED"] == TEST_GAIN
            assert header["DARKFILE"].startswith("dark_") and header["FLATFILE"].startswith("flat_")
            sky_adu = TEST_SKY_E / TEST_GAIN
            assert abs(np.median(image) / sky_adu - 1) < 0.05, (rel, np.median(image))
            # Poisson noise of the sky and the read noise (9 e-), plus a little of the masters'
            expected = np.sqrt(TEST_SKY_E + header["RNUSED"] ** 2) / TEST_GAIN
            assert 1.0 < np.median(uncert) / expected < 1.1, (rel, np.median(uncert), expected)
    with open(out / "qc.csv", newline="", encoding="utf-8") as handle:
        verdicts = [row["verdict"] for row in csv.DictReader(handle)]
    assert verdicts and "fail" not in verdicts


# ------------------------------------------------------------------ the catalog's files
def test_the_catalog_finds_the_workflow_its_schema_and_its_usage():
    assert (REPO / SNAKEFILE).is_file() and (REPO / "config" / "README.md").is_file()
    # a root Snakefile including workflow/Snakefile would drop `rule all` as the default target
    assert not (REPO / "Snakefile").exists()
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
    assert "raw_dir=" in usage["mandatory-flags"]["flags"] and "output_dir=" in usage["mandatory-flags"]["flags"]


def test_the_workflows_schema_is_the_packages_byte_for_byte():
    """The package reads its own copy (package data, for `pip install .`); the catalog and
    snakedeploy read workflow/schemas'. src/ccdcal's is the one to edit."""
    copy = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert not copy.is_symlink(), "GitHub serves a symlink as the path it points to, not the file"
    assert copy.read_bytes() == (REPO / "src" / "ccdcal" / "config.schema.yaml").read_bytes(), (
        "workflow/schemas/config.schema.yaml differs from src/ccdcal/config.schema.yaml: run `make schema`"
    )


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_conda_environments_pin_the_lock_and_take_ccdcal_from_the_index():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = dict(
        (canonical(name), version)
        for name, version in (
            line.partition("#")[0].strip().split("==")
            for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.partition("#")[0].strip()
        )
    )
    runtime = {canonical(re.split(r"[<>=!~;\[ ]", requirement)[0]) for requirement in project["dependencies"]}
    environments = {
        "workflow/envs/ccdcal.yaml": runtime,  # the jobs': no Snakemake
        "environment.yml": runtime | {"snakemake", "snakemake-executor-plugin-slurm", "snakedeploy"},
    }
    for path, expected in environments.items():
        dependencies = yaml.safe_load((REPO / path).read_text())["dependencies"]
        pins = dict(d.partition("=")[::2] for d in dependencies if isinstance(d, str))
        assert set(pins) - {"python", "pip"} == expected, path
        assert {name: pins[name] for name in expected} == {name: locked[name] for name in expected}, path
        assert SpecifierSet(project["requires-python"]).contains(pins["python"]), path
        from_pip = next(d["pip"] for d in dependencies if isinstance(d, dict))
        assert from_pip == [f"ccdcal=={project['version']}"], path  # from the index, never -e .


# ------------------------------------------------------------------ the bundled night
def test_the_bundled_night_is_what_the_simulator_writes(tmp_path):
    simulate.write_camera_night(tmp_path / "raw", tmp_path / "truth", simulate.night_tiny())

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    committed = files(REPO / TEST_NIGHT)
    assert committed.keys() == files(tmp_path / "raw").keys()
    assert committed == files(tmp_path / "raw"), ".test/raw is not what the simulator writes: run `make test-night`"
    assert sum(map(len, committed.values())) < 400_000


def test_the_test_night_runs_as_the_catalogs_ci_runs_it(clone):
    """From the root of a clone, `snakemake --cores 2 --directory .test`."""
    result = run([SNAKEMAKE, "--cores", "2", "--directory", ".test"], cwd=clone)
    assert result.returncode == 0, said(result)
    assert "ccdcal night summary" in result.stdout  # the workflow's onsuccess ran
    assert_test_night_calibrated(clone / ".test" / "results")


def test_a_fresh_clone_plans_and_lints_and_the_inventory_shows_the_whole_plan(clone):
    """No demo/ in a fresh clone: the default configuration names the bundled night. A dry
    run of a new night shows the inventory (a checkpoint) alone; after `--until inventory`
    it shows every job, as the README says."""
    assert not (clone / "demo").exists()
    dry_run = run([SNAKEMAKE, "-n"], cwd=clone)
    assert dry_run.returncode == 0, said(dry_run)
    assert f"Snakefile: {clone / SNAKEFILE}" in dry_run.stdout
    assert job_counts(dry_run) == {"inventory": 1, "all": 1}
    lint = run([SNAKEMAKE, "--lint"], cwd=clone)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, said(lint)

    inventory = run([SNAKEMAKE, "--cores", "1", "--until", "inventory"], cwd=clone)
    assert inventory.returncode == 0, said(inventory)
    whole_plan = run([SNAKEMAKE, "-n"], cwd=clone)
    assert job_counts(whole_plan) == {
        "measure_noise": 1,
        "master_bias": 1,
        "master_dark": 1,
        "master_flat": 1,
        "calibrate_lights": 1,
        "publish_calibrated": 1,
        "summary": 1,
        "all": 1,
    }, whole_plan.stdout[-3000:]


# ------------------------------------------------------------------ snakedeploy
def snakedeploy() -> str:
    found = BIN / "snakedeploy" if (BIN / "snakedeploy").exists() else shutil.which("snakedeploy")
    if found is None:
        unavailable("snakedeploy is not installed: pip install -r requirements.txt")
    return str(found)


def test_snakedeploy_deploys_the_workflow_from_a_clone(clone, tmp_path):
    dest = tmp_path / "deployed"
    deployed = run([snakedeploy(), "deploy-workflow", clone, dest, "--branch", "main"], cwd=tmp_path)
    assert deployed.returncode == 0, said(deployed)
    assert (dest / "config" / "config.yaml").read_bytes() == (clone / "config" / "config.yaml").read_bytes()
    assert (dest / "profiles" / "default" / "config.yaml").is_file()
    snakefile = dest / SNAKEFILE
    module = snakefile.read_text()
    # snakedeploy 0.17.1 names a local source's Snakefile relative to the deployment's own
    # workflow/ (dest/workflow/workflow/Snakefile): the clone's path goes there, as
    # github("<owner>/ccdcal", path="workflow/Snakefile", tag=...) does for one from GitHub.
    assert '"workflow/Snakefile"' in module and "use rule * from" in module, module
    snakefile.write_text(module.replace('"workflow/Snakefile"', f'"{clone / SNAKEFILE}"'))

    night = ["--config", f"raw_dir={clone / TEST_NIGHT}", "output_dir=results"]
    dry_run = run([SNAKEMAKE, "-n", *night], cwd=dest)
    assert dry_run.returncode == 0, said(dry_run)
    assert job_counts(dry_run) == {"inventory": 1, "all": 1}
    result = run([SNAKEMAKE, "--cores", "2", *night], cwd=dest)
    assert result.returncode == 0, said(result)
    assert_test_night_calibrated(dest / "results")


# ------------------------------------------------------------------ pip install .
#: What pip says when it cannot reach the package index.
NO_INDEX = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Network is unreachable|ConnectTimeoutError|ProxyError"
)
#: The README example's camera: 20 overscan rows below a 4096 x 4096 image (numpy [y, x]).
EXAMPLE_RAW_SHAPE, EXAMPLE_OVERSCAN_ROWS = (4116, 4096), 20
EXAMPLE_SIGNAL_ADU = 2000.0


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def write_example_inputs(folder: Path) -> None:
    """The files the README's example reads, for its camera: lights of 60 s and a flat
    (overscan level 1000 ADU), master_bias1 (the 2-D bias) and master_dark3 (300 s, bias
    included): a calibrated light is the signal, 2000 ADU."""
    rng = np.random.default_rng(16)
    ny, nx = EXAMPLE_RAW_SHAPE
    image = (slice(EXAMPLE_OVERSCAN_ROWS, ny), slice(0, nx))
    bias2d = rng.normal(5.0, 0.5, (ny - EXAMPLE_OVERSCAN_ROWS, nx)).astype(np.float32)
    dark_rate = np.float32(0.01)  # ADU/s
    planes = (np.full(bias2d.shape, 0.3, np.float32), np.zeros(bias2d.shape, np.uint8))
    (folder / "masters").mkdir()
    write_product(folder / "masters" / "master_bias1.fits", bias2d, *planes, fits.Header({"EXPTIME": 0.0}))
    dark = bias2d + dark_rate * 300
    write_product(folder / "masters" / "master_dark3.fits", dark, *planes, fits.Header({"EXPTIME": 300.0}))
    for name, kind, exposure, signal in (
        ("raw1", "LIGHT", 60.0, EXAMPLE_SIGNAL_ADU),
        ("raw2", "LIGHT", 60.0, EXAMPLE_SIGNAL_ADU),
        ("flat1", "FLAT", 5.0, 20000.0),
    ):
        raw = rng.normal(1000.0, 3.0, EXAMPLE_RAW_SHAPE)
        raw[image] += bias2d + dark_rate * exposure + signal
        header = fits.Header({"EXPTIME": exposure, "IMAGETYP": kind})
        fits.PrimaryHDU(np.round(raw).astype(np.uint16), header=header).writeto(folder / f"{name}.fits")


@pytest.fixture(scope="module")
def installed(clone, tmp_path_factory) -> dict:
    """A new virtual environment with `pip install <clone>` (not editable) done, and the
    environment to run it in (no PYTHONPATH to any src/). Versions pinned by the lock, so
    the outcome does not depend on the day's releases."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--constraint", clone / "requirements.txt", clone]
    result = run(pip, cwd=venv.parent, env=env)
    if result.returncode != 0 and NO_INDEX.search(result.stdout + result.stderr):
        unavailable(f"pip cannot reach the package index to install ccdcal in a clean venv:\n{said(result)}")
    assert result.returncode == 0, f"pip install of a clone failed:\n{said(result)}"
    return {"python": venv / "bin" / "python", "bin": venv / "bin", "env": env, "base": venv.parent}


@pytest.mark.slow
def test_pip_install_gives_the_package_without_the_clone(installed):
    imported = [installed["python"], "-c", "import ccdcal; print(ccdcal.__file__)"]
    where = run(imported, installed["base"], installed["env"])
    assert where.returncode == 0, said(where)
    assert Path(where.stdout.strip()).is_relative_to(installed["python"].parents[1]), where.stdout


@pytest.mark.slow
def test_the_readme_python_example_runs_in_a_clean_install(installed, tmp_path):
    write_example_inputs(tmp_path)
    result = run([installed["python"], "-c", readme_python_example()], tmp_path, installed["env"])
    assert result.returncode == 0, said(result)
    for name, gain in (("calib1", 16.0), ("calib2", 8.0)):  # the per-image override
        with fits.open(tmp_path / f"{name}.fits") as hdul:
            header, image = hdul[0].header, hdul[0].data
            assert image.shape == (EXAMPLE_RAW_SHAPE[0] - EXAMPLE_OVERSCAN_ROWS, EXAMPLE_RAW_SHAPE[1])
            assert header["GAINUSED"] == gain and header["BIASFILE"] == "master_bias1.fits"
            assert header["DARKFILE"] == "master_dark3.fits" and header["DARKMODE"] == "scaled"
            assert abs(float(np.median(image)) - EXAMPLE_SIGNAL_ADU) < 1.0, np.median(image)
    with fits.open(tmp_path / "flat1-cal.fits") as hdul:
        assert "FLATFILE" not in hdul[0].header and "BIASFILE" in hdul[0].header


@pytest.mark.slow
def test_ccdcal_plan_in_a_clean_install_plans_the_demo_night(installed, clone, tmp_path):
    """The demo night written by the installed simulator; the installed `ccdcal plan`
    gives the plan the source tree gives."""
    raw = tmp_path / "raw"
    written = run([installed["python"], "-m", "ccdcal.simulate", raw, tmp_path / "truth"], tmp_path, installed["env"])
    assert written.returncode == 0, said(written)
    config = clone / "config" / "config.yaml"
    ccdcal = installed["bin"] / "ccdcal"
    shown = run([ccdcal, "plan", raw, "--configfile", config], tmp_path, installed["env"])
    as_json = run([ccdcal, "plan", raw, "--configfile", config, "--json"], tmp_path, installed["env"])
    assert shown.returncode == 0 and as_json.returncode == 0, said(shown) + said(as_json)
    _, expected = night_plan(raw, yaml.safe_load(config.read_text()))
    assert json.loads(as_json.stdout) == json.loads(json.dumps(expected))
    assert f"masters ({len(expected['masters'])}):" in shown.stdout
    assert all(f"  {rel}: " in shown.stdout for rel in expected["lights"])
