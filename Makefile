# vxvrf: chained CNI plugins building a VRF + VXLAN + bridge overlay.
#
#   make demo    build, then run the default conflist on a throwaway node namespace
#   make test    install what the tests need, then unit, per-plugin and integration tests

PLUGINS  := infra-ensure vrf-vxlan-bridge veth-attach lockfile-ipam sysctl-firewall
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/vxvrf/cni/pkg/buildinfo.Version=$(VERSION)
BIN      := $(CURDIR)/bin
TOOLS    := $(CURDIR)/.tools
GO       ?= go
GOTEST   := $(GO) test -count=1
SHELL    := /bin/bash
export GOFLAGS ?= -buildvcs=false

.PHONY: all build demo demo-cluster test test-vrf e2e e2e-k8s k8s-deps deps test-unit vet fmt tidy install image clean

all: build

build: $(addprefix $(BIN)/,$(PLUGINS))

$(BIN)/%: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./plugins/$*

FORCE:

deps:
	./scripts/install-deps.sh

demo: build
	./scripts/install-deps.sh --demo
	$(GO) run ./integration/demo -bin $(BIN) -conflist conflist/vxvrf.conflist

# Three simulated nodes, a router and an external host: prints who reaches whom.
demo-cluster: build
	./scripts/install-deps.sh --demo
	$(GO) run ./integration/cluster-demo -bin $(BIN)

# Everything; as root (the tests create network namespaces, never touching the host's own).
test: build deps vet
	set -o pipefail; VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -json -timeout 30m ./... | $(GO) run ./scripts/testreport
	$(MAKE) test-vrf
	$(MAKE) e2e

# The runtime suite (containerd+crictl, podman, kubelet, cnitool), each inside
# a node namespace; installs what it needs first (cached under /opt/vxvrf-e2e).
# Fails, not skips, when a runtime is missing.
e2e: build deps
	./scripts/e2e-setup.sh
	set -o pipefail; VXVRF_E2E_REQUIRE=1 VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -tags e2e -json -timeout 20m ./integration/e2e/ | $(GO) run ./scripts/testreport

# The Kubernetes suite (integration/k8s, build tag k8s): vxvrf-agent against
# a real etcd + kube-apiserver built from source (scripts/k8s-setup.sh,
# cached under /opt/vxvrf-e2e/k8s). Not part of `make test` yet: see
# integration/k8s/README.md. Fails, not skips, when a component is missing.
# containerd, crictl, netns-exec and the pause/busybox images come from
# e2e-setup.sh (without its kubelet v1.26 and podman, which this suite does
# not use); etcd and the v1.35 components from k8s-setup.sh.
k8s-deps:
	E2E_KUBELET=0 E2E_PODMAN=0 ./scripts/e2e-setup.sh
	./scripts/k8s-setup.sh

e2e-k8s: build deps k8s-deps $(BIN)/vxvrf-agent
	set -o pipefail; VXVRF_K8S_REQUIRE=1 VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -tags k8s -json -timeout 20m ./integration/k8s/ | $(GO) run ./scripts/testreport

# The VRF suite in a QEMU VM whose kernel has VRF (this one may not); fails
# if a VRF test fails or skips there.
test-vrf: build deps
	VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni GO=$(GO) ./scripts/test-vrf.sh

test-unit:
	$(GOTEST) -short ./pkg/... ./plugins/... 

vet:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./integration/e2e/
	$(GO) vet -tags k8s ./integration/k8s/

fmt:
	gofmt -w .

tidy:
	$(GO) mod tidy

# Installs the binaries atomically (temp file, then rename) into
# $(DESTDIR)$(CNI_BIN_DIR) with the same installer the DaemonSet runs; with
# CLUSTER_CONFIG (and NODE_NAME, NODE_IP) it also renders this node's conflist.
CNI_BIN_DIR    ?= /opt/cni/bin
CNI_CONF_DIR   ?= /etc/cni/net.d
CLUSTER_CONFIG ?=
install: build $(BIN)/vxvrf-installer
	$(BIN)/vxvrf-installer --once --root '$(or $(DESTDIR),/)' --src $(BIN) --plugins '$(PLUGINS)' \
		--cni-bin-dir $(CNI_BIN_DIR) --cni-conf-dir $(CNI_CONF_DIR) $(if $(CLUSTER_CONFIG),--config '$(CLUSTER_CONFIG)')

$(BIN)/vxvrf-installer: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./deploy/installer

$(BIN)/vxvrf-agent: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./deploy/agent

# An OCI image of the installer and the plugins, built without a Docker daemon.
image:
	VERSION=$(VERSION) ./deploy/build-image.sh

clean:
	rm -rf $(BIN)
