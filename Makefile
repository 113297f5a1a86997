# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment, installs the pinned Python packages and
# Azurite (npm, into .tools/) on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := requirements.txt requirements-aml.txt requirements-dev.txt requirements-notebook.txt requirements-spark.txt requirements-spark.in pyproject.toml
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-12)
AZURITE := .tools/azurite/node_modules/.bin/azurite-blob
PEER := .venv-peer/bin/python

.PHONY: demo test serve serve-aml bench bench-spark install azurite clean

demo: install azurite  ## full encrypted round trip over HTTP with Azurite, then clean up
	$(PY) -m demo

test: install azurite  ## the test suite (starts and stops its own Azurite and hosts)
	$(PY) -m pytest -q

serve: install azurite  ## Azurite + the Functions app on 127.0.0.1:7071 until Ctrl-C
	$(PY) -m demo.serve

serve-aml: install azurite  ## score.py under azmlinfsrv on 127.0.0.1:5001, with Azurite, until Ctrl-C
	$(PY) -m demo.serve_aml --azurite

bench: install azurite $(PEER)  ## benchmark, Spark and the peer encrypted-inference 0.9 included: bench/results.json (ARGS=--quick: two minutes; ARGS=--help)
	$(PY) -m bench $(ARGS)

bench-spark: install azurite  ## score_dataframe on local Spark against the plain client: table + var/bench-spark.json
	$(PY) -m bench.spark

install: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-spark.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

azurite: $(AZURITE)

$(AZURITE):
	$(PY) -c "from devhost.azurite import ensure_installed; ensure_installed('.')"

# The peer the benchmark compares with, in a venv of its own (it needs only numpy).
$(PEER):
	$(PYTHON) -m venv .venv-peer
	.venv-peer/bin/python -m pip install --quiet --disable-pip-version-check encrypted-inference==0.9 numpy==2.4.6

clean:
	rm -rf $(VENV) .venv-peer .tools .pytest_cache models
