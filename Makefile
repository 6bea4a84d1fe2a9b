# Reel — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
export REEL_CACHE ?= $(HOME)/.cache/reel

.PHONY: help deps lint test test-unit test-integration crds crds-apply crds-check

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install system packages and Python dependencies (Debian 12)
	./hack/deps.sh

lint: ## ruff, and test module basenames unique across tests/ (pytest's default import mode needs it)
	$(PYTHON) -m ruff check operator recorder_image tests benchmarks hack
	@dups=$$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d); \
	if [ -n "$$dups" ]; then echo "test modules with the same basename in two folders: $$dups" >&2; exit 1; fi

test: lint crds-check ## everything CI runs: lint, CRD freshness, unit, integration, then the kind cluster tests
	$(PYTHON) -m pytest tests -m "not cluster"
	$(MAKE) test-cluster

test-unit: ## unit tests only (no servers, no root)
	$(PYTHON) -m pytest tests/unit

test-integration: ## integration tests (real Janus in network namespaces, MinIO)
	$(PYTHON) -m pytest tests/integration

crds: ## regenerate the RecordingSession CRD (crds/, charts/reel/crds/) from operator/reel_api/models.py
	$(PYTHON) -m reel_api.crd

crds-apply: ## apply the chart's CRDs to the cluster of the current kubeconfig (Helm never upgrades CRDs)
	kubectl apply --server-side --force-conflicts -f charts/reel/crds/

crds-check: ## fail with a diff when the committed CRD YAML differs from what the models generate
	$(PYTHON) -m reel_api.crd --check

# ---- kind test cluster: hack/kind/, README "Test cluster (kind)" ----------------------------------
.PHONY: cluster-tools cluster-up cluster-down images test-cluster e2e demo
# Base image of our Dockerfiles (ARG BASE_IMAGE): localhost/reel-base:bookworm when podman builds
# them (no registry here), python:3.11-slim-bookworm with docker.
BASE_IMAGE ?= $(shell bash -c '. hack/kind/lib.sh && default_base_image')

cluster-tools: ## build the cluster's programs and images into $(REEL_CACHE) (skips what is up to date)
	@./hack/kind/cluster.sh tools

cluster-up: ## create (or reuse) the kind cluster `reel`; prints `export KUBECONFIG=...` last
	@./hack/kind/cluster.sh up

cluster-down: ## delete the kind cluster: no node container, volume, network or process left
	@./hack/kind/cluster.sh down

images: ## build the project images (Dockerfile, recorder_image/Dockerfile) and load them into the cluster
	@BASE_IMAGE=$(BASE_IMAGE) ./hack/kind/cluster.sh images

.PHONY: example-images
example-images: ## the project images plus Janus, MinIO and publisher (tests/images), loaded into the cluster
	@BASE_IMAGE=$(BASE_IMAGE) ./tests/images/build.sh all

test-cluster: ## cluster-up, pytest tests/e2e and tests/cluster, cluster-down (checked by the last test)
	@PYTHON=$(PYTHON) ./hack/kind/cluster.sh test

demo: ## the main job: on a fresh machine, set everything up, record a room with two participants for 30 s
	./hack/deps.sh
	@./hack/kind/cluster.sh up
	./tests/images/build.sh operator recorder janus publisher minio
	KUBECONFIG=$(REEL_CACHE)/kubeconfig $(PYTHON) hack/demo.py

e2e: ## the end-to-end suite on the kind cluster (brought up if needed; left running)
	@./hack/kind/cluster.sh up >/dev/null
	@REEL_REQUIRE_CLUSTER=1 KUBECONFIG=$(REEL_CACHE)/kubeconfig $(PYTHON) -m pytest tests/e2e

# ---- the operator (docs/operator.md) ----------------------------------------------------------------------
.PHONY: operator test-operator bench-operator
OPERATOR_KUBECONFIG ?= $(if $(KUBECONFIG),$(KUBECONFIG),$(REEL_CACHE)/kubeconfig)

operator: ## run reel-operator from this machine (all namespaces, standalone) against $KUBECONFIG or the kind cluster
	KUBECONFIG=$(OPERATOR_KUBECONFIG) REEL_LIVENESS_ENDPOINT=$${REEL_LIVENESS_ENDPOINT-http://127.0.0.1:8080/healthz} \
	  $(PYTHON) -m reel_operator.run --all-namespaces --standalone

test-operator: ## the operator's cluster tests (tests/cluster/test_operator.py) on the running kind cluster
	KUBECONFIG=$(REEL_CACHE)/kubeconfig $(PYTHON) -m pytest tests/cluster/test_operator.py -m cluster

bench-operator: ## apply->pod created and stop->pod gone latencies of the operator on the kind cluster
	KUBECONFIG=$(REEL_CACHE)/kubeconfig $(PYTHON) benchmarks/operator_latency.py

.PHONY: bench-scale
bench-scale: ## the operator at scale: 1,000 sessions + a burst of 300, recorder pods on a kwok fake node (benchmarks/README.md)
	@./hack/kind/build.sh kwok
	$(PYTHON) benchmarks/operator_scale.py $(BENCH_SCALE_ARGS)
