# Every target creates .venv on first use, so each works on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: help install train smoke test test-all test-newest lint typecheck data

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(STAMP)  ## create .venv and install the package with its dev extras

train: $(STAMP)  ## the main job, offline: train all-MiniLM-L6-v2 on the bundled NLI triplets
	$(OFFLINE) $(PY) -m st_lightning.train +experiment=nli_triplet

smoke: $(STAMP)  ## a 20-second run of the whole pipeline with a tiny model
	$(OFFLINE) $(PY) -m st_lightning.train +experiment=smoke

test: $(STAMP)  ## the default test suite (no slow tests), offline
	$(OFFLINE) $(PY) -m pytest -q

test-all: $(STAMP)  ## every test, slow ones included (what CI runs)
	$(OFFLINE) $(PY) -m pytest -q -m ""

NEWEST := .venv-newest
test-newest:  ## the default suite against the newest releases pyproject.toml allows (CI runs it)
	test -x $(NEWEST)/bin/python || python3 -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install -q --upgrade pip
	$(NEWEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	$(NEWEST)/bin/python -m pip list 2>/dev/null | grep -iE '^(lightning|transformers|sentence-transformers|datasets|torch|hydra-core) '
	$(OFFLINE) $(NEWEST)/bin/python -m pytest -q

lint: $(STAMP)  ## ruff lint and format check
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

typecheck: $(STAMP)  ## mypy on the package
	$(PY) -m mypy

data: $(STAMP)  ## rebuild data/ from the raw files in ../shared/data
	$(PY) scripts/build_data.py
