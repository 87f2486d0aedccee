# Cross-Attention is Half Explanation: research compendium.
# `make reproduce` runs everything on the default profile; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= default
# where explanation jobs run: empty (the profile's executor, "local"), or ray (RAY_ADDRESS names a cluster)
EXECUTOR ?=
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup data reproduce adopt figures notebooks nb test test-fast bench lab clean distclean

help: ## this menu
	@echo "Targets (PROFILE=$(PROFILE); set PROFILE=smoke|default|paper):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "Assets go to data/ unless CROSSATTN_SALIENCY_CACHE names another folder."

$(STAMP): requirements.txt lib/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e lib
	touch $(STAMP)

setup: $(STAMP) ## virtual environment with pinned dependencies and the package (idempotent)

data: setup ## build the test sets of PROFILE (system packages via data/install_system_deps.sh)
	bash data/install_system_deps.sh
	$(PY) -m crossattn_saliency.data build --profile $(PROFILE)

# notebooks that compute maps from the audio, and those that read them (a reference store holds what the latter read)
COMPUTE_NBS := 00 01 02 03 04
FIGURE_NBS := 05 06 07 08 09 10
# notebooks that explain clips of their own (alignment heads: SM_H on a pool of clips per model)
HEADS_NBS := 11
RUN_DIR = $(CURDIR)/results/reproduced/$(PROFILE)

reproduce: setup data ## recompute everything from the audio into results/reproduced/PROFILE, then compare with the reference
	@for nb in $(COMPUTE_NBS); do \
	  CROSSATTN_SALIENCY_RUN_DIR=$(RUN_DIR) $(MAKE) --no-print-directory nb NB=$$nb PROFILE=$(PROFILE) EXECUTOR=$(EXECUTOR) \
	  || exit 1; done
	rm -f $(RUN_DIR)/cache/$(PROFILE)/reads.log
	@for nb in $(FIGURE_NBS) $(HEADS_NBS); do \
	  CROSSATTN_SALIENCY_RUN_DIR=$(RUN_DIR) $(MAKE) --no-print-directory nb NB=$$nb PROFILE=$(PROFILE) EXECUTOR=$(EXECUTOR) \
	  || exit 1; done
	$(PY) -m crossattn_saliency.app.compare --profile $(PROFILE) || \
	  echo "some tables differ from the reference: see results/reproduced/$(PROFILE)/comparison.md"

adopt: setup ## make the last `make reproduce` the committed reference (tables, figures, REPORT.md, store)
	$(PY) -m crossattn_saliency.app.reference adopt --profile $(PROFILE)

figures: setup ## rerun notebooks 05-10 from the stored results (the committed reference store): minutes
	@for nb in $(FIGURE_NBS); do \
	  CROSSATTN_SALIENCY_NO_FORWARD=1 $(MAKE) --no-print-directory nb NB=$$nb PROFILE=$(PROFILE) || exit 1; \
	done

notebooks: setup ## run every numbered notebook in order through papermill
	@for nb in $(NOTEBOOKS); do \
	  $(MAKE) --no-print-directory nb NB=$$(basename $$nb | cut -c1-2) PROFILE=$(PROFILE) EXECUTOR=$(EXECUTOR) || exit 1; \
	done

nb: setup ## rerun one notebook from cached results, e.g. make nb NB=06 [SET='field=json ...']
	@test -n "$(NB)" || (echo "usage: make nb NB=03 [PROFILE=default]"; exit 2)
	$(PY) -m crossattn_saliency.app.notebooks $(NB) --profile $(PROFILE) $(foreach s,$(SET),--set '$(s)') \
	  $(if $(EXECUTOR),--set executor=$(EXECUTOR))

test: setup ## the test suite (unit, integration on real models/audio, notebook smoke runs)
	bash data/install_system_deps.sh
	$(PY) -m crossattn_saliency.data build --profile smoke
	$(PY) -m pytest -q --durations=25

test-fast: setup ## unit tests only (no real models, no notebooks)
	$(PY) -m pytest -q -m "not integration and not notebooks"

bench: setup ## SPES throughput: bf16 vs fp32, backends, pass split, scaling -> results/bench/
	$(PY) -m crossattn_saliency.app.bench --out results/bench --n-perturbations 96
	$(PY) -m crossattn_saliency.app.bench --backends --out results/bench --n-perturbations 128

lab: setup ## JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean: ## remove caches of intermediate results (keeps committed tables, figures and the reference store)
	rm -rf results/cache results/profiles results/reproduced .pytest_cache

distclean: clean ## also remove the virtual environment and derived assets under data/
	rm -rf $(VENV) data/models data/sets data/sources
