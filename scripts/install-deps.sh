#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# system packages (iproute2, iptables, ping; for the tests also gcc and
# libc6-dev for `make race`, tar and gzip for `make image`, nft to read the
# nftables backend's ruleset as an operator does) and, through the
# Go toolchain, cnitool and the reference plugins used by the swap tests,
# into .tools/, and FRR (unpacked) for the evpn test, and golangci-lint for
# `make lint`. The runtime and Kubernetes suites install theirs with
# scripts/e2e-setup.sh and scripts/k8s-setup.sh. With --demo only the system
# packages the demo needs, with --lint only golangci-lint. Idempotent: a
# second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

CNITOOL_VERSION=${CNITOOL_VERSION:-v1.3.0}
PLUGINS_VERSION=${PLUGINS_VERSION:-v1.9.1}
# The newest release that builds with the Go in use (1.26); .golangci.yml is
# written for it. Raise it on purpose, together with any new findings.
GOLANGCI_LINT_VERSION=${GOLANGCI_LINT_VERSION:-v2.15.0}
TOOLS=${TOOLS:-$PWD/.tools}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

log() { printf '[deps] %s\n' "$*" >&2; }
. "$(dirname "$0")/apt.sh"

# mod_version BINARY MODULE: the module version a Go binary was built from.
mod_version() { [ -x "$1" ] && go version -m "$1" 2>/dev/null | awk -v m="$2" '$1=="mod" && $2==m {print $3}'; }

# golangci-lint, pinned, into .tools/bin (a first build takes a minute or two).
ensure_golangci_lint() {
  mkdir -p "$TOOLS/bin"
  if [ "$(mod_version "$TOOLS/bin/golangci-lint" github.com/golangci/golangci-lint/v2)" != "$GOLANGCI_LINT_VERSION" ]; then
    log "go install golangci-lint@$GOLANGCI_LINT_VERSION"
    (cd /tmp && GOBIN="$TOOLS/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION")
  fi
}
if [ "${1:-}" = --lint ]; then
  ensure_golangci_lint
  exit 0
fi

pkgs="iproute2 iptables iputils-ping procps"
# The race detector needs cgo (a C compiler and libc headers);
# deploy/build-image.sh needs GNU tar and gzip (both are in every Debian).
# nft (package nftables) only reads: TestNftListReadable checks that our
# sets list readably; the plugins never exec it.
[ "${1:-}" = --demo ] || pkgs="$pkgs gcc libc6-dev tar gzip nftables"
# shellcheck disable=SC2086 # one word per package
apt_ensure $pkgs || exit 1

[ "${1:-}" = --demo ] && exit 0

mkdir -p "$TOOLS/bin" "$TOOLS/cni"
ensure_golangci_lint
if [ "$(mod_version "$TOOLS/bin/cnitool" github.com/containernetworking/cni)" != "$CNITOOL_VERSION" ]; then
  log "go install cnitool@$CNITOOL_VERSION"
  (cd /tmp && GOBIN="$TOOLS/bin" go install "github.com/containernetworking/cni/cnitool@$CNITOOL_VERSION")
fi
need=""
for p in ipam/host-local main/bridge meta/tuning meta/firewall meta/portmap meta/bandwidth main/loopback; do
  b="$TOOLS/cni/$(basename "$p")"
  [ "$(mod_version "$b" github.com/containernetworking/plugins)" = "$PLUGINS_VERSION" ] ||
    need="$need github.com/containernetworking/plugins/plugins/$p@$PLUGINS_VERSION"
done
if [ -n "$need" ]; then
  log "go install reference plugins @$PLUGINS_VERSION"
  (cd /tmp && CGO_ENABLED=0 GOBIN="$TOOLS/cni" go install $need)
fi

# FRR for the evpn test, unpacked (not installed: the package would start FRR
# in this machine's own network namespace) into /var/cache/vxvrf-frr.
if ! integration/cluster/frr-extract.sh >/dev/null 2>&1; then
  apt-get update -qq
  integration/cluster/frr-extract.sh >&2
fi
