package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestTraffic proves the rules with real packets. The underlay has no
// route back to the pod subnet, so the external address answers the pod
// only when the node masquerades; a spoofed source reaches the gateway
// only without anti-spoofing.
func TestTraffic(t *testing.T) {
	forBackends(t, testTraffic)
}

func testTraffic(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-pkt", be))
	p := n.addPod(t, "p", "sfh-pkt", "10.66.0.7/24")
	const spoofed = "10.66.0.99"
	if _, err := p.In("ip", "addr", "add", spoofed+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	ext := netsim.UnderlayGateway

	// Without the plugin: spoofing works, egress does not.
	if !p.ping(t, gateway, spoofed) {
		t.Fatal("spoofed ping to the gateway fails before ADD: the test could not show anything")
	}
	if p.ping(t, ext, "") {
		t.Fatal("pod reaches the underlay without masquerade: the underlay must not route the pod subnet")
	}

	// bridge-nf-call-iptables off in the node (so ADD must turn it on for
	// iptables anti-spoofing to work; nftables filters in its bridge table
	// and must leave it off) and in the pod (to show the setting is per
	// netns: the node's write must not reach it, nor the machine).
	const bnf = "net.bridge.bridge-nf-call-iptables"
	n.sh(t, "sysctl", "-qw", bnf+"=0")
	if _, err := p.In("sysctl", "-qw", bnf+"=0"); err != nil {
		t.Fatal(err)
	}
	machine := hostBridgeNF()

	cid := "sf-pkt"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", with(be, map[string]any{"masquerade": true, "antiSpoofing": true, "uplink": "eth0"}), p.prevResult(t))
	n.stage().Add(t, cid, p.NS, conf).OK(t)
	wantBNF := map[string]string{BackendIPTables: "1", BackendNftables: "0"}[be]
	if got := strings.TrimSpace(n.sh(t, "sysctl", "-n", bnf)); got != wantBNF {
		t.Fatalf("node %s = %s after ADD, want %s", bnf, got, wantBNF)
	}
	if got := p.read(t, "/proc/sys/net/bridge/bridge-nf-call-iptables"); got != "0" {
		t.Fatalf("pod %s = %s: not per netns", bnf, got)
	}
	if got := hostBridgeNF(); got != machine {
		t.Fatalf("machine's %s changed: %s → %s", bnf, machine, got)
	}

	if !p.ping(t, gateway, "") {
		t.Fatal("pod cannot ping its gateway with its own address")
	}
	counter := func(table, match string) int {
		if be != BackendIPTables {
			return 0
		}
		return n.counter(t, table, chain, match)
	}
	drops := counter("raw", "DROP")
	if p.ping(t, gateway, spoofed) {
		t.Fatal("spoofed ping to the gateway still works with antiSpoofing")
	}
	if got := counter("raw", "DROP"); be == BackendIPTables && got <= drops {
		t.Fatalf("raw DROP counter did not move (%d → %d)", drops, got)
	}
	masq := counter("nat", "MASQUERADE")
	if !p.ping(t, ext, "") {
		t.Fatal("pod cannot reach the external address with masquerade")
	}
	if got := counter("nat", "MASQUERADE"); be == BackendIPTables && got <= masq {
		t.Fatalf("MASQUERADE counter did not move (%d → %d)", masq, got)
	}

	// DEL as after a failed ADD on a deleted sandbox: no prevResult, no netns.
	n.stage().Del(t, cid, nil, config(t, "1.1.0", with(be, map[string]any{"masquerade": true, "antiSpoofing": true}), nil)).OK(t)
	if s := n.attState(t, be, testNet, cid); s != "" {
		t.Fatalf("DEL without prevResult/netns left state:\n%s", s)
	}
	if !p.ping(t, gateway, spoofed) {
		t.Fatal("spoofed ping still dropped after DEL")
	}
	if p.ping(t, ext, "") {
		t.Fatal("pod still reaches the external address after DEL: masquerade left")
	}
}

func TestGC(t *testing.T) {
	forBackends(t, testGC)
}

func testGC(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-gc", be))
	pa := n.addPod(t, "pa", "sfh-gca", "10.66.0.11/24")
	pb := n.addPod(t, "pb", "sfh-gcb", "10.66.0.12/24")
	pc := n.addPod(t, "pc", "sfh-gcc", "10.66.0.13/24")
	extra := with(be, map[string]any{"masquerade": true, "antiSpoofing": true})
	n.stage().Add(t, "sf-gc-a", pa.NS, config(t, "1.1.0", extra, pa.prevResult(t))).OK(t)
	n.stage().Add(t, "sf-gc-b", pb.NS, config(t, "1.1.0", extra, pb.prevResult(t))).OK(t)
	// Another network's attachment on the same node must survive GC of ours.
	otherConf := testutil.Conf("1.1.0", "sfother", plugin).With("backend", be).With("masquerade", true).Prev(pc.prevResult(t)).Bytes()
	n.stage().Add(t, "sf-gc-b", pc.NS, otherConf).OK(t)

	gc := func(valid any) {
		// GC reads only the name: no backend key needed.
		c := testutil.Conf("1.1.0", testNet, plugin)
		if valid != nil {
			c = c.With("cni.dev/valid-attachments", valid)
		}
		n.stage().GC(t, c.Bytes()).OK(t)
	}
	has := func(network, cid string) bool { return n.attState(t, be, network, cid) != "" }

	gc(nil) // no key: nothing released
	if !has(testNet, "sf-gc-a") || !has(testNet, "sf-gc-b") {
		t.Fatal("GC without valid-attachments released something")
	}
	gc([]map[string]string{{"containerID": "sf-gc-a", "ifname": "eth0"}})
	if !has(testNet, "sf-gc-a") || has(testNet, "sf-gc-b") {
		t.Fatalf("GC keeping a: a=%v b=%v", has(testNet, "sf-gc-a"), has(testNet, "sf-gc-b"))
	}
	gc([]map[string]string{})
	if has(testNet, "sf-gc-a") || has(testNet, "sf-gc-b") {
		t.Fatal("GC with an empty list left state")
	}
	if !has("sfother", "sf-gc-b") {
		t.Fatal("GC removed another network's attachment")
	}
	if be == BackendNftables {
		d := dumpNft(t, n)
		if strings.Contains(d, naming.NftMasqPrefix(testNet)) || !strings.Contains(d, naming.NftMasqPrefix("sfother")) {
			t.Fatalf("GC with an empty list: the network's masquerade chain must go, the other's stay:\n%s", d)
		}
	}
}

func TestStatus(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-st")
	for _, be := range append([]string{BackendAuto}, backends...) {
		conf := config(t, "1.1.0", with(be, nil), nil)
		n.stage().Status(t, conf).OK(t)
		// Without CAP_NET_ADMIN neither iptables nor nf_tables answers.
		if o := n.stage().Exec(t, testutil.Invocation{Command: "STATUS", Config: conf, User: 65534}); o.Err == nil || !strings.Contains(string(o.Stdout), `"code": 50`) {
			t.Fatalf("%s: STATUS without CAP_NET_ADMIN: %v %s %s", be, o.Err, o.Stdout, o.Stderr)
		}
	}
	// The iptables backend needs the iptables binary; nftables does not.
	empty := t.TempDir()
	o := n.stage("PATH="+empty).Status(t, config(t, "1.1.0", with(BackendIPTables, nil), nil))
	if e := o.CNIError(t); e.Code != 50 {
		t.Fatalf("STATUS without iptables: %+v", e)
	}
	n.stage("PATH="+empty).Status(t, config(t, "1.1.0", with(BackendNftables, nil), nil)).OK(t)

	// Every change goes through iptables-restore: no restore next to
	// iptables, or an iptables older than 1.6.2 (its restore has no
	// --wait), is a backend that cannot work.
	realIPT, err := findBin("iptables")
	if err != nil {
		t.Skip(err)
	}
	for name, files := range map[string]map[string]string{
		"no restore": {"iptables": "#!/bin/sh\nexec " + realIPT + " \"$@\"\n"},
		"1.6.1": {
			"iptables":         "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'iptables v1.6.1'; exit 0; }\nexec " + realIPT + " \"$@\"\n",
			"iptables-restore": "#!/bin/sh\nexit 2\n",
		},
	} {
		dir := t.TempDir()
		for f, body := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		o := n.stage("PATH="+dir+":"+os.Getenv("PATH")).Status(t, config(t, "1.1.0", with(BackendIPTables, nil), nil))
		if e := o.CNIError(t); e.Code != 50 || !strings.Contains(e.Msg, "restore") {
			t.Fatalf("STATUS with %s: %+v", name, e)
		}
	}
}

// TestAutoBackend: auto picks nftables on a node where nothing else
// filters forwarded traffic, and iptables where the iptables FORWARD
// chain has policy DROP or rules of others. The DROP case shows why:
// there an nftables accept does not get the pod out, the iptables one does.
func TestAutoBackend(t *testing.T) {
	testutil.RequireRoot(t)
	ext := netsim.UnderlayGateway
	for _, tc := range []struct {
		name  string
		setup []string // iptables command in the node
		want  string
	}{
		{"clean node", nil, BackendNftables},
		{"FORWARD policy DROP", []string{"-P", "FORWARD", "DROP"}, BackendIPTables},
		{"FORWARD rules of others", []string{"-A", "FORWARD", "-i", "nosuch0", "-j", "DROP"}, BackendIPTables},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, "sf-auto")
			p := n.addPod(t, "p", "sfh-auto", "10.66.0.60/24")
			if tc.setup != nil {
				n.sh(t, "iptables", tc.setup...)
			}
			extra := map[string]any{"backend": BackendAuto, "masquerade": true, "uplink": "eth0"}
			conf := config(t, "1.1.0", extra, p.prevResult(t))
			n.stage().Add(t, "sf-auto", p.NS, conf).OK(t)
			for _, be := range backends {
				if has := n.attState(t, be, testNet, "sf-auto") != ""; has != (be == tc.want) {
					t.Fatalf("auto: state in %s = %v, want the attachment in %s only", be, has, tc.want)
				}
			}
			if !p.ping(t, ext, "") {
				t.Fatalf("auto (%s): pod cannot reach the external address", tc.want)
			}
			n.stage().Check(t, "sf-auto", p.NS, conf).OK(t)
			if tc.want == BackendNftables {
				// The node's iptables changes after ADD: auto would now
				// pick iptables, but CHECK looks where the attachment is.
				n.sh(t, "iptables", "-A", "FORWARD", "-i", "nosuch1", "-j", "DROP")
				n.stage().Check(t, "sf-auto", p.NS, conf).OK(t)
				n.sh(t, "iptables", "-D", "FORWARD", "-i", "nosuch1", "-j", "DROP")
			}
			n.stage().Del(t, "sf-auto", p.NS, conf).OK(t)
			for _, be := range backends {
				if s := n.attState(t, be, testNet, "sf-auto"); s != "" {
					t.Fatalf("DEL left in %s:\n%s", be, s)
				}
			}
			if tc.name == "FORWARD policy DROP" {
				// Forcing nftables here: the accept is ineffective.
				forced := config(t, "1.1.0", with(BackendNftables, map[string]any{"masquerade": true, "uplink": "eth0"}), p.prevResult(t))
				n.stage().Add(t, "sf-auto", p.NS, forced).OK(t)
				if p.ping(t, ext, "") {
					t.Fatal("nftables accept got through iptables' FORWARD DROP: auto's rule would be pointless")
				}
				n.stage().Del(t, "sf-auto", p.NS, forced).OK(t)
			}
		})
	}
}

