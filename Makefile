# Marquee: two commands on a fresh machine.
#   make demo   sets up .venv on first use, fetches MovieLens-100k, runs the whole loop locally
#   make test   the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv sysdeps bench clean lint

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[dev,bench]"
	@touch $(STAMP)

venv: $(STAMP)

# Prometheus, promtool and Alertmanager from Debian's packages (real servers in the tests).
sysdeps:
	@bash scripts/install-sysdeps.sh

demo: venv
	$(VENV)/bin/marquee demo

test: venv sysdeps
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/quality.py

clean:
	rm -rf $(VENV) .marquee .pytest_cache
