# Every target creates the virtualenv it needs on first use, from the pinned requirements:
# `make dev` installs only what running needs (requirements-local.txt: the runtime plus the
# local stand-ins); the test toolchain (requirements-dev.txt) comes with the targets that use it.
SHELL := /bin/bash
# `TOKEN=$$(make token …)` must capture the token alone, also when make runs inside make.
MAKEFLAGS += --no-print-directory
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
LOCAL_STAMP := $(VENV)/.installed-local
DEV_STAMP := $(VENV)/.installed-dev
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
export SAM_CLI_TELEMETRY := 0
export PYTHONPATH := shared:.
PYTEST_WORKERS ?= 2
# Runs a tool with the variables `make dev` wrote to .local/env (its queue, emulator, keys).
WITH_LOCAL_ENV := $(PY) -m tools.devserver.localenv

.DEFAULT_GOAL := help
.PHONY: help venv dev reset token redrive recover reconcile test lint typecheck template unit \
	migrate build demo bench reliability openapi stripe-schemas clean

help: ## this list
	@echo "usage: make <target>   (every target creates the virtualenv it needs on first use)"
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z_-]*:.*## / {printf "  make %-15s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

# Installer output goes to stderr, so `TOKEN=$$(make token MEMBER=…)` captures the token alone
# even when the virtualenv is created on the way.
$(PY):
	@echo "creating $(VENV) ($(PYTHON))…" >&2
	@$(PYTHON) -m venv $(VENV) >&2

$(LOCAL_STAMP): requirements.txt requirements-local.txt | $(PY)
	@echo "installing what make dev runs (requirements-local.txt)…" >&2
	@# --no-compile: Python compiles what it imports on first use, a fraction of the packages.
	@$(PY) -m pip install --quiet --no-compile -r requirements-local.txt >&2
	@touch $@

$(DEV_STAMP): $(LOCAL_STAMP) requirements-dev.txt
	@echo "installing the test toolchain (requirements-dev.txt)…" >&2
	@$(PY) -m pip install --quiet -r requirements-dev.txt >&2
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

venv: $(DEV_STAMP) ## create .venv with everything (runtime, stand-ins, test toolchain)

dev: $(LOCAL_STAMP) ## run every route on http://127.0.0.1:3000 with local stand-ins (Ctrl-C stops)
	@$(PY) -m tools.devserver

reset: $(LOCAL_STAMP) ## wipe the local state on purpose: database, Stripe emulator, local queue
	@$(PY) -m tools.devserver.reset

token: $(LOCAL_STAMP) ## print a member token for make dev: make token MEMBER=mem_123 [ADMIN=1]
	@$(if $(MEMBER)$(ADMIN),,$(error usage: make token MEMBER=mem_123 [ADMIN=1]))
	@$(WITH_LOCAL_ENV) tools.local.member_token $(MEMBER) $(if $(ADMIN),--admin)

redrive: $(LOCAL_STAMP) ## move make dev's dead letters back to its queue [DRY_RUN=1]
	@$(WITH_LOCAL_ENV) tools.redrive_dlq $(if $(DRY_RUN),--dry-run) $(ARGS)

recover: $(LOCAL_STAMP) ## queue the emulator's undelivered events again [DRY_RUN=1] [DAYS=30]
	@$(WITH_LOCAL_ENV) tools.recover_events $(if $(DRY_RUN),--dry-run) \
		$(if $(DAYS),--days $(DAYS)) $(ARGS)

reconcile: $(LOCAL_STAMP) ## run the reconciler once, now, against make dev [DRY_RUN=1]
	@$(WITH_LOCAL_ENV) tools.reconcile --now $(if $(DRY_RUN),--dry-run) $(ARGS)

lint: $(DEV_STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP) ## mypy (strict on shared/payments)
	$(VENV)/bin/mypy

template: $(DEV_STAMP) $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## OpenAPI freshness, cfn-lint, sam validate, checkov, sam build
	$(PY) -m tools.openapi --check
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1
	@# 0 failed checks; every skip is justified in the template (checkov Metadata).
	$(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download
	$(SAM) build --template template.yaml --build-dir .aws-sam/build >/dev/null

unit: $(DEV_STAMP) ## every test (pytest, in PYTEST_WORKERS processes)
	$(PY) -m pytest -n $(PYTEST_WORKERS)

test: lint typecheck template unit ## lint, type checks, template checks and every test

migrate: $(LOCAL_STAMP) ## apply supabase/migrations to DATABASE_URL (or the embedded Postgres)
	$(PY) -m tools.migrate

build: $(SAM_VENV)/.installed ## sam build
	$(SAM) build --template template.yaml

demo: $(LOCAL_STAMP) ## the scripted journey on a stack and database of its own
	$(PY) -m tools.demo

bench: $(DEV_STAMP) $(SAM_VENV)/.installed ## the performance table (benchmarks/latest.json)
	$(PY) -m tools.bench

reliability: $(DEV_STAMP) ## the reliability and security figures (benchmarks/reliability.json)
	$(PY) -m tools.reliability

openapi: $(LOCAL_STAMP) ## regenerate shared/payments/openapi.json after changing a route
	$(PY) -m tools.openapi

# The emulator's definitions of the pinned Stripe API version, from the stripe npm package's
# types (needs Node 20 and the npm registry; `make test` only reads the committed result).
stripe-schemas: ## regenerate the emulator's Stripe API definitions (needs npm)
	cd tools/stripe_schemas && npm ci --no-audit --no-fund && node generate.mjs

clean: ## remove build output, caches and .local (the local state included)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .local
