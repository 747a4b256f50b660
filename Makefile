# The two set-up commands of the README, and a few conveniences.
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

PYTHON ?= python3
INSTALL = $(PYTHON) -m pip install -q -e ".[test]"

.PHONY: install repro test test-all

install:
	$(INSTALL)

repro: install
	dvc repro

test: install
	$(PYTHON) -m pytest

test-all: install
	$(PYTHON) -m pytest -m ""
