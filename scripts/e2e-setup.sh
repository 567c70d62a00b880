#!/usr/bin/env bash
# e2e-setup.sh: installs what the end-to-end runtime suite (integration/e2e)
# needs. Idempotent: each step checks its result first, so a re-run takes
# about a second.
#
#   apt: containerd (1.6), runc, podman (4.3, CNI backend), busybox-static, jq,
#        iproute2, iptables, iputils-ping, util-linux
#   $E2E_PREFIX/bin/crictl    cri-tools v1.26.1, built from source (~1-2 min)
#   $E2E_PREFIX/bin/netns-exec  runs a command in a node netns with cgroups
#   $E2E_PREFIX/images/       local images (no registry is reachable):
#       pause.oci.tar         pause sandbox image localhost/vxvrf-e2e-pause:1.0
#       busybox.oci.tar       localhost/vxvrf-e2e-busybox:latest for containerd
#       busybox-rootfs.tar    the same rootfs for `podman import`
#
# Nothing outside the prefix is configured: no containerd config, no
# containers.conf, no CNI conf in /etc. The tests write their own configs in
# temporary directories and start private daemons inside node namespaces.
#
# The kubelet is not built here: TestKubeletStaticPod uses the v1.35.4 kubelet
# scripts/k8s-setup.sh builds with the rest of Kubernetes (one version for the
# whole test command; `make e2e` runs both scripts).
#
# Knobs (env): E2E_PREFIX (/opt/vxvrf-e2e), E2E_PODMAN (1),
# CRITOOLS_VERSION (v1.26.1), K8S_LIBS_VERSION (v0.26.0, the k8s.io libraries
# crictl is built against)
set -euo pipefail

PREFIX=${E2E_PREFIX:-/opt/vxvrf-e2e}
CRITOOLS_VERSION=${CRITOOLS_VERSION:-v1.26.1}
K8S_LIBS_VERSION=${K8S_LIBS_VERSION:-v0.26.0}
WITH_PODMAN=${E2E_PODMAN:-1}
GO=${GO:-go}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
command -v "$GO" >/dev/null || export PATH=/usr/local/go/bin:$PATH

log() { printf '[e2e-setup] %s\n' "$*" >&2; }
. "$(dirname "$0")/apt.sh"
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
start=$(date +%s)
mkdir -p "$PREFIX/bin" "$PREFIX/images" "$PREFIX/src"

# ---------------------------------------------------------------- apt
pkgs="containerd runc busybox-static jq iproute2 iptables iputils-ping util-linux"
[ "$WITH_PODMAN" = 1 ] && pkgs="$pkgs podman"
# --no-install-recommends (apt_ensure): podman would pull
# crun/fuse-overlayfs/slirp4netns; crun 1.8 refuses this machine's hybrid
# cgroups, we use runc.
# shellcheck disable=SC2086 # one word per package
apt_ensure $pkgs
# The Debian containerd package starts no daemon here (no systemd); if an init
# system did start one, it uses its own socket and we never talk to it.

# ---------------------------------------------------------------- crictl
# `go install sigs.k8s.io/cri-tools/cmd/crictl@...` is refused by the module
# proxy; v1.26.1 is still published under github.com/kubernetes-sigs/cri-tools,
# whose replace directives point at k8s staging pseudo-versions the proxy also
# refuses: build it as a main module with those replaced by k8s.io/* v0.26.0.
if ! "$PREFIX/bin/crictl" --version 2>/dev/null | grep -qx "crictl version $CRITOOLS_VERSION"; then
  log "building crictl $CRITOOLS_VERSION (1-2 min)"
  t=$(date +%s)
  src=$(cd /tmp && "$GO" mod download -json "github.com/kubernetes-sigs/cri-tools@$CRITOOLS_VERSION" | jq -r .Dir)
  work=$(mktemp -d /tmp/vxvrf-critools.XXXXXX)
  cp -r "$src/." "$work/"; chmod -R u+w "$work"; rm -rf "$work/vendor"
  (
    cd "$work"
    for m in $(grep -oE 'k8s.io/[a-z0-9-]+ => k8s.io/kubernetes/staging' go.mod | awk '{print $1}'); do
      "$GO" mod edit -replace "$m=$m@$K8S_LIBS_VERSION"
    done
    CGO_ENABLED=0 "$GO" build -mod=mod -trimpath \
      -ldflags "-s -w -X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$CRITOOLS_VERSION" \
      -o "$PREFIX/bin/crictl.new" ./cmd/crictl
  )
  mv -f "$PREFIX/bin/crictl.new" "$PREFIX/bin/crictl"
  rm -rf "$work"
  log "crictl built in $(($(date +%s) - t)) s"
fi

