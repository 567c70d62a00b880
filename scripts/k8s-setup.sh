#!/usr/bin/env bash
# k8s-setup.sh: installs what the real-cluster suite (integration/k8s) and
# the kubelet test of integration/e2e need: etcd from Debian and the
# Kubernetes components built from source at one pinned version, cached
# under the e2e prefix. Idempotent: a re-run with everything cached takes
# about a second.
#
#   apt: etcd-server (3.4, Debian), jq
#   $E2E_PREFIX/k8s/$K8S_VERSION/bin/{kube-apiserver,kube-controller-manager,
#        kube-scheduler,kube-proxy,kubelet,kubectl}
#        built in ONE `go build` so the shared packages compile once
#        (5-15 min on 2 cores; cached afterwards). kubectl is what the
#        k8s suite applies the manifests in deploy/ with, as an operator does.
#
# Why this version: v1.35 is the newest Kubernetes whose kubelet still runs on
# containerd 1.x (Debian ships 1.6); v1.36 drops containerd 1.x. See
# integration/k8s/README.md. integration/k8s (Version) and integration/e2e
# (kubeletVersion) name the same version.
#
# Knobs (env): E2E_PREFIX (/opt/vxvrf-e2e), K8S_VERSION (v1.35.4),
# K8S_COMPONENTS (the six above)
set -euo pipefail

PREFIX=${E2E_PREFIX:-/opt/vxvrf-e2e}
K8S_VERSION=${K8S_VERSION:-v1.35.4}
GO=${GO:-go}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
command -v "$GO" >/dev/null || export PATH=/usr/local/go/bin:$PATH
COMPONENTS=${K8S_COMPONENTS:-kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl}
BIN=$PREFIX/k8s/$K8S_VERSION/bin

log() { printf '[k8s-setup] %s\n' "$*" >&2; }
. "$(dirname "$0")/apt.sh"
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
start=$(date +%s)

# ---------------------------------------------------------------- apt
apt_ensure etcd-server jq
# The package may start a system etcd where an init system runs; the tests
# never use it: they start their own etcd inside a namespace they create.

# ---------------------------------------------------------------- components
have() {
  for c in $COMPONENTS; do
    [ -x "$BIN/$c" ] || return 1
  done
  [ -f "$BIN/.version" ] && [ "$(cat "$BIN/.version")" = "$K8S_VERSION" ]
}
if ! have; then
  # k8s.io/kubernetes' ./staging replaces are left out of the module zip the
  # proxy serves; point them at the published k8s.io/* modules of the same
  # release (v0.MINOR.PATCH), as scripts/e2e-setup.sh does for crictl.
  log "building $COMPONENTS $K8S_VERSION in one go build (5-15 min on 2 cores; cached in $BIN)"
  t=$(date +%s)
  src=$(cd /tmp && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .Dir)
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  libs=v0.${K8S_VERSION#v1.}
  work=$(mktemp -d /tmp/vxvrf-k8s-build.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  cp -r "$src/." "$work/"; chmod -R u+w "$work"; rm -rf "$work/vendor"
  mkdir -p "$work/out"
  (
    cd "$work"
    rm -f go.work go.work.sum; export GOWORK=off
    for m in $(grep -oE 'k8s.io/[a-z0-9-]+ => ./staging' go.mod | awk '{print $1}'); do
      "$GO" mod edit -replace "$m=$m@$libs"
    done
    pkgs=""
    for c in $COMPONENTS; do pkgs="$pkgs ./cmd/$c"; done
    CGO_ENABLED=0 "$GO" build -mod=mod -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
      -o "$work/out/" $pkgs
  )
  mkdir -p "$BIN"
  for c in $COMPONENTS; do mv -f "$work/out/$c" "$BIN/$c"; done
  echo "$K8S_VERSION" >"$BIN/.version"
  log "built in $(($(date +%s) - t)) s"
fi

log "done in $(($(date +%s) - start)) s: etcd $(etcd --version 2>/dev/null | awk '/etcd Version/{print $3}'), $("$BIN/kube-apiserver" --version) in $BIN"
