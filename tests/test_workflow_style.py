"""One code style: the Python passes `ruff check` and `ruff format --check` (pyproject.toml:
120 columns), the workflow `snakemake --lint` and `snakefmt --check`; every rule has a log, a
script and the jobs' conda environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

from conftest import SNAKEFILE, python_path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    """With the default configuration (the bundled test night), as in a fresh clone."""
    result = subprocess.run(
        [str(BIN / "snakemake"), "--lint", "--snakefile", str(REPO / SNAKEFILE), "--directory", str(REPO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Lints for" not in result.stdout + result.stderr


def test_ruff_check_and_format_are_clean():
    for command in (["check", "--output-format", "concise"], ["format", "--check"]):
        result = subprocess.run([str(BIN / "ruff"), *command, str(REPO)], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, f"ruff {command[0]}:\n" + result.stdout[-3000:] + result.stderr[-3000:]


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", str(REPO / "workflow")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]


#: The night's bookkeeping, run in Snakemake's own process (workflow/rules/common.smk,
#: run_bookkeeping_in_threads): small files read and written, no interpreter of their own.
BOOKKEEPING = {"inventory", "publish_calibrated", "summary"}


def test_every_rule_has_a_log_and_calls_one_script_or_one_logged_function():
    """Pixel jobs call one script in the jobs' environment; the bookkeeping jobs are local
    `run:` blocks that import one ccdcal function and call it with their log
    (``joblog.run_logged``)."""
    seen = set()
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule in re.split(r"\n(?=\s*(?:rule|checkpoint) )", text):
            if not re.match(r"\s*(rule|checkpoint) ", rule):
                continue
            name = rule.split()[1].rstrip(":")
            seen.add(name)
            body = textwrap.dedent(rule.strip("\n"))
            assert "\n    log:" in body, f"{smk.name}: rule {name} has no log"
            if name in BOOKKEEPING:
                run = body[body.index("\n    run:\n") :]
                assert "\n    localrule: True" in body, name
                assert len(re.findall(r"from ccdcal\.[\w.]+ import (\w+)", run)) == 1, name
                function = re.search(r"from ccdcal\.[\w.]+ import (\w+)", run)[1]
                assert re.search(rf"run_logged\(\s*log\[0\],\s*{function},", run), name
                continue
            assert "\n    script:" in body, f"{smk.name}: rule {name} calls no script"
            # paths in a rule are relative to its .smk file (--sdm conda builds this one)
            assert re.search(r'\n    conda:\n        "\.\./envs/ccdcal\.yaml"\n', body), f"{smk.name}: rule {name}"
    assert BOOKKEEPING <= seen
    assert (REPO / "workflow" / "envs" / "ccdcal.yaml").is_file()


def test_every_script_sets_up_its_log_before_it_imports_the_job():
    """So that an error importing the job's code (a missing library on a node) is in the
    log too (ccdcal.joblog)."""
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        lines = script.read_text().splitlines()
        setup = next(i for i, line in enumerate(lines) if line.startswith("setup_logging(snakemake.log[0])"))
        imports = [i for i, line in enumerate(lines) if line.startswith(("from ccdcal", "import ccdcal"))]
        assert lines[imports[0]] == "from ccdcal.joblog import setup_logging", script.name
        assert imports[0] < setup < imports[1], script.name


def imported_by(code: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code`` (with
    this checkout's ccdcal)."""
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {list(modules)!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": python_path()}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return done.stdout.split()


def test_the_publishing_job_and_the_light_cache_import_neither_numpy_nor_astropy():
    """The publishing job only links files: its start-up is Python's, not numpy's and
    astropy's (0.05 s against 0.4 s for a pixel job). A top-level import of either in a
    module it uses would bring that back."""
    code = "import ccdcal.publish, ccdcal.joblog"
    assert imported_by(code, ["numpy", "astropy", "matplotlib", "PIL"]) == []


#: Libraries no pixel job imports at start: the report's (matplotlib, and astropy's
#: visualization, which imports it), the configuration's (jsonschema, yaml; validated by
#: Snakemake's process), those only an option uses (scipy, astroscrappy), one no longer
#: used (photutils), and Snakemake beyond its script preamble. PIL: imported by the first
#: thumbnail a light job writes (not for lights taken from the light cache).
NO_JOB_IMPORTS = [
    "matplotlib",
    "astropy.visualization",
    "jsonschema",
    "yaml",
    "scipy",
    "astroscrappy",
    "photutils",
    "snakemake",
    "PIL",
]
#: Each stage's own code, which another stage's job does not import.
STAGE_CODE = {
    "masters": ["ccdcal.masters", "ccdcal.combine", "ccdcal.master_recipes", "ccdcal.background"],
    "lights": ["ccdcal.lights", "ccdcal.calibrator", "ccdcal.light_cache"],
    "noise": ["ccdcal.night_noise"],
    "bookkeeping": ["ccdcal.jobs.inventory", "ccdcal.plan", "ccdcal.matching", "ccdcal.publish"],
    "report": ["ccdcal.jobs.summary", "ccdcal.report", "ccdcal.report_pages", "ccdcal.config"],
}
#: The stage of each script of workflow/scripts.
SCRIPT_STAGES = {
    "build_master": "masters",
    "calibrate_lights": "lights",
    "measure_noise": "noise",
    "file_in_library": None,
    "import_master": "masters",
    "build_fringe": "lights",  # a fringe frame is made of lights calibrated by the light engine
}


def test_every_pixel_job_imports_only_its_own_stage():
    """Each pixel job starts an interpreter of its own (benchmarks/job_startup.py): its
    script imports the job module of its name (``ccdcal.jobs.<script>``) and, through
    it, none of the libraries of NO_JOB_IMPORTS and no other stage's code. Filing a
    master into the library imports neither numpy nor astropy."""
    scripts = sorted((REPO / "workflow" / "scripts").glob("*.py"))
    assert sorted(s.stem for s in scripts) == sorted(SCRIPT_STAGES)
    for script in scripts:
        imports = [line for line in script.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert any(line.startswith(f"from ccdcal.jobs.{script.stem} import ") for line in imports), script.name
        stage = SCRIPT_STAGES[script.stem]
        forbidden = [*NO_JOB_IMPORTS, *(m for s, code in STAGE_CODE.items() if s != stage for m in code)]
        if stage is None:
            forbidden += ["numpy", "astropy"]
        assert imported_by("\n".join(imports), forbidden) == [], script.name