# ---------------------------------------------------------------- netns-exec
# `ip netns exec` gives the command a private mount namespace and a fresh
# /sys for the node's netns, which drops the /sys/fs/cgroup mounts runc needs.
# This wrapper mounts the host's cgroup hierarchies again inside (same
# filesystems, same options), then execs the command.
cat > "$PREFIX/bin/netns-exec.new" <<'EOF'
#!/bin/sh
# netns-exec NETNS CMD...: run CMD in named netns NETNS (ip netns exec) with the
# host's cgroup mounts restored under /sys/fs/cgroup. Mounts stay private to it.
set -eu
[ $# -ge 2 ] || { echo "usage: netns-exec NETNS CMD..." >&2; exit 2; }
n=$1; shift
mounts=$(findmnt -rn -R /sys/fs/cgroup -o TARGET,FSTYPE,OPTIONS)
exec ip netns exec "$n" sh -c '
  set -eu
  printf "%s\n" "$0" | while read -r target fstype opts; do
    [ -n "$target" ] || continue
    mkdir -p "$target" 2>/dev/null || true
    mount -t "$fstype" -o "$opts" "$fstype" "$target"
  done
  exec "$@"' "$mounts" "$@"
EOF
chmod 755 "$PREFIX/bin/netns-exec.new"; mv -f "$PREFIX/bin/netns-exec.new" "$PREFIX/bin/netns-exec"

# ---------------------------------------------------------------- images
# oci_tar ROOTFS NAME CONFIG_JSON OUT: reproducible one-layer OCI archive; the
# name goes in io.containerd.image.name, which `ctr images import` uses.
oci_tar() {
  local rootfs=$1 name=$2 cfg=$3 out=$4 w L LS C CS M MS
  w=$(mktemp -d /tmp/vxvrf-oci.XXXXXX); mkdir -p "$w/oci/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$rootfs" -cf "$w/layer.tar" .
  L=$(sha256sum "$w/layer.tar" | cut -d' ' -f1); LS=$(stat -c %s "$w/layer.tar"); mv "$w/layer.tar" "$w/oci/blobs/sha256/$L"
  jq -cn --argjson c "$cfg" --arg l "sha256:$L" \
    '{architecture:"amd64",os:"linux",config:$c,rootfs:{type:"layers",diff_ids:[$l]}}' > "$w/config.json"
  C=$(sha256sum "$w/config.json" | cut -d' ' -f1); CS=$(stat -c %s "$w/config.json"); mv "$w/config.json" "$w/oci/blobs/sha256/$C"
  jq -cn --arg c "sha256:$C" --argjson cs "$CS" --arg l "sha256:$L" --argjson ls "$LS" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar",digest:$l,size:$ls}]}' > "$w/manifest.json"
  M=$(sha256sum "$w/manifest.json" | cut -d' ' -f1); MS=$(stat -c %s "$w/manifest.json"); mv "$w/manifest.json" "$w/oci/blobs/sha256/$M"
  jq -cn --arg m "sha256:$M" --argjson ms "$MS" --arg n "$name" --arg t "${name##*:}" \
    '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$m,size:$ms,
      annotations:{"io.containerd.image.name":$n,"org.opencontainers.image.ref.name":$t}}]}' > "$w/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$w/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$w/oci" -cf "$out.new" oci-layout index.json blobs
  mv -f "$out.new" "$out"
  rm -rf "$w"
}

if [ ! -s "$PREFIX/images/busybox.oci.tar" ] || [ /bin/busybox -nt "$PREFIX/images/busybox.oci.tar" ]; then
  log "building the busybox image from busybox-static"
  r=$(mktemp -d /tmp/vxvrf-rootfs.XXXXXX)
  mkdir -p "$r/bin" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/tmp" "$r/root" "$r/www"
  cp /bin/busybox "$r/bin/busybox"
  for app in $(/bin/busybox --list); do [ "$app" = busybox ] || ln -sf busybox "$r/bin/$app"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"; echo 'root:x:0:' > "$r/etc/group"
  echo 'vxvrf e2e' > "$r/www/index.html"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$r" -cf "$PREFIX/images/busybox-rootfs.tar.new" .
  mv -f "$PREFIX/images/busybox-rootfs.tar.new" "$PREFIX/images/busybox-rootfs.tar"
  oci_tar "$r" localhost/vxvrf-e2e-busybox:latest '{"Cmd":["/bin/sh"],"WorkingDir":"/"}' "$PREFIX/images/busybox.oci.tar"
  rm -rf "$r"
fi

if [ ! -s "$PREFIX/images/pause.oci.tar" ]; then
  log "building the pause image"
  mkdir -p "$PREFIX/src/pause"
  cat > "$PREFIX/src/pause/main.go" <<'EOF'
// pause: minimal pod sandbox process: sleeps until SIGINT/SIGTERM and reaps
// zombie children on SIGCHLD.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
EOF
  printf 'module vxvrf/e2e/pause\n\ngo 1.21\n' > "$PREFIX/src/pause/go.mod"
  r=$(mktemp -d /tmp/vxvrf-pause.XXXXXX)
  (cd "$PREFIX/src/pause" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" build -trimpath -ldflags '-s -w' -o "$r/pause" .)
  oci_tar "$r" localhost/vxvrf-e2e-pause:1.0 '{"Entrypoint":["/pause"],"WorkingDir":"/"}' "$PREFIX/images/pause.oci.tar"
  rm -rf "$r"
fi

log "done in $(($(date +%s) - start)) s: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), $("$PREFIX/bin/crictl" --version)$(
  [ "$WITH_PODMAN" = 1 ] && printf ', podman %s' "$(podman --version | awk '{print $3}')")"
