# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-agency test lint dev bench clean

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tiktok_organic_dagster.cli.demo

# three accounts of one sandbox app synced in parallel (a multi-account source), under data/demo_agency/
demo-agency: $(STAMP)
	$(BIN)/python -m tiktok_organic_dagster.cli.demo_agency

lint: $(STAMP)
	$(BIN)/ruff check tiktok_organic_dagster tiktok_organic_dagster_tests benchmarks
	$(BIN)/mypy

# ruff first (a second), then mypy beside the suite. Three pytest-xdist workers: the suite keeps two cores
# busy (its child processes mostly), and each worker more costs its own collection and contention (measured
# on 2 cores: -n 2 6:23, -n 3 6:09, -n 4 6:35). conftest.py hands the tests out longest first, one at a time.
test: $(STAMP)
	$(BIN)/ruff check tiktok_organic_dagster tiktok_organic_dagster_tests benchmarks
	$(BIN)/mypy > .mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q -n 3; status=$$?; \
	wait $$mypy || { cat .mypy.log; status=1; }; rm -f .mypy.log; exit $$status

# `make dev ARGS="-p 3001"` passes options to `dagster dev`
dev: $(STAMP)
	$(BIN)/python -m tiktok_organic_dagster.cli.dev $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) data .dagster_home .tmp_dagster_home_*
