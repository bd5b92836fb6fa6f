# The two commands of CONTRACT.md: `make run` (demo mode) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per requirements file, so a second `make run` starts at once.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.installed-build: requirements-build.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-build.txt
	touch $@

# The compiled speedups (acebuddy/speedups.py), rebuilt when one of their sources changes. Without a C
# compiler the build says so and fails, and AceBuddy runs in pure Python (the "-" goes on).
SPEEDUPS_SOURCES := acebuddy/speedups.py acebuddy/knowledge/text.py acebuddy/knowledge/query.py \
	acebuddy/knowledge/extract.py acebuddy/knowledge/index.py acebuddy/bot/intents.py
build/speedups.stamp: $(SPEEDUPS_SOURCES) $(VENV)/.installed-build
	-$(BIN)/python -m acebuddy.speedups build
	@mkdir -p build && touch $@

install: $(VENV)/.installed build/speedups.stamp
install-dev: $(VENV)/.installed-dev build/speedups.stamp

run: install
	PORT=$(PORT) $(BIN)/python -m acebuddy.demo

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build instance/demo .pytest_cache
