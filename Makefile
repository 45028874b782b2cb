# usarchive — two commands after cloning: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: run test lint bench samples review clean venv dev-venv system-deps ohif

# --- environments -----------------------------------------------------------
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

system-deps:
	bash scripts/system-deps.sh

# the OHIF viewer (pinned npm @ohif/app, sha512-verified) into the cache, for `usarchive web --ohif` and its tests
ohif: system-deps venv
	PYTHON=$(BIN)/python bash scripts/ohif-setup.sh

# --- the main job on the embedded default (SQLite + local files) -------------
run: venv
	USARCHIVE_HOME=$(DEMO_HOME) bash scripts/demo.sh

# review a clip of the demo archive that `make run` filled (run it first when missing)
review: dev-venv
	@test -f $(DEMO_HOME)/index.sqlite || $(MAKE) run
	USARCHIVE_HOME=$(DEMO_HOME) $(BIN)/usarchive annotate $$($(BIN)/python -c 'import json; print(json.load(open("sample_dicom/l4_tt_inplane_mono.json"))["sop_instance_uid"])')

samples: venv
	$(BIN)/usarchive sample samples sample_dicom

# --- checks -----------------------------------------------------------------
lint: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: system-deps dev-venv lint ohif
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: dev-venv system-deps
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache
