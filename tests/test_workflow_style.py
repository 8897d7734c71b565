"""One code style: the Python passes `ruff check` and `ruff format --check` (pyproject.toml:
120 columns), the workflow `snakemake --lint` and `snakefmt --check`; every rule has a log, a
script and the jobs' conda environment."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import SNAKEFILE

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
                assert len(re.findall(r"from ccdcal\.\w+ import (\w+)", run)) == 1, name
                function = re.search(r"from ccdcal\.\w+ import (\w+)", run)[1]
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


def test_the_publishing_job_and_the_light_cache_import_neither_numpy_nor_astropy():
    """The publishing job only links files: its start-up is Python's, not numpy's and
    astropy's (0.07 s against 0.5 s for all of ccdcal.jobs). A top-level import of either
    in a module it uses would bring that back."""
    probe = (
        "import sys, ccdcal.publish, ccdcal.joblog\n"
        "print(sorted(m for m in ('numpy', 'astropy', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
