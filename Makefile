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

.PHONY: all build demo test test-vrf deps test-unit vet fmt tidy install clean

all: build

build: $(addprefix $(BIN)/,$(PLUGINS))

$(BIN)/%: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./plugins/$*

FORCE:

deps:
	./scripts/install-deps.sh

demo: build deps
	$(GO) run ./integration/demo -bin $(BIN) -conflist conflist/vxvrf.conflist

# Everything; as root (the tests create network namespaces, never touching the host's own).
test: build deps vet
	set -o pipefail; VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni PATH=$(TOOLS)/bin:$$PATH \
		$(GOTEST) -json -timeout 30m ./... | $(GO) run ./scripts/testreport
	$(MAKE) test-vrf

# The VRF suite in a QEMU VM whose kernel has VRF (this one may not); fails
# if a VRF test fails or skips there.
test-vrf: build deps
	VXVRF_BIN=$(BIN) VXVRF_REF_BIN=$(TOOLS)/cni GO=$(GO) ./scripts/test-vrf.sh

test-unit:
	$(GOTEST) -short ./pkg/... ./plugins/... 

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

# Installs the binaries (atomically: temp file, then rename) into $(DESTDIR)$(CNI_BIN_DIR).
CNI_BIN_DIR ?= /opt/cni/bin
install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	for p in $(PLUGINS); do install -m 0755 $(BIN)/$$p $(DESTDIR)$(CNI_BIN_DIR)/.$$p.tmp && mv -f $(DESTDIR)$(CNI_BIN_DIR)/.$$p.tmp $(DESTDIR)$(CNI_BIN_DIR)/$$p; done

clean:
	rm -rf $(BIN)
