# Quick start: `make demo` (set up, check and build the example issue, and the archive of issues/)
# and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := issues/2026-11-25-microsoft-openai-partnership.yaml
# Debian packages the tests need: installed with apt-get when run as root, otherwise the exact
# command to run is printed and the target stops.
SYSTEM_PACKAGES := chromium fonts-dejavu-core spamassassin dovecot-imapd postgresql

.PHONY: install system-packages demo test lint format bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter check $(EXAMPLE)
	$(BIN)/newsletter build $(EXAMPLE)
	@# The archive of issues/ (each published into a demo database, never newsletter.db).
	for issue in issues/[!_]*.yaml; do $(BIN)/newsletter publish --db build/demo.db $$issue || exit 1; done
	$(BIN)/newsletter archive --db build/demo.db -o build/site

system-packages:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null || exit 1; \
	  else \
	    echo "The tests need Debian packages:$$missing. Run: sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

test: $(STAMP) system-packages
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
