# Reel — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
export REEL_CACHE ?= $(HOME)/.cache/reel

.PHONY: help deps lint test test-unit test-integration crds crds-check

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install system packages and Python dependencies (Debian 12)
	./hack/deps.sh

lint: ## ruff
	$(PYTHON) -m ruff check operator recorder_image tests benchmarks

test: lint crds-check ## everything CI runs: lint, CRD freshness, unit, integration (and cluster/e2e once available)
	$(PYTHON) -m pytest tests

test-unit: ## unit tests only (no servers, no root)
	$(PYTHON) -m pytest tests/unit

test-integration: ## integration tests (real Janus in network namespaces, MinIO)
	$(PYTHON) -m pytest tests/integration

crds: ## regenerate the RecordingSession CRD (crds/, charts/reel/crds/) from operator/reel_api/models.py
	$(PYTHON) -m reel_api.crd

crds-check: ## fail with a diff when the committed CRD YAML differs from what the models generate
	$(PYTHON) -m reel_api.crd --check