// TestConcurrentAdd: 20 parallel ADDs on a fresh node all succeed and
// create the project chains and their jumps exactly once; 20 parallel DELs
// leave no attachment behind.
func TestConcurrentAdd(t *testing.T) {
	forBackends(t, testConcurrentAdd)
}

func testConcurrentAdd(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-par", be))
	const count = 20
	pods := make([]*pod, count)
	for i := range pods {
		pods[i] = n.addPod(t, fmt.Sprintf("p%d", i), fmt.Sprintf("sfh-par%d", i), fmt.Sprintf("10.66.0.%d/24", 100+i))
	}
	testutil.PluginDir(t, plugin)
	extra := with(be, map[string]any{"masquerade": true, "antiSpoofing": true})
	parallel := func(cmd string) {
		var wg sync.WaitGroup
		errs := make([]string, count)
		for i, p := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := n.stage().Run(t, cmd, fmt.Sprintf("sf-par-%d", i), p.NS, config(t, "1.1.0", extra, p.prevResult(t)))
				if o.Err != nil {
					errs[i] = fmt.Sprintf("%s %d: %v %s", cmd, i, o.Err, o.Stdout)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Error(e)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	parallel("ADD")
	if be == BackendNftables {
		// Every attachment's elements are there, the node-wide rules once.
		dump := dumpNft(t, n)
		for i := range pods {
			if s := n.attState(t, be, testNet, fmt.Sprintf("sf-par-%d", i)); strings.Count(s, "\n")+1 != 5 {
				t.Fatalf("attachment %d has %q, want 5 elements (fwd, masq, guard, allow, index)", i, s)
			}
		}
		for chain, rules := range baseRuleCount() {
			fam, name, _ := strings.Cut(chain, "/")
			code := map[string]string{"inet": "1", "bridge": "7"}[fam]
			if want := fmt.Sprintf("chain %s vxvrf %s: %d rules", code, name, rules); !strings.Contains(dump, want) {
				t.Fatalf("after concurrent first ADDs: no %q:\n%s", want, dump)
			}
		}
		parallel("DEL")
		if d := dumpNft(t, n); strings.Contains(d, "element") {
			t.Fatalf("parallel DEL left elements:\n%s", d)
		}
		return
	}
	s := n.save(t)
	for _, jump := range []string{"-A FORWARD -j VXVRF-FORWARD", "-A POSTROUTING -j VXVRF-POSTROUTING", "-A PREROUTING -j VXVRF-PREROUTING"} {
		if c := strings.Count(s, jump); c != 1 {
			t.Fatalf("%q appears %d times:\n%s", jump, c, s)
		}
	}
	if c := strings.Count(s, "-A VXVRF-FORWARD -m comment"); c != count {
		t.Fatalf("%d attachment jumps in VXVRF-FORWARD, want %d", c, count)
	}
	parallel("DEL")
	if s := n.save(t); strings.Contains(s, `--comment "vxvrf:`) {
		t.Fatalf("parallel DEL left attachments:\n%s", s)
	}
}

// countExecs puts wrappers for iptables, ip6tables and their -restore on
// PATH (env) that log each exec; execs returns the logged lines since its
// last call. The wrappers are scripts, so the plugin takes the restore
// next to them (findRestore), which runs the real one.
func countExecs(t *testing.T) (env string, execs func() []string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	for _, bin := range []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore"} {
		binPath, err := findBin(bin)
		if err != nil {
			t.Skip(err)
		}
		script := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >> %s\nexec %s \"$@\"\n", bin, log, binPath)
		if err := os.WriteFile(filepath.Join(dir, bin), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return "PATH=" + dir + ":" + os.Getenv("PATH"), func() []string {
		b, _ := os.ReadFile(log)
		_ = os.Remove(log)
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")[:strings.Count(string(b), "\n")]
	}
}

// TestExecCount counts iptables execs (iptables, ip6tables and their
// -restore) per ADD and DEL through wrappers on PATH (the numbers are in
// the README).
func TestExecCount(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-cnt")
	p := n.addPod(t, "p", "sfh-cnt", "10.66.0.20/24")
	env, execs := countExecs(t)
	var lines string
	count := func() int {
		l := execs()
		lines += strings.Join(l, "\n") + "\n"
		return len(l)
	}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		add   int // upper bounds, warm project chains
		del   int // DEL with prevResult (IPv4 only)
		bare  int // DEL without prevResult (both families)
	}{
		{"filter only", nil, 1, 1, 6},
		{"masquerade+antiSpoofing", map[string]any{"masquerade": true, "antiSpoofing": true}, 1, 1, 6},
		// The network's zone rules are checked in the same restore.
		{"masquerade+antiSpoofing+conntrackZone", map[string]any{"masquerade": true, "antiSpoofing": true, "conntrackZone": 5}, 1, 1, 6},
	} {
		conf := config(t, "1.1.0", tc.extra, p.prevResult(t))
		// Warm up the project-wide chains, as on a node with pods.
		n.stage().Add(t, "sf-cnt-warm", p.NS, conf).OK(t)
		n.stage().Del(t, "sf-cnt-warm", p.NS, conf).OK(t)
		count()
		lines = ""
		n.stage(env).Add(t, "sf-cnt", p.NS, conf).OK(t)
		add := count()
		n.stage(env).Check(t, "sf-cnt", p.NS, conf).OK(t)
		check := count()
		n.stage(env).Del(t, "sf-cnt", p.NS, conf).OK(t)
		del := count()
		n.stage().Add(t, "sf-cnt", p.NS, conf).OK(t)
		count()
		n.stage(env).Del(t, "sf-cnt", nil, config(t, "1.1.0", tc.extra, nil)).OK(t)
		bare := count()
		if s := n.save(t) + n.sh(t, "ip6tables-save"); strings.Contains(s, "vxvrf:"+testNet+":sf-cnt:") {
			t.Fatalf("%s: DEL left rules:\n%s", tc.name, s)
		}
		t.Logf("%s: ADD %d iptables execs, CHECK %d, DEL %d, DEL without prevResult %d\n%s", tc.name, add, check, del, bare, lines)
		if add > tc.add || check > 1 || del > tc.del || bare > tc.bare {
			t.Fatalf("%s: ADD %d (max %d), CHECK %d (max 1), DEL %d (max %d), bare DEL %d (max %d) iptables execs",
				tc.name, add, tc.add, check, del, tc.del, bare, tc.bare)
		}
	}
}

// TestSlowPathLists: the first ADD on a fresh node (project chains, zone
// chain and rules missing) and a repeated ADD take the same one path: the
// common-case restore is refused, go-iptables lists (`--version`, `-S`
// only: it changes nothing), and one more restore converges the family.
// Before, the first ADD created the network-wide objects with go-iptables
// (-N, -I, -A execs) chosen from restore's error output.
func TestSlowPathLists(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-slow")
	p := n.addPod(t, "p", "sfh-slow", "10.66.0.21/24")
	env, execs := countExecs(t)
	conf := config(t, "1.1.0", map[string]any{"masquerade": true, "antiSpoofing": true, "conntrackZone": 6}, p.prevResult(t))
	for _, step := range []string{"first ADD", "repeated ADD"} {
		n.stage(env).Add(t, "sf-slow", p.NS, conf).OK(t)
		restores := 0
		for _, l := range execs() {
			f := strings.Fields(l)
			switch {
			case f[0] == "iptables-restore":
				restores++
			case f[0] == "iptables" && (contains(f, "--version") || contains(f, "-S")):
			default:
				t.Errorf("%s: %q changes rules outside iptables-restore", step, l)
			}
		}
		if restores != 2 {
			t.Errorf("%s: %d iptables-restore execs, want 2 (the refused batch, the converging one)", step, restores)
		}
		n.stage().Check(t, "sf-slow", p.NS, conf).OK(t)
	}
	if got := n.zoneLines(t, "iptables-save", naming.ZoneTag(testNet)); len(got) != 2 {
		t.Fatalf("zone rules after two ADDs: %q", got)
	}
	n.stage().Del(t, "sf-slow", p.NS, conf).OK(t)
}

func findBin(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
