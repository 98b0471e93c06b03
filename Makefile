# The two commands a newcomer runs: `make demo` and `make test`.
# Both create or refresh .venv/ from the repository's own files, then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

# lock.txt pins everything pip resolves normally; nodeps.txt holds the packages whose declared
# dependencies are wrong for this stack (each explained there); then the project itself, editable.
$(STAMP): pyproject.toml requirements/lock.txt requirements/nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check pip==26.3
	$(PY) -m pip install -q -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/dftoolkit demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/decode.py
	$(PY) bench/index.py
	$(PY) bench/preprocess.py
	$(PY) bench/generate.py
	$(PY) bench/quality.py

clean:
	rm -rf $(VENV) build dist *.egg-info
