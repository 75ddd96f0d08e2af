# Quick start: `make demo` (set up, check and build the example issue) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := issues/2026-11-25-microsoft-openai-partnership.yaml

.PHONY: install demo test lint format bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter check $(EXAMPLE)
	$(BIN)/newsletter build $(EXAMPLE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests benchmarks docs
	$(BIN)/ruff format --check newsletter tests benchmarks docs

format: $(STAMP)
	$(BIN)/ruff check --fix newsletter tests benchmarks docs
	$(BIN)/ruff format newsletter tests benchmarks docs

bench: $(STAMP)
	for b in benchmarks/*.py; do case $$b in */_*|*/smtp_sink.py) ;; *) $(BIN)/python $$b || exit 1;; esac; done

screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf build outbox .pytest_cache
