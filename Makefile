# The two set-up commands of the README (make repro, make test), and a few conveniences.
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

SYSTEM_PYTHON ?= python3
# Inside a virtual environment, install into it. Otherwise make .venv and use it: systems that
# follow PEP 668 (current Debian and Ubuntu) refuse pip installs into their own Python.
IN_VENV := $(shell $(SYSTEM_PYTHON) -c 'import sys; print(int(sys.prefix != sys.base_prefix))')
ifeq ($(IN_VENV),1)
  PYTHON := $(SYSTEM_PYTHON)
  VENV_PYTHON :=
else
  VENV := $(CURDIR)/.venv
  PYTHON := $(VENV)/bin/python
  VENV_PYTHON := $(PYTHON)
  # DVC runs each stage's `python -m stages...` through the shell: the venv's python must come first.
  export PATH := $(VENV)/bin:$(PATH)
  export VIRTUAL_ENV := $(VENV)
endif

.PHONY: install browser lint repro test check test-all prefect-server flow sweep bench

$(VENV)/bin/python:
	$(SYSTEM_PYTHON) -m venv $(VENV)

install: $(VENV_PYTHON)
	$(PYTHON) -m pip install -q -e ".[test]"

# The page tests render in headless Chromium; Debian's package, where it can be installed.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "chromium is not installed and could not be: the browser tests will skip"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

repro: install
	$(PYTHON) -m dvc repro

# Two pytest-xdist workers, each with half the cores' OpenMP threads (tests/conftest.py): most tests start
# processes or wait on DVC and Prefect, so two at once fill the cores that one leaves idle.
test: install browser lint
	$(PYTHON) -m pytest -n 2

# The quick tier while editing, about 3 minutes on 2 cores: the unit tests, without the integration ones.
check: install lint
	$(PYTHON) -m pytest -n 2 -m "not slow and not gpu and not integration"

test-all: install browser lint
	$(PYTHON) -m pytest -m ""

# Prefect: this project's server on 127.0.0.1 (state in .prefect/), the pipeline flow, a sweep.
prefect-server: install
	$(PYTHON) -m flows server

flow: install
	$(PYTHON) -m flows pipeline $(ARGS)

GRID ?= -g loss.gamma=[0,1,2,3] -g augment.mixup_alpha=[0,0.2]
sweep: install
	$(PYTHON) -m flows sweep $(GRID) --jobs $(or $(JOBS),1) $(if $(POOL),--pool $(POOL))

# The data benchmarks of bench/RESULTS.md; full_scale.py, the longest, runs the data stages up to CelebA's 202,599 images.
bench: install
	$(PYTHON) -m pip install -q -e ".[bench]"
	$(PYTHON) bench/hashing.py
	$(PYTHON) bench/preprocess.py
	$(PYTHON) bench/loader.py
	$(PYTHON) bench/full_scale.py
