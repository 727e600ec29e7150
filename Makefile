# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch would pull
# a multi-GB CUDA build. The package itself declares torch>=2.4.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

# The attention fuzz suite (tests/test_properties.py) with at least 10,000 random examples on
# every backend against the float64 oracle; prints the example count and time at the end.
FUZZ_EXAMPLES ?= 10000
.PHONY: fuzz
fuzz: setup
	MULTIHEAD_FUZZ=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_properties.py -q -p no:cacheprovider

demo: setup
	$(VENV)/bin/multihead bench --quick

bench: setup
	$(VENV)/bin/multihead bench --output benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
