# Every target creates the virtualenv it needs on first use, from the pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
export SAM_CLI_TELEMETRY := 0
export PYTHONPATH := shared:.
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help venv dev test lint typecheck template unit migrate build demo bench reliability openapi stripe-schemas clean

help:
	@echo "make dev          run every route on http://127.0.0.1:3000 with local stand-ins"
	@echo "make test         lint, type checks, template checks and every test"
	@echo "make migrate      apply supabase/migrations to DATABASE_URL"
	@echo "make build        sam build"
	@echo "make demo         scripted journey against the local stack"
	@echo "make bench        performance table"
	@echo "make reliability  reliability and security figures"
	@echo "make stripe-schemas  regenerate the emulator's Stripe API definitions (needs npm)"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

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

venv: $(VENV)/.installed

dev: $(VENV)/.installed
	$(PY) -m tools.devserver

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

template: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m tools.openapi --check
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1
	@# 0 failed checks; every skip is justified in the template (checkov Metadata).
	$(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download
	$(SAM) build --template template.yaml --build-dir .aws-sam/build >/dev/null

unit: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS)

test: lint typecheck template unit

migrate: $(VENV)/.installed
	$(PY) -m tools.migrate

build: $(SAM_VENV)/.installed
	$(SAM) build --template template.yaml

demo: $(VENV)/.installed
	$(PY) -m tools.demo

bench: $(VENV)/.installed $(SAM_VENV)/.installed
	$(PY) -m tools.bench

reliability: $(VENV)/.installed
	$(PY) -m tools.reliability

openapi: $(VENV)/.installed
	$(PY) -m tools.openapi

# The emulator's definitions of the pinned Stripe API version, from the stripe npm package's
# types (needs Node 20 and the npm registry; `make test` only reads the committed result).
stripe-schemas:
	cd tools/stripe_schemas && npm ci --no-audit --no-fund && node generate.mjs

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .local
