#!/usr/bin/env bash
# frr-extract.sh [dir] - make FRR (Debian bookworm's frr 8.4 with the two
# libraries it needs that a plain machine lacks) available to the evpn test
# WITHOUT installing the package: installing it would run its maintainer
# scripts and start FRR in the machine's own network namespace, which the
# project never touches. The packages are fetched with apt-get download and
# unpacked with dpkg -x into dir (default /var/cache/vxvrf-frr); the test
# finds it there or through $VXVRF_FRR. Idempotent.
set -euo pipefail
DIR=${1:-${VXVRF_FRR:-/var/cache/vxvrf-frr}}
if [[ -x $DIR/usr/lib/frr/zebra && -x $DIR/usr/lib/frr/bgpd ]]; then
	echo "frr-extract: FRR already in $DIR"
	exit 0
fi
DL=$(mktemp -d)
trap 'rm -rf "$DL"' EXIT
chmod 755 "$DL"
(cd "$DL" && apt-get download frr libc-ares2 libyang2 >/dev/null)
mkdir -p "$DIR"
for d in "$DL"/*.deb; do dpkg -x "$d" "$DIR"; done
echo "frr-extract: FRR unpacked into $DIR"
