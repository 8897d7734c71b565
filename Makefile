# ccdcal: the two commands of the quick start are `make demo` and `make test`.
# Both create (or reuse) a virtual environment in .venv from PyPI, pinned by requirements.txt.

PYTHON ?= python3
CORES ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

DEMO_RAW := demo/raw
DEMO_OUT := demo/out

.PHONY: demo test lint format clean-demo venv schema test-night

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# Simulate the demo night (deterministic), calibrate it end to end, write its report.
demo: $(STAMP)
	test -d $(DEMO_RAW) || $(BIN)/python -m ccdcal.simulate $(DEMO_RAW) demo/truth
	$(BIN)/snakemake --cores $(CORES) --config raw_dir=$(DEMO_RAW) output_dir=$(DEMO_OUT) \
		--report $(DEMO_OUT)/report.html --report-after-run
	@echo "quality checks: $(DEMO_OUT)/qc.csv"
	@echo "report (open in a browser): $(DEMO_OUT)/report.html"

# The whole test suite (unit, workflow, real nights, lint).
test: $(STAMP)
	$(BIN)/python -m pytest

# (the default config names the bundled test night, so the workflow lints as it is)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

# Apply the code style: ruff (Python, 120 columns) and snakefmt (.smk).
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt .

clean-demo:
	rm -rf demo

# The configuration schema is the package's (src/ccdcal); the workflow keeps a copy, byte for
# byte, for the workflow catalog and snakedeploy (tests/test_catalog_layout.py checks it).
schema:
	cp src/ccdcal/config.schema.yaml workflow/schemas/config.schema.yaml

# The bundled test night (.test/raw), written again by the simulator (deterministic; a test
# checks the committed files are what it writes).
test-night: $(STAMP)
	rm -rf .test/raw
	truth=$$(mktemp -d) && $(BIN)/python -m ccdcal.simulate .test/raw $$truth --night tiny && rm -rf $$truth
