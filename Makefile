# vxvrf: chained CNI plugins building a VRF + VXLAN + bridge overlay.
#
#   make demo    build, then run conflist/vrf-vxlan.conflist on two throwaway nodes joined by VXLAN
#   make lint    golangci-lint (pinned in scripts/install-deps.sh) with .golangci.yml
#   make test    install what the tests need, lint, then unit, per-plugin and integration tests,
#                a short run of every fuzz target, the race check, a slice of the chaos suite,
#                the VRF suite in a VM, the runtime suite (e2e) and the Kubernetes suite (e2e-k8s)
#   make bench   our chain against the reference chains; writes bench/results/ and the README cost block
#   make fuzz    every native fuzz target for FUZZTIME each (default 2m)
#   make race    go test -race where goroutines share state
#   make chaos   the chaos suite: >= CHAOS_CYCLES kill-injected ADD/DEL cycles

# The stages are the folders under plugins/ (pkg/naming.Stages is the same
# list in Go, kept equal by TestStagesArePluginFolders).
PLUGINS  := $(notdir $(wildcard plugins/*))
# The node tool (not a CNI stage), installed next to the plugins.
TOOL     := vxvrf
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/vxvrf/cni/pkg/buildinfo.Version=$(VERSION)
BIN      := $(CURDIR)/bin
TOOLS    := $(CURDIR)/.tools
GO       ?= go
GOTEST   := $(GO) test -count=1
SHELL    := /bin/bash
export GOFLAGS ?= -buildvcs=false

.PHONY: all build demo demo-cluster docs-images test test-vrf e2e e2e-deps e2e-k8s k8s-deps bench deps test-unit vet fmt tidy install image clean fuzz race chaos

all: build

build: $(addprefix $(BIN)/,$(PLUGINS)) $(BIN)/$(TOOL)

$(BIN)/$(TOOL): FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$(TOOL)

$(BIN)/%: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./plugins/$*

FORCE:

deps:
	./scripts/install-deps.sh

# Two simulated nodes joined by VXLAN, a pod on each: traffic across the
# nodes, a picture of what was built, then everything removed. On a kernel
# without VRF the conflist's vrf is left out, and the demo says so.
DEMO_CONFLIST ?= conflist/vrf-vxlan.conflist
demo: build $(BIN)/vxvrf-installer
	./scripts/install-deps.sh --demo
	$(GO) run ./integration/demo -bin $(BIN) -conflist $(DEMO_CONFLIST)

# Three simulated nodes, a router and an external host: prints who reaches whom.
demo-cluster: build
	./scripts/install-deps.sh --demo
	$(GO) run ./integration/cluster-demo -bin $(BIN)

# Everything; as root (the tests create network namespaces, never touching the host's own).
# 22 min measured on a fresh 2-core machine (budget: 45; apt packages were
# already installed), 5 of them building Kubernetes once (scripts/k8s-setup.sh,
# cached under /opt/vxvrf-e2e);
# about 9 min with everything cached. See docs/development.md, Time budget.
test: build deps vet lint
	set -o pipefail; VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -json -timeout 30m ./... | $(GO) run ./scripts/testreport
	$(MAKE) fuzz FUZZTIME=$(TEST_FUZZTIME)
	$(MAKE) race
	$(MAKE) test-vrf
	$(MAKE) e2e
	$(MAKE) e2e-k8s

# golangci-lint at the version scripts/install-deps.sh pins, with the repo's
# .golangci.yml, whose build tags take in integration/e2e and integration/k8s;
# about 30 s warm on 2 cores. LINT_TAGS overrides the tags.
LINT_TAGS ?=
.PHONY: lint
lint:
	./scripts/install-deps.sh --lint
	$(TOOLS)/bin/golangci-lint run --allow-parallel-runners $(if $(LINT_TAGS),--build-tags $(LINT_TAGS)) ./...

# The cost of one pod's ADD and DEL: our chain (both firewall backends)
# against the reference chains, as the node fills, concurrent, per stage,
# and the IPAM alone against host-local. Root: builds a lab of namespaces.
# Writes bench/results/ (results.json, results.md, PNG plots) and rewrites
# the bench block of README.md. BENCH_FLAGS=-quick for a smoke run (~15 s).
BENCH_FLAGS ?=
bench: build deps
	VXVRF_REF_BIN=$(TOOLS)/cni $(GO) run ./bench -bin $(BIN) -out bench/results -readme README.md $(BENCH_FLAGS)

# The runtime suite (containerd+crictl, podman, kubelet, cnitool), each inside
# a node namespace; installs what it needs first (cached under /opt/vxvrf-e2e):
# the runtimes from e2e-setup.sh, the kubelet v1.35.4 from k8s-setup.sh (the
# same build the Kubernetes suite uses). Fails, not skips, when a runtime is
# missing; testreport -strict also fails the run if any test skipped or none
# passed.
e2e-deps:
	./scripts/e2e-setup.sh
	./scripts/k8s-setup.sh

e2e: build deps e2e-deps
	set -o pipefail; VXVRF_E2E_REQUIRE=1 VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -tags e2e -json -timeout 20m ./integration/e2e/ | $(GO) run ./scripts/testreport -strict

# The Kubernetes suite (integration/k8s, build tag k8s), called by `make
# test` after e2e: vxvrf-agent and real kubelets against a real etcd +
# kube-apiserver built from source (scripts/k8s-setup.sh, cached under
# /opt/vxvrf-e2e/k8s). Fails, not skips, when a component is missing
# (VXVRF_K8S_REQUIRE=1), and testreport -strict fails it if any test skipped
# (as without root) or none passed.
# containerd, crictl, netns-exec and the pause/busybox images come from
# e2e-setup.sh (without podman, which this suite does not use); etcd and the
# v1.35.4 components from k8s-setup.sh; the project's image (the DaemonSet's)
# from `make image`.
k8s-deps:
	E2E_PODMAN=0 ./scripts/e2e-setup.sh
	./scripts/k8s-setup.sh

e2e-k8s: build deps k8s-deps image $(BIN)/vxvrf-agent
	set -o pipefail; VXVRF_K8S_REQUIRE=1 VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -tags k8s -json -timeout 20m ./integration/k8s/ | $(GO) run ./scripts/testreport -strict

# The VRF suite in a QEMU VM whose kernel has VRF (this one may not); fails
# if a VRF test fails or skips there.
test-vrf: build deps
	VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni GO=$(GO) ./scripts/test-vrf.sh

# Native Go fuzz targets (testing.F): the stages' config parsers and
# prevResult handling, the IPAM state file and allocator. Each runs
# FUZZTIME; a crasher is written to <package>/testdata/fuzz/<Target>/ (check
# it in: it becomes a regression seed). make test runs them for
# TEST_FUZZTIME each. Runs in a private network namespace; see scripts/fuzz.sh.
FUZZTIME      ?= 2m
TEST_FUZZTIME ?= 4s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

# The race detector over the packages whose tests share state between
# goroutines (needs cgo and a C compiler).
RACE_PKGS := ./pkg/... ./internal/... ./plugins/lockfile-ipam/allocator ./plugins/lockfile-ipam/store ./deploy/internal/install
race:
	CGO_ENABLED=1 $(GOTEST) -race -timeout 20m $(RACE_PKGS)

# The chaos suite: the default chain run through libcni on a lab node with
# every stage SIGKILLed at random moments of ADD and DEL (also under 50
# concurrent ADD/DELs), the runtime's recovery, node reboots and uplink
# flaps; after each run nothing may be left and no address handed out
# twice. make test's go test ./... runs its default slice (60 cycles).
CHAOS_CYCLES ?= 1000
chaos: build
	set -o pipefail; VXVRF_CHAOS_CYCLES=$(CHAOS_CYCLES) VXVRF_BIN=$(BIN) VXVRF_LAB_PREFIX=$${VXVRF_LAB_PREFIX:-ch} \
		$(GOTEST) -v -timeout 3h -run 'Chaos|KillDuring' ./integration/chaos/ 2>&1 | grep --line-buffered -Ev '^=== (RUN|PAUSE|CONT)'

test-unit:
	$(GOTEST) -short ./pkg/... ./internal/... ./plugins/...

vet:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./integration/e2e/
	$(GO) vet -tags k8s ./integration/k8s/

fmt:
	gofmt -w .

tidy:
	$(GO) mod tidy

# Installs the binaries (the plugins and the vxvrf tool) atomically (temp file, then rename) into
# $(DESTDIR)$(CNI_BIN_DIR) with the same installer the DaemonSet runs; with
# CLUSTER_CONFIG (and NODE_NAME, NODE_IP) it also renders this node's conflist.
CNI_BIN_DIR    ?= /opt/cni/bin
CNI_CONF_DIR   ?= /etc/cni/net.d
CLUSTER_CONFIG ?=
install: build $(BIN)/vxvrf-installer
	$(BIN)/vxvrf-installer --once --root '$(or $(DESTDIR),/)' --src $(BIN) --plugins '$(PLUGINS) $(TOOL)' \
		--cni-bin-dir $(CNI_BIN_DIR) --cni-conf-dir $(CNI_CONF_DIR) $(if $(CLUSTER_CONFIG),--config '$(CLUSTER_CONFIG)')

$(BIN)/vxvrf-installer: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./deploy/installer

$(BIN)/vxvrf-agent: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./deploy/agent

# An OCI image of the installer and the plugins, built without a Docker daemon.
image:
	VERSION=$(VERSION) ./deploy/build-image.sh

# The README's pictures, drawn from their Graphviz sources next to them
# (needs Graphviz: apt-get install graphviz).
DOCS_IMAGES := $(patsubst %.dot,%.png,$(wildcard docs/images/*.dot))
docs-images: $(DOCS_IMAGES)

docs/images/%.png: docs/images/%.dot FORCE
	@command -v dot >/dev/null || { echo 'docs-images needs Graphviz: apt-get install graphviz' >&2; exit 1; }
	dot -Tpng -Gdpi=110 $< -o $@

clean:
	rm -rf $(BIN)
