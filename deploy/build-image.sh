#!/usr/bin/env bash
# Builds the vxvrf image (plugins, vxvrf-agent, vxvrf-installer) as an OCI image layout and an oci-archive,
# with no Docker daemon and no image tool: Go builds static binaries, GNU tar,
# gzip and sha256sum assemble one layer, and the JSON is written here.
# The result is reproducible: the same sources and SOURCE_DATE_EPOCH give the
# same digests.
#
#   deploy/build-image.sh [-o OUTDIR] [-i IMAGE] [-a GOARCH]
#
#   OUTDIR  default deploy/out; writes OUTDIR/vxvrf-cni/ (OCI layout) and
#           OUTDIR/vxvrf-cni.oci.tar (the same layout as one tar: oci-archive)
#   IMAGE   default localhost/vxvrf-cni:dev (the DaemonSet's image)
#   GOARCH  default amd64
#
# Loading it: see deploy/README.md (ctr images import, podman load, skopeo copy).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=$here/out
image=localhost/vxvrf-cni:dev
arch=${GOARCH:-amd64}
while getopts o:i:a:h opt; do
	case $opt in
	o) out=$OPTARG ;;
	i) image=$OPTARG ;;
	a) arch=$OPTARG ;;
	*) sed -n '2,16p' "$0"; exit 2 ;;
	esac
done
case $image in *:*) ;; *) image=$image:latest ;; esac

GO=${GO:-go}
# The stages are the folders under plugins/.
PLUGINS=()
for d in "$root"/plugins/*/; do PLUGINS+=("$(basename "$d")"); done
VERSION=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X github.com/vxvrf/cni/pkg/buildinfo.Version=$VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/opt/vxvrf/bin" "$rootfs/usr/local/bin"

echo "building static binaries for linux/$arch ($VERSION)" >&2
build() { (cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOFLAGS=-buildvcs=false \
	"$GO" build -trimpath -ldflags "$ldflags" -o "$1" "$2"); }
for p in "${PLUGINS[@]}"; do
	build "$rootfs/opt/vxvrf/bin/$p" "./plugins/$p"
done
build "$rootfs/opt/vxvrf/bin/vxvrf" ./cmd/vxvrf
build "$rootfs/usr/local/bin/vxvrf-installer" ./deploy/installer
build "$rootfs/usr/local/bin/vxvrf-agent" ./deploy/agent
find "$rootfs" -type d -exec chmod 0755 {} +
find "$rootfs" -type f -exec chmod 0755 {} +

layout=$out/vxvrf-cni
rm -rf "$layout" "$out/vxvrf-cni.oci.tar"
mkdir -p "$layout/blobs/sha256"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# put FILE: moves FILE into blobs/sha256 under its digest, prints the digest.
put() { local d; d=$(sha "$1"); mv "$1" "$layout/blobs/sha256/$d"; echo "$d"; }

# The layer: sorted, owned by root, fixed mtime, no atime/ctime.
tar -C "$rootfs" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
	--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	-cf "$work/layer.tar" opt usr
diff_id=$(sha "$work/layer.tar")
gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
layer_size=$(size "$work/layer.tar.gz")
layer=$(put "$work/layer.tar.gz")

cat >"$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","created":"$created","config":{"Env":["PATH=/usr/local/bin:/opt/vxvrf/bin"],"Entrypoint":["/usr/local/bin/vxvrf-agent"],"Cmd":["--config=/etc/vxvrf/cluster.json"],"WorkingDir":"/","Labels":{"org.opencontainers.image.title":"vxvrf-cni","org.opencontainers.image.version":"$VERSION","org.opencontainers.image.description":"vxvrf CNI plugins, their node agent and installer"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"$created","created_by":"deploy/build-image.sh"}]}
JSON
config_size=$(size "$work/config.json")
config=$(put "$work/config.json")

cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$layer_size}]}
JSON
manifest_size=$(size "$work/manifest.json")
manifest=$(put "$work/manifest.json")

# ref.name: what `skopeo copy oci:DIR:NAME`, podman load and umoci use;
# io.containerd.image.name: the name `ctr images import` gives the image.
cat >"$layout/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"platform":{"architecture":"$arch","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"$image","io.containerd.image.name":"$image"}}]}
JSON
printf '{"imageLayoutVersion":"1.0.0"}\n' >"$layout/oci-layout"

tar -C "$layout" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
	-cf "$out/vxvrf-cni.oci.tar" oci-layout index.json blobs
echo "image $image (linux/$arch): manifest sha256:$manifest" >&2
echo "  layout:      $layout" >&2
echo "  oci-archive: $out/vxvrf-cni.oci.tar" >&2
