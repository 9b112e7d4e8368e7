# Fluxer SSO. `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SSO_ENV_FILE ?= .env
DEVRUN_FLAGS ?=

.PHONY: install install-dev keys run test lint openapi bench bench-profile clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# a valkey-server binary for run and test where the machine has no redis-server (never deployed)
$(VENV)/.devredis: $(VENV)/.runtime requirements-devredis.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-devredis.txt
	touch $@

# The client library (client/) is installed editable for its tests; its dependencies are
# already pinned above, so --no-deps, and `pip check` proves the pins satisfy its ranges.
$(VENV)/.dev: $(VENV)/.devredis requirements-dev.txt client/pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e ./client
	$(PY) -m pip check
	touch $@

install: $(VENV)/.runtime          ## a .venv with the pinned runtime requirements

install-dev: $(VENV)/.dev          ## plus the test and lint tools

# Only the key lines reach stdout (`make keys > env` must write a clean file): building the
# venv first is a sub-make whose command lines and output go to stderr.
keys:                              ## print a fresh RSA-2048 key pair and service secret as .env lines
	@$(MAKE) --no-print-directory install >&2
	@SSO_ENV_FILE=/dev/null $(VENV)/bin/flask --app wsgi sso keys

run: install $(VENV)/.devredis     ## gunicorn + gevent on $SSO_PORT (a development .env and Redis if none)
	@$(PY) -m config.keygen --ensure $(SSO_ENV_FILE)
	$(PY) -m config.devrun --env-file $(SSO_ENV_FILE) $(DEVRUN_FLAGS) -- $(VENV)/bin/gunicorn -c deploy/gunicorn.conf.py wsgi:app

test: install-dev                  ## the whole suite, the client library's too (starts its own redis-server, or the shipped valkey-server)
	$(PY) -m pytest

lint: install-dev                  ## ruff, mypy, bandit, and pip-audit (needs PyPI's vulnerability API)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sso config app.py client/fluxer_sso_client
	$(VENV)/bin/bandit -q -r sso config app.py wsgi.py client/fluxer_sso_client
	tools/audit-deps

# The table against the floor (bench/floor_app.py), the 100k-request memory soak, the scale curves
# to a million live sessions (fewer where they do not fit in memory) and Cluster against one server.
BENCH_SCALE ?= 10000,100000,1000000

bench: install-dev                 ## benchmark table, floor, soak, scale curves, Cluster vs one server (~7 min), also in bench/results/latest.md
	$(PY) -m bench.run --soak 100000 --scale $(BENCH_SCALE) --cluster

bench-profile: install-dev         ## where each path's CPU goes: py-spy on the workers, into bench/results/profile/
	$(PY) -m bench.run --profile bench/results/profile

openapi: install                   ## regenerate docs/openapi.json from the marshmallow schemas
	$(PY) -m sso.openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
