#!/usr/bin/env bash
# vmtest.sh - run a static test binary as root in a throwaway QEMU VM whose
# kernel has VRF (Debian bookworm's linux-image-amd64), and exit with the
# binary's exit code. The development kernel has no CONFIG_NET_VRF.
#
#   scripts/vmtest.sh <static-binary> [args...]     (also usable as go test -exec)
#
# The guest is an initramfs: busybox-static, the kernel modules vrf vxlan
# bridge veth br_netfilter (loaded at boot) plus netfilter/dummy/... ones
# (shipped, autoloaded on first use), and the HOST's own iproute2 `ip`, iputils `ping`
# and iptables (nft and legacy, with xtables extensions) with their shared
# libraries. It is built once and cached under $VMTEST_CACHE; the key covers
# the recipe (build_image, module lists) and the host package versions, so
# changing the recipe or upgrading iproute2/iptables rebuilds it. Each run appends a small cpio with
# the binary and $VMTEST_FILES to the cached one.
#
# The VM has no NIC: tests only see lo and the namespaces/links they create.
# The host's network is never touched (qemu gets no netdev at all).
#
# Environment (all optional):
#   VMTEST_FILES="dir ..."   host files/dirs copied to the SAME absolute path
#                            in the guest (e.g. the plugin bin/ dir)
#   VMTEST_ENV="K=V ..."     extra environment for the binary (no spaces in V)
#   VMTEST_CWD=dir           the binary's working directory in the guest (default
#                            /tmp); e.g. the package dir, shipped in VMTEST_FILES
#   VMTEST_CACHE             image cache (default /var/cache/vxvrf-vmtest)
#   VMTEST_REFRESH=1         re-download the kernel and rebuild the image
#   VMTEST_TIMEOUT=900       seconds before the VM is killed (exit 124)
#   VMTEST_BOOT_TIMEOUT=180  seconds without any console output before a hung boot is retried (once)
#   VMTEST_ACCEL=auto|kvm|tcg  auto: KVM when it boots the guest (probed once), else TCG
#   VMTEST_TSC_KHZ=N         guest TSC rate under TCG (default from the host; 0 = unknown)
#   VMTEST_MEM=1024 VMTEST_SMP=2
#   VMTEST_VERBOSE=1         kernel log, qemu command line, guest timestamps
#
# In the guest: cwd /tmp, HOME=/root, VMTEST=1, VXVRF_REQUIRE_VRF=1 (VRF tests
# fail instead of skipping), PATH=/usr/local/sbin:... (real ip/ping/iptables
# first, then busybox).
#
# Exit status: the binary's; 124 timeout; 125 the VM died without reporting
# (panic, init died); 126 usage or setup error.
set -euo pipefail

CACHE=${VMTEST_CACHE:-/var/cache/vxvrf-vmtest}
KPKG=linux-image-amd64
# br_netfilter is loaded at boot as on a Kubernetes node (and as built into
# the development kernel): sysctl-firewall's anti-spoofing on a bridge needs
# net.bridge.bridge-nf-call-iptables. nft_meta_bridge: the meta expression
# of the bridge family (sysctl-firewall's nftables backend filters bridged
# frames in a bridge table; a node loads it on demand, the guest cannot).
BOOT_MODULES="vrf vxlan bridge veth br_netfilter"
EXTRA_MODULES="dummy macvlan 8021q xfrm_user
 nf_tables nft_compat nft_ct nft_nat nft_masq nft_chain_nat nft_fib_inet nft_fib_ipv4 nft_fib_ipv6
 nft_reject_inet nft_limit nf_conntrack_netlink nfnetlink nft_meta_bridge
 ip_tables ip6_tables iptable_filter iptable_nat iptable_mangle iptable_raw
 ip6table_filter ip6table_nat ip6table_mangle ip6table_raw
 xt_comment xt_conntrack xt_MASQUERADE xt_nat xt_mark xt_connmark xt_CT xt_tcpudp xt_multiport
 xt_addrtype xt_physdev xt_state xt_LOG xt_limit xt_REDIRECT ipt_REJECT ip6t_REJECT"
HOST_PKGS="qemu-system-x86 cpio kmod xz-utils iproute2 iptables iputils-ping"
TIMEOUT=${VMTEST_TIMEOUT:-900}
BOOT_TIMEOUT=${VMTEST_BOOT_TIMEOUT:-180}
VERBOSE=${VMTEST_VERBOSE:-0}
t0=${EPOCHREALTIME/./}

