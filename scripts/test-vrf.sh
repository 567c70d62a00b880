#!/usr/bin/env bash
# test-vrf.sh - the VRF suite (`make test-vrf`): tests whose name contains
# "VRF", run in a VM whose kernel has VRF (scripts/vmtest.sh), because the
# development kernel has none.
#
#   1. builds the plugins with CGO_ENABLED=0 into a temporary bin/ (or uses
#      $VXVRF_BIN when it is set and holds them), and the previous release's
#      (testutil.PreviousRelease, for the upgrade tests) from git unless
#      $VXVRF_PREV_BIN is set;
#   2. compiles the test binary of each package in $VRF_PKGS
#      (./integration/vrf must compile; a plugin package that does not yet
#      compile is reported and left out);
#   3. runs each binary that lists a VRF test in the VM with
#      -test.run VRF -test.skip 'VRFUnsupported|NoVRF' -test.v (the skipped
#      ones test the no-VRF path), VXVRF_BIN=<that bin/>, VXVRF_PREV_BIN=<the
#      previous release's>, VXVRF_REQUIRE_VRF=1,
#      VXVRF_REF_BIN=<reference plugins: host-local>, the package directory as
#      the working directory;
#   4. prints a summary and FAILS when a plugin did not build, a test failed
#      or skipped, a VM run failed, or no test ran at all.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export GOFLAGS=${GOFLAGS:--buildvcs=false} CGO_ENABLED=0
GO=${GO:-go}
VRF_PKGS=${VRF_PKGS:-./integration/vrf ./integration/cluster ./plugins/vrf-vxlan-bridge ./plugins/veth-attach}
REQUIRED_PKGS="./integration/vrf"
PLUGINS=$(cd plugins && ls -d */ | tr -d / | tr '\n' ' ')
RUN_PATTERN=${VRF_RUN:-VRF}
REF_VERSION=${PLUGINS_VERSION:-v1.9.1}
# Tests of the no-VRF path (they skip on a VRF kernel by design) are left out.
SKIP_PATTERN=${VRF_SKIP:-VRFUnsupported|NoVRF}

log() { printf '[test-vrf] %s\n' "$*" >&2; }
t0=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vxvrf-vrf.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
problems=()

# 1. plugins
if [[ -n ${VXVRF_BIN:-} ]]; then
	BIN=$(realpath "$VXVRF_BIN")
	for p in $PLUGINS; do [[ -x $BIN/$p ]] || problems+=("plugin $p missing from VXVRF_BIN=$BIN"); done
else
	BIN=$WORK/bin
	mkdir -p "$BIN"
	for p in $PLUGINS; do
		if ! out=$($GO build -trimpath -o "$BIN/$p" "./plugins/$p" 2>&1); then
			log "plugin $p does not build:"
			printf '%s\n' "$out" | head -20 >&2
			problems+=("plugin $p does not build")
		fi
	done
fi
log "plugins in $BIN: $(ls "$BIN" | tr '\n' ' ')"

# The previous release's plugins for the upgrade tests
# (testutil.PreviousPlugins; the guest has neither git nor go):
# $VXVRF_PREV_BIN, else built from `git archive <PreviousRelease>`.
PREV=${VXVRF_PREV_BIN:-}
PREV_COMMIT=$(sed -n 's/^const PreviousRelease = "\(.*\)"$/\1/p' internal/testutil/previous.go)
if [[ -z $PREV ]]; then
	PREV=$WORK/prev
	mkdir -p "$PREV" "$WORK/prev-src"
	if git archive "$PREV_COMMIT" | tar -x -C "$WORK/prev-src"; then
		for p in $PLUGINS; do
			(cd "$WORK/prev-src" && $GO build -trimpath -o "$PREV/$p" "./plugins/$p") ||
				problems+=("previous release $PREV_COMMIT: plugin $p does not build")
		done
	else
		problems+=("previous release $PREV_COMMIT not available from git (set VXVRF_PREV_BIN)")
	fi
fi
PREV=$(realpath "$PREV")

