# The README's two commands are `make run` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test browser balancer lint format typecheck worker emulator bench check-deploy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Install everything into .venv/

run: install ## Migrate, create demo data, serve on http://127.0.0.1:8000 (+ Live emulator)
	@scripts/run.sh

# Three pytest-xdist workers: most of the suite's time is spent waiting (real-time audio
# through the emulator, server processes, Celery workers), so they share two cores well.
# Each worker has its own test database and Redis database (conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: install browser balancer ## Run the full test suite (uses DATABASE_URL / REDIS_URL when set)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# The browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
CHROMIUM ?= /usr/bin/chromium
browser: ## Install Debian's chromium for the browser tests, if it is missing
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	    || { $$SUDO apt-get update -q >/dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	    || echo "could not install chromium: the browser tests will fail in CI (skip locally)" >&2; }

# The deployment test puts HAProxy (Debian's package) in front of two web processes.
HAPROXY ?= /usr/sbin/haproxy
balancer: ## Install Debian's haproxy for the deployment tests, if it is missing
	@test -x $(HAPROXY) || command -v haproxy >/dev/null || { \
	  echo "installing Debian's haproxy for the deployment tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null \
	    || { $$SUDO apt-get update -q >/dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null; } \
	    || echo "could not install haproxy: the deployment tests will fail in CI (skip locally)" >&2; }

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## ruff fix + format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy (strict, django-stubs)
	$(VENV)/bin/mypy .

check-deploy: install ## Django's deployment checklist against production settings
	DJANGO_SETTINGS_MODULE=voice_platform.settings.production $(PY) manage.py check --deploy --fail-level WARNING

worker: install ## A Celery worker for tool calls (needs REDIS_URL)
	$(VENV)/bin/celery -A voice_platform worker -l info -Q default,live_tools --prefetch-multiplier 1

emulator: install ## The Gemini Live emulator alone, on https://127.0.0.1:8765
	$(PY) manage.py live_emulator --host 127.0.0.1 --port 8765

bench: install ## Benchmarks (needs local PostgreSQL and Redis); figures in docs/performance.md
	$(PY) -m bench.emulator_bench --sessions 200 --seconds 20
	$(PY) -m bench.bridge_bench --sessions 1,50,200 --seconds 15
	$(PY) -m bench.tool_bench --calls 1000
	$(PY) -m bench.dashboard_bench --sessions 100000 --requests 30

# Not part of `bench`: about 8 minutes with these counts (two fresh servers per count).
.PHONY: bench-phone
bench-phone: install ## Phone calls per process vs browser sessions (PostgreSQL, Redis; docs/performance.md)
	$(PY) -m bench.phone_bench --calls 10,25,50,100,150 --seconds 20

.PHONY: fuzz
fuzz: install ## schemathesis against the OpenAPI schema, 200 cases per operation and mode
	API_FUZZ_EXAMPLES=$${API_FUZZ_EXAMPLES:-200} $(PY) -m pytest -s -q --timeout=0 tests/voice_platform/test_api_fuzz.py

.PHONY: soak audit loadtest
AGENT ?= 1
loadtest: install ## Simulated callers against http://127.0.0.1:8000 (LOADTEST_API_KEY, AGENT, ARGS; docs/loadtest.md)
	$(PY) manage.py loadtest --agent $(AGENT) $(ARGS)

soak: install ## Soak: 100 sessions for 10 min with faults, then leak checks (PostgreSQL, Redis)
	$(PY) -m bench.soak --sessions 100 --minutes 10

# --strict: a package it could not look up fails the audit (it would otherwise pass silently).
audit: install ## pip-audit of the installed packages (needs PyPI's JSON API)
	$(VENV)/bin/pip-audit --strict --skip-editable --progress-spinner off || { \
	  echo "audit FAILED: a known vulnerability above, or packages pip-audit could not look up" \
	    "(is https://pypi.org/pypi/<name>/<version>/json reachable?)" >&2; exit 1; }

clean: ## Remove the virtualenv and local state (var/)
	rm -rf $(VENV) var