log() { echo "vmtest: $*" >&2; }
vlog() { [[ $VERBOSE != 1 ]] || log "$@"; }
die() { log "error: $*"; exit 126; }
since() { local d=$((${EPOCHREALTIME/./} - $1)); printf '%d.%02ds' $((d / 1000000)) $((d % 1000000 / 10000)); }

[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 126; }
BIN=$1
shift
[[ -f $BIN && -x $BIN ]] || die "not an executable file: $BIN"
if LC_ALL=C readelf -lW "$BIN" 2>/dev/null | grep -qi 'program interpreter'; then
	log "warning: $BIN is dynamically linked; build it with CGO_ENABLED=0"
fi

# ------------------------------------------------------------- host packages
export PATH=$PATH:/usr/sbin:/sbin
ensure_host() {
	local missing=() p
	for p in $HOST_PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ $EUID == 0 ]] || die "missing host packages: ${missing[*]} (apt-get install ${missing[*]})"
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local aptlog
	aptlog=$(mktemp)
	if ! { apt-get install -y -q --no-install-recommends "${missing[@]}" ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }; } >"$aptlog" 2>&1; then
		tail -20 "$aptlog" >&2
		rm -f "$aptlog"
		die "apt-get install ${missing[*]} failed"
	fi
	rm -f "$aptlog"
}

# apt-get download with one apt-get update retry (stale lists on a fresh box).
fetch() {
	apt-get download -qq -o APT::Sandbox::User=root "$1" >/dev/null 2>&1 && return 0
	apt-get update -qq >&2 || true
	apt-get download -qq -o APT::Sandbox::User=root "$1" >&2 || die "apt-get download $1 failed"
}

