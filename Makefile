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

# ruff first (a second), then mypy beside the suite: the suite mostly waits (subprocesses, servers, a schedule
# tick), so the type check and four pytest-xdist workers share the two cores without slowing each other much.
test: $(STAMP)
	$(BIN)/ruff check tiktok_organic_dagster tiktok_organic_dagster_tests benchmarks
	$(BIN)/mypy > .mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q -n 4; status=$$?; \
	wait $$mypy || { cat .mypy.log; status=1; }; rm -f .mypy.log; exit $$status

# `make dev ARGS="-p 3001"` passes options to `dagster dev`
dev: $(STAMP)
	$(BIN)/python -m tiktok_organic_dagster.cli.dev $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) data .dagster_home .tmp_dagster_home_*