# Reference plugins (host-local) some plugin tests use: $VXVRF_REF_BIN, else
# .tools/cni (scripts/install-deps.sh), else go install into the work dir.
REF=${VXVRF_REF_BIN:-$ROOT/.tools/cni}
if [[ ! -x $REF/host-local ]]; then
	REF=$WORK/ref
	log "go install host-local@$REF_VERSION (reference plugin for the plugin tests)"
	(cd "$WORK" && GOBIN=$REF $GO install "github.com/containernetworking/plugins/plugins/ipam/host-local@$REF_VERSION") ||
		problems+=("could not build the reference host-local")
fi
REF=$(realpath -m "$REF")

# 2. test binaries
bins=()
for pkg in $VRF_PKGS; do
	name=$(basename "$pkg")
	tb=$WORK/$name.test
	if ! out=$($GO test -c -o "$tb" "$pkg" 2>&1); then
		if [[ " $REQUIRED_PKGS " == *" $pkg "* ]]; then
			problems+=("$pkg does not compile")
		else
			log "note: $pkg does not compile yet; left out"
		fi
		printf '%s\n' "$out" | head -20 >&2
		continue
	fi
	[[ -x $tb ]] || { log "note: $pkg has no tests"; continue; }
	listed=$("$tb" -test.list "$RUN_PATTERN" 2>/dev/null | grep -vcE "$SKIP_PATTERN" || true)
	if [[ $listed == 0 ]]; then
		log "note: $pkg has no test matching $RUN_PATTERN"
		continue
	fi
	log "$pkg: $listed VRF test(s)"
	bins+=("$pkg=$tb")
done

# 3. the VM runs (one boot per package)
declare -A res=()
total_pass=0 total_fail=0 total_skip=0
for entry in "${bins[@]}"; do
	pkg=${entry%%=*}
	tb=${entry#*=}
	dir=$(realpath "$pkg")
	log "running $pkg in the VM"
	rc=0 # pipefail: the status is vmtest.sh's (tee succeeds)
	files="$BIN $PREV $dir"
	[[ -d $REF ]] && files+=" $REF"
	VMTEST_FILES=$files VMTEST_CWD=$dir VMTEST_ENV="VXVRF_BIN=$BIN VXVRF_PREV_BIN=$PREV VXVRF_REF_BIN=$REF VXVRF_REQUIRE_VRF=1" \
		"$ROOT/scripts/vmtest.sh" "$tb" -test.run "$RUN_PATTERN" -test.skip "$SKIP_PATTERN" -test.v -test.count=1 -test.timeout=10m 2>&1 |
		tee "$WORK/$(basename "$tb").log" || rc=$?
	log=$WORK/$(basename "$tb").log
	p=$(grep -cE '^ *--- PASS: ' "$log" || true)
	f=$(grep -cE '^ *--- FAIL: ' "$log" || true)
	s=$(grep -cE '^ *--- SKIP: ' "$log" || true)
	total_pass=$((total_pass + p)) total_fail=$((total_fail + f)) total_skip=$((total_skip + s))
	res[$pkg]="pass=$p fail=$f skip=$s exit=$rc"
	((rc == 0)) || problems+=("$pkg: VM run exited $rc")
	((f == 0)) || problems+=("$pkg: failed: $(grep -E '^ *--- FAIL: ' "$log" | awk '{print $3}' | tr '\n' ' ')")
	((s == 0)) || problems+=("$pkg: skipped in the VM (must run there): $(grep -E '^ *--- SKIP: ' "$log" | awk '{print $3}' | tr '\n' ' ')")
done
((total_pass > 0)) || problems+=("no VRF test passed in the VM")

# 4. summary
echo
echo "==== VRF suite (in the VM, kernel with VRF) ===="
for entry in "${bins[@]}"; do
	pkg=${entry%%=*}
	printf '  %-32s %s\n' "$pkg" "${res[$pkg]}"
done
printf '  total: %d passed, %d failed, %d skipped, %ds\n' "$total_pass" "$total_fail" "$total_skip" $((SECONDS - t0))
if ((${#problems[@]})); then
	echo "FAIL:"
	printf '  - %s\n' "${problems[@]}"
	exit 1
fi
echo "PASS"