# ------------------------------------------------------------- image build
# Copy host executables and every shared library they need (ldd) into $1,
# libraries at their host path so the dynamic loader finds them.
ship_libs() { # root file...
	local root=$1 f lib
	shift
	for f in "$@"; do
		while read -r lib; do
			[[ -n $lib && ! -e $root$lib ]] || continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done < <(ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p')
	done
}

build_image() { # $1 = final image dir
	local out=$1 w kdeb dep kv m line path params rel
	w=$(mktemp -d "$CACHE/.build.XXXXXX")
	trap 'rm -rf "$w"' EXIT
	cd "$w"
	log "building the VM image (first run or recipe changed)"

	fetch "$KPKG"
	kdeb=$(ls ./*.deb)
	if ! dpkg-deb -c "$kdeb" | grep -q '/boot/vmlinuz-'; then # metapackage
		dep=$(dpkg-deb -f "$kdeb" Depends | tr ',|' '\n\n' | sed 's/^ *//;s/ .*//' | grep -m1 '^linux-image-') ||
			die "$KPKG depends on no linux-image-* package"
		rm -f "$kdeb"
		fetch "$dep"
		kdeb=$(ls ./*.deb)
	fi
	mkdir k r img
	dpkg -x "$kdeb" k
	echo "$(dpkg-deb -f "$kdeb" Package) $(dpkg-deb -f "$kdeb" Version)" >img/kernel
	rm -f "$kdeb"
	kv=$(ls k/lib/modules)
	[[ -f k/boot/vmlinuz-$kv ]] || die "unexpected layout of the kernel package"
	echo "$kv" >img/release
	fetch busybox-static
	dpkg -x ./busybox-static_*.deb bb

	# Boot the ELF vmlinux through its PVH entry: skips the bzImage's own
	# decompression, ~2.5 s per boot under TCG. Keep the bzImage as fallback.
	cp "k/boot/vmlinuz-$kv" img/bzImage
	local off
	off=$(LC_ALL=C grep -obUaP -m1 '\xfd7zXZ\x00' img/bzImage | head -1 | cut -d: -f1) || true
	if [[ -n $off ]]; then
		tail -c +$((off + 1)) img/bzImage | xz -dc >img/vmlinux 2>/dev/null || true
		[[ $(head -c4 img/vmlinux | od -An -c | tr -d ' ') == 177ELF ]] || rm -f img/vmlinux
	fi

	# Modules in dependency order (modprobe --show-depends against the
	# unpacked tree, after depmod since dpkg -x runs no postinst).
	depmod -b k "$kv"
	printf 'options dummy numdummies=0\n' >modprobe.conf
	mkdir -p "r/lib/modules/$kv" r/etc/modprobe.d r/etc/vmtest
	local -A seen=()
	: >r/etc/vmtest/modules
	for m in $BOOT_MODULES $EXTRA_MODULES; do
		local boot=0
		[[ " $BOOT_MODULES " == *" $m "* ]] && boot=1
		if ! line=$(modprobe -C modprobe.conf -d k -S "$kv" --show-depends "$m" 2>&1); then
			log "warning: no module $m in $kv"
			continue
		fi
		while read -r _ path params; do
			[[ $path == /* ]] || continue # "builtin xyz"
			rel=${path#"$PWD/k/lib/modules/$kv/"}
			if [[ -z ${seen[$rel]:-} ]]; then
				seen[$rel]=1
				mkdir -p "r/lib/modules/$kv/$(dirname "$rel")"
				case $rel in
				*.xz) xz -dc "$path" >"r/lib/modules/$kv/${rel%.xz}" ;;
				*.zst) zstd -qdc "$path" >"r/lib/modules/$kv/${rel%.zst}" ;;
				*) cp "$path" "r/lib/modules/$kv/$rel" ;;
				esac
			fi
			rel=${rel%.xz}
			rel=${rel%.zst}
			if [[ $boot == 1 && -z ${seen[boot:$rel]:-} ]]; then
				seen[boot:$rel]=1
				echo "/lib/modules/$kv/$rel $params" >>r/etc/vmtest/modules
			fi
		done < <(grep -E '^(insmod|builtin) ' <<<"$line")
	done
	cp k/lib/modules/"$kv"/modules.{order,builtin,builtin.modinfo} "r/lib/modules/$kv/" 2>/dev/null || true
	depmod -b r "$kv"
	cp modprobe.conf r/etc/modprobe.d/vmtest.conf

	# busybox for everything else.
	mkdir -p r/{bin,sbin,usr/bin,usr/sbin,usr/local/sbin,proc,sys,dev,run,tmp,root,var,etc}
	chmod 1777 r/tmp
	ln -s ../run r/var/run
	cp bb/bin/busybox r/bin/busybox
	for m in $(r/bin/busybox --list-full); do
		[[ -e r/$m ]] || ln -s /bin/busybox "r/$m"
	done

	# The host's real tools: iproute2 (netns, vrf, vxlan), ping, iptables.
	local tools=(/usr/sbin/ip /usr/bin/ping /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi)
	cp -L "${tools[@]}" r/usr/local/sbin/
	for m in iptables ip6tables iptables-save ip6tables-save iptables-restore ip6tables-restore; do
		ln -s xtables-nft-multi "r/usr/local/sbin/$m"
		ln -s xtables-nft-multi "r/usr/local/sbin/${m/tables/tables-nft}"
		ln -s xtables-legacy-multi "r/usr/local/sbin/${m/tables/tables-legacy}"
	done
	local xt=/usr/lib/x86_64-linux-gnu/xtables
	mkdir -p "r$xt"
	cp -a "$xt/." "r$xt/"
	ship_libs r "${tools[@]}" "$xt"/*.so
	[[ -d /etc/iproute2 ]] && cp -a /etc/iproute2 r/etc/
	for m in protocols services ethertypes; do [[ -f /etc/$m ]] && cp "/etc/$m" r/etc/; done
	echo 'root:x:0:0:root:/root:/bin/sh' >r/etc/passwd
	echo 'root:x:0:' >r/etc/group
	printf '127.0.0.1 localhost\n::1 localhost\n' >r/etc/hosts

	cat >r/init <<'EOF'
#!/bin/sh
# vxvrf vmtest guest init: mount, load modules, run /vmtest/run, report, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp VMTEST=1 VXVRF_REQUIRE_VRF=1
up() { read -r u _ </proc/uptime; echo "${u}s"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
grep -q vmtest.verbose=1 /proc/cmdline && v=1 || v=
[ -n "$v" ] && echo "vmtest-guest: init at $(up)"
echo /sbin/modprobe >/proc/sys/kernel/modprobe
while read -r ko params; do
	m=$(basename "$ko" .ko | tr - _)
	insmod "$ko" $params 2>/dev/null || [ -e "/sys/module/$m" ] ||
		case $m in crc32c_intel|*_x86_64) ;; *) echo "vmtest-guest: insmod $ko failed" ;; esac
done </etc/vmtest/modules
ip link set lo up
hostname vmtest
[ -n "$v" ] && echo "vmtest-guest: modules loaded at $(up)"
rc=0
if [ -f /vmtest/cmd ]; then
	. /vmtest/cmd
	cd "${VMTEST_CWD:-/tmp}" || echo "vmtest-guest: no directory $VMTEST_CWD"
	"$VMTEST_BIN" "$@"
	rc=$?
fi
[ -n "$v" ] && echo "vmtest-guest: exit $rc at $(up)"
echo
echo "VMTEST_EXIT_CODE_${VMTEST_NONCE:-0}=$rc"
exec 0<&- 1>&- 2>&-
poweroff -f
EOF
	chmod 755 r/init
	(cd r && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >img/base.cpio
	echo "$KEY" >img/key
	rm -rf "$out"
	mv img "$out"
	cd /
	rm -rf "$w"
	trap - EXIT
	log "image ready: $out ($(cat "$out/kernel"), initramfs $(du -h "$out/base.cpio" | cut -f1))"
}

# ------------------------------------------------------------- qemu
# Under TCG the guest measures its TSC against the emulated PIT, which fails
# on a busy host; microvm has no HPET to fall back on and the boot hangs. So
# pass the host's TSC rate (the guest TSC runs at it under TCG); when it is
# unknown use q35, which has an HPET.
tsc_khz() {
	case ${VMTEST_TSC_KHZ:-} in 0) return 1 ;; '') ;; *) echo "$VMTEST_TSC_KHZ"; return ;; esac
	grep -qw constant_tsc /proc/cpuinfo || return 1
	local mhz
	mhz=$(dmesg 2>/dev/null | sed -n 's/.*Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p;s/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -1) || true
	if [[ -z $mhz ]] && grep -qwE 'hypervisor|tsc_known_freq' /proc/cpuinfo; then
		mhz=$(awk -F: '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
	fi
	[[ -n $mhz ]] && awk -v m="$mhz" 'BEGIN { k = int(m * 1000); if (k < 100000) exit 1; print k }'
}

qemu_cmd() { # accel initrd
	local accel=$1 machine=microvm,rtc=on cpu=max kernel=$IMG/bzImage extra="" khz ll=1
	[[ -f $IMG/vmlinux ]] && kernel=$IMG/vmlinux
	[[ $VERBOSE == 1 ]] && ll="7 vmtest.verbose=1"
	if [[ $accel == kvm ]]; then
		cpu=host
	elif khz=$(tsc_khz); then
		extra="tsc_early_khz=$khz tsc=reliable"
	else
		machine=q35
	fi
	QEMU=(qemu-system-x86_64 -M "$machine" -accel "$accel" -cpu "$cpu" -m "${VMTEST_MEM:-1024}"
		-smp "${VMTEST_SMP:-2}" -nographic -nodefaults -no-user-config -serial stdio -no-reboot)
	[[ $machine == q35 ]] && QEMU+=(-fw_cfg name=etc/sercon-port,string=0)
	QEMU+=(-kernel "$kernel" -initrd "$2" -append "console=ttyS0 panic=-1 oops=panic reboot=t random.trust_cpu=on mitigations=off cryptomgr.notests edd=off $extra loglevel=$ll")
}

# KVM that opens but cannot boot a stock kernel exists (kvm_pvm here): probe
# once per host kernel and remember.
pick_accel() {
	case ${VMTEST_ACCEL:-auto} in kvm | tcg) echo "$VMTEST_ACCEL"; return ;; esac
	local stamp=$CACHE/accel.$(uname -r) a=tcg
	[[ -s $stamp ]] && { cat "$stamp"; return; }
	if [[ -r /dev/kvm && -w /dev/kvm ]] && [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
		qemu_cmd kvm "$IMG/base.cpio"
		timeout -k 2 30 "${QEMU[@]}" </dev/null 2>/dev/null | tr -d '\r' | grep -q '^VMTEST_EXIT_CODE_0=0$' && a=kvm
		log "KVM probe: using $a"
	fi
	echo "$a" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
	echo "$a"
}

# ------------------------------------------------------------- main
ensure_host
mkdir -p "$CACHE" || die "cannot create $CACHE (set VMTEST_CACHE)"
# The image key: the recipe (the build functions, comments excluded, and the
# module lists) and the versions of the host tools copied into the image.
KEY=$( {
	declare -f build_image ship_libs
	echo "$KPKG $BOOT_MODULES $EXTRA_MODULES"
	dpkg-query -W iproute2 iptables iputils-ping libxtables12 busybox-static 2>/dev/null || true
} | sha256sum | cut -c1-16)
IMG=$CACHE/img-$KEY
if [[ ! -f $IMG/base.cpio || ${VMTEST_REFRESH:-0} == 1 ]]; then
	exec 9>"$CACHE/.lock"
	flock 9
	if [[ ! -f $IMG/base.cpio || ${VMTEST_REFRESH:-0} == 1 ]]; then
		tb=${EPOCHREALTIME/./}
		# In a background subshell so that errexit stays on inside it.
		(build_image "$IMG") &
		wait $! || die "image build failed"
		for old in "$CACHE"/img-*; do [[ $old == "$IMG" ]] || rm -rf "$old"; done
		rm -f "$CACHE"/accel.*
		log "image built in $(since "$tb")"
	fi
	exec 9>&-
fi
accel=$(pick_accel)

RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")
qpid=
cleanup() {
	[[ -z $qpid ]] || { kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; }
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM HUP

# Per-run archive: the binary, VMTEST_FILES at their absolute paths, the command.
bname=$(basename "$BIN")
[[ $bname =~ ^[A-Za-z0-9._+-]+$ ]] || bname=test
mkdir -p "$RUN/root/vmtest"
cp "$BIN" "$RUN/root/vmtest/$bname"
for f in ${VMTEST_FILES:-}; do
	f=$(realpath -e "$f") || die "VMTEST_FILES: no such file: $f"
	case $f in /proc* | /sys* | /dev* | /run* | /vmtest* | /) die "VMTEST_FILES: $f would be hidden in the guest" ;; esac
	mkdir -p "$RUN/root$(dirname "$f")"
	cp -a "$f" "$RUN/root$f"
done
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
nonce=$RANDOM$RANDOM$RANDOM
{
	echo "VMTEST_NONCE=$nonce VMTEST_BIN=/vmtest/$bname VMTEST_CWD=$(q "${VMTEST_CWD:-/tmp}")"
	printf 'set --'
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
	for kv in ${VMTEST_ENV:-}; do
		[[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "bad VMTEST_ENV entry: $kv"
		echo "export ${kv%%=*}=$(q "${kv#*=}")"
	done
} >"$RUN/root/vmtest/cmd"
(cd "$RUN/root" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) | cat "$IMG/base.cpio" - >"$RUN/initrd"
rm -rf "$RUN/root"

qemu_cmd "$accel" "$RUN/initrd"
vlog "${QEMU[*]}"
# Console -> CRs stripped -> log file, and live to stdout without the exit
# marker (nor the blank line before it) and the kernel's "reboot: Power down".
# The guest's first line (the test binary's "=== RUN", or init's) comes
# within seconds of a boot; a TCG guest that has printed nothing after
# BOOT_TIMEOUT hung while booting (seen now and then here): it is killed and
# started once more.
run_vm() {
	rm -f "$RUN/console" "$RUN/console.log"
	mkfifo "$RUN/console"
	awk -v logf="$RUN/console.log" -v marker="VMTEST_EXIT_CODE_${nonce}=" -v verbose="$VERBOSE" '
	{ sub(/\r$/, ""); print > logf; fflush(logf) }
	$0 == "" { blanks++; next }
	index($0, marker) == 1 { blanks = 0; next }
	verbose != 1 && /^\[ *[0-9.]+\] reboot: (Power down|Restarting system)$/ { next }
	{ for (; blanks > 0; blanks--) print ""; print; fflush() }
	END { for (; blanks > 0; blanks--) print "" }' <"$RUN/console" &
	apid=$!
	timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$RUN/console" 2>"$RUN/qemu.err" &
	qpid=$!
	local waited=0
	while kill -0 "$qpid" 2>/dev/null && [[ ! -s $RUN/console.log ]]; do
		if ((waited >= BOOT_TIMEOUT)); then
			kill "$qpid" 2>/dev/null
			wait "$qpid" 2>/dev/null
			qpid=
			wait "$apid" 2>/dev/null
			return 2
		fi
		sleep 1
		waited=$((waited + 1))
	done
	qst=0
	wait "$qpid" || qst=$?
	qpid=
	wait "$apid" || true
}
tv=${EPOCHREALTIME/./}
for attempt in 1 2; do
	if run_vm; then
		break
	fi
	log "no console output from the VM after ${BOOT_TIMEOUT}s: it hung while booting (attempt $attempt)"
	qst=124
done
grep -v 'externally provided fw_cfg' "$RUN/qemu.err" >&2 || true

rc=$(sed -n "s/^VMTEST_EXIT_CODE_${nonce}=\([0-9]*\)$/\1/p" "$RUN/console.log" | tail -1)
if [[ -z $rc ]]; then
	if [[ $qst == 124 || $qst == 137 ]]; then
		log "timed out after ${TIMEOUT}s (VMTEST_TIMEOUT)"
		rc=124
	else
		log "the VM stopped without an exit code (qemu status $qst); rerun with VMTEST_VERBOSE=1"
		rc=125
	fi
fi
log "$(cat "$IMG/release") accel=$accel vm=$(since "$tv") total=$(since "$t0") exit=$rc"
exit "$rc"
