#!/usr/bin/env bash
# Runs every native fuzz target (testing.F) for FUZZTIME each (default 5s;
# make fuzz runs them longer). A target that fails leaves its crasher in
# <package>/testdata/fuzz/<Target>/ (commit it as a regression seed) and
# makes the script fail after the other targets ran.
#
# The command-level targets (FuzzCommands) run the stages' ADD/CHECK/DEL/
# GC/STATUS in-process and change the network namespace they run in, so the
# whole run happens in a throwaway network and mount namespace with a tmpfs
# on /run (needs root; TMPDIR is on it too, so the fuzz workers' state goes
# with it); the machine's own network and /run are not touched.
#
#   scripts/fuzz.sh                 every target, FUZZTIME each
#   scripts/fuzz.sh FuzzDecode ...  only the named targets
set -euo pipefail

FUZZTIME=${FUZZTIME:-5s}
# Minimising a new input re-runs the target many times; the command-level
# targets are slow (whole CNI verbs), so keep it short.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}
GO=${GO:-go}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULE=github.com/vxvrf/cni

# fuzz_targets prints "<package under plugins/> <target>" for every native
# fuzz target in the plugins' tests, sorted: a new stage's or package's
# targets run without editing this script.
fuzz_targets() {
	(cd "$ROOT/plugins" && grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' .) |
		sed -E 's#^\./(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u
}

if [[ "${VXVRF_FUZZ_ISOLATED:-}" != 1 ]]; then
	if [[ $(id -u) != 0 ]]; then
		echo "fuzz.sh: needs root (runs the targets in a private network namespace)" >&2
		exit 1
	fi
	# The build happens before: the isolated namespace has no network.
	export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
	BUILD=$(mktemp -d /tmp/vxvrf-fuzzbin-XXXXXX)
	trap 'rm -rf "$BUILD"' EXIT
	for pkg in $(fuzz_targets | cut -d' ' -f1 | sort -u); do
		# -fuzz builds the binary with coverage instrumentation.
		(cd "$ROOT" && $GO test -c -fuzz . -o "$BUILD/${pkg//\//-}.test" "./plugins/$pkg")
	done
	CACHE=$($GO env GOCACHE)/fuzz
	set +e
	unshare --net --mount --propagation private -- env VXVRF_FUZZ_ISOLATED=1 FUZZ_BUILD="$BUILD" FUZZ_CACHE="$CACHE" \
		VXVRF_FUZZ_OUTER_NET="$(readlink /proc/self/ns/net)" VXVRF_FUZZ_OUTER_MNT="$(readlink /proc/self/ns/mnt)" \
		bash -c 'mount -t tmpfs vxvrf-fuzz /run && mkdir /run/tmp && TMPDIR=/run/tmp exec "$0" "$@"' "$0" "$@"
	exit $?
fi

# Package (under plugins/) and target, in a stable order.
mapfile -t TARGETS < <(fuzz_targets)

# deadline_race: the log's only failure is the coordinator's own "context
# deadline exceeded" at the end of -fuzztime (golang/go#75804, fixed in
# go1.27): one --- FAIL line, no failing input, no panic, no message from
# a target.
deadline_race() {
	grep -q 'context deadline exceeded' "$1" &&
		[[ $(grep -c -- '--- FAIL' "$1") == 1 ]] &&
		! grep -Eq 'Failing input|panic|\.go:[0-9]+: ' "$1"
}

ip link set lo up
failed=()
ran=0
start=$SECONDS
for t in "${TARGETS[@]}"; do
	read -r pkg target <<<"$t"
	if (($# > 0)) && [[ " $* " != *" $target "* && " $* " != *" $pkg/$target "* ]]; then
		continue
	fi
	t0=$SECONDS
	ran=$((ran + 1))
	echo "=== fuzz $pkg $target ($FUZZTIME)"
	log="$FUZZ_BUILD/${pkg//\//-}-$target.log"
	if ! (cd "$ROOT/plugins/$pkg" && "$FUZZ_BUILD/${pkg//\//-}.test" -test.run '^$' -test.fuzz "^$target\$" \
		-test.fuzztime "$FUZZTIME" -test.fuzzminimizetime "$FUZZMINIMIZETIME" -test.fuzzcachedir "$FUZZ_CACHE/$MODULE/plugins/$pkg" >"$log" 2>&1); then
		if deadline_race "$log"; then
			echo "(go1.26 fuzz coordinator race at the end of -fuzztime, golang/go#75804: no failing input; not a failure)"
			echo "--- $pkg $target: $((SECONDS - t0))s"
			continue
		fi
		failed+=("$pkg $target")
		# The failing input, the property or panic, and the project's frames.
		grep -E -- '--- FAIL|panic:|panicked on|Failing input|go test -run|_test\.go:[0-9]+:|fuzzstage\.go:[0-9]+:|/plugins/[^ ]+\.go:[0-9]+|/(pkg|internal)/[^ ]+\.go:[0-9]+' "$log" | grep -v '_test.go:[0-9]* +0x' | head -n 40
	else
		tail -n 2 "$log"
	fi
	echo "--- $pkg $target: $((SECONDS - t0))s"
done
echo "fuzz: $ran targets in $((SECONDS - start))s, ${#failed[@]} failed"
if ((${#failed[@]} > 0)); then
	printf 'FAILED: %s (crashers under plugins/<pkg>/testdata/fuzz/<Target>/)\n' "${failed[@]}"
	exit 1
fi
