# Everything sets itself up: a fresh machine needs only python3 (3.9+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): setup.py requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . -r requirements-dev.txt
	touch $(STAMP)

DEMO_SECONDS ?= 60

demo: $(STAMP)
	$(BIN)/shotgunEventDaemon demo --seconds $(DEMO_SECONDS)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examplePlugins bench
	$(BIN)/ruff format --check src tests examplePlugins bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
