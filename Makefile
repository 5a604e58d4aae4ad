# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 1
# pytest-xdist processes for `make test`: each has its own embedded Redis, database and ports.
TEST_WORKERS ?= 2

.PHONY: install run test lint bench lock

# requirements.lock pins every package to the version CI tested; `make lock` refreshes it after a dependency change.
LOCK := -c requirements.lock

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(LOCK) -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m scripts.serve --port $(PORT) --workers $(WORKERS)

# Browser tests need Debian's Chromium; Playwright (never a browser of its own) is installed only beside it, and
# pytest says clearly when they are skipped.
test: install
	@if /usr/bin/chromium --version >/dev/null 2>&1 && ! $(BIN)/python -c "import playwright" 2>/dev/null; then \
		$(BIN)/pip install --quiet $(LOCK) -e '.[test,e2e]'; fi
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict api base delivery presence dispatch scripts

# HTTP throughput comes from wrk (a C load generator): installed from Debian's packages where apt is available.
bench: install
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && echo "installing wrk (apt)" && \
		(apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)); } || \
		{ echo "make bench needs wrk: install it (e.g. apt-get install wrk, brew install wrk)"; exit 1; }
	$(BIN)/pip install --quiet $(LOCK) -e '.[test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# After changing dependencies in pyproject.toml: resolve them afresh and pin what was installed.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test,e2e,bench]'
	echo "# Pinned by make lock: the versions CI tested. Installed as constraints (-c), so extras stay optional." > requirements.lock
	.lock-venv/bin/pip freeze --exclude-editable | sort >> requirements.lock
	rm -rf .lock-venv
