package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/doctor"
	"github.com/vxvrf/cni/pkg/inspect"
	"github.com/vxvrf/cni/pkg/naming"
)

// withLog gives every stage the same log file, at level.
func withLog(file, level string) edit {
	return func(_ map[string]any, plugins []map[string]any) error {
		for _, p := range plugins {
			p["log"] = map[string]any{"file": file, "level": level}
		}
		return nil
	}
}

// verbLine returns the one info line of plugin's verb for container ("" for
// GC) in lines, failing when there is not exactly one.
func verbLine(t *testing.T, lines []string, plugin, verb, container string) string {
	t.Helper()
	head := `level=INFO msg="` + verb + ` ok" plugin=` + plugin + ` verb=` + verb + ` network=vxvrf `
	if container != "" {
		head += `container=` + regexp.QuoteMeta(container) + ` ifname=eth0 `
	}
	re := regexp.MustCompile(head + `duration=[0-9.]+[µm]?s( |$)`)
	var found []string
	for _, l := range lines {
		if re.MatchString(l) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d lines for %s %s %s, want 1:\n%s", len(found), plugin, verb, container, strings.Join(found, "\n"))
		return ""
	}
	return found[0]
}

// TestVerbLog: with "log" set, every stage writes one line per verb to the
// shared file (network, container, ifname, duration, outcome) and what it
// did (created/reused/removed objects, addresses, leases, firewall
// objects) while stdout still carries only the result; debug adds detail
// lines; a refused ADD logs its error and code.
func TestVerbLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "log", "cni.log")
	e := newEnv(t, "vlog", nil, withLog(logFile, "info"), func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "vrf-vxlan-bridge")["vxlan"] = map[string]any{"vni": 42, "remotes": []string{"198.18.0.12"}}
		chain.Plugin(plugins, "sysctl-firewall")["backend"] = "nftables"
		return nil
	})
	p1 := e.addPod("p1")
	// The second pod through the same conflist at level debug.
	debugConf, err := chain.Edit(e.conf, withLog(logFile, "debug"))
	if err != nil {
		t.Fatal(err)
	}
	p2 := e.newPod("p2")
	e.add(e.chainFor(debugConf, []string{testutil.PluginDir(t)}), p2)
	if err := e.chain.Check(ctx(t), p1.rt); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pod{p1, p2} {
		if err := e.chain.Del(ctx(t), p.rt); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.chain.GC(ctx(t), []types.GCAttachment{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, plugin := range testutil.Plugins {
		verbLine(t, lines, plugin, "CHECK", p1.rt.ContainerID)
	}

	br, vx := naming.BridgeName("vxvrf"), "vxlan-42"
	hv := func(p *pod) string { return naming.HostVethName("vxvrf", p.rt.ContainerID, "eth0") }
	ips := func(p *pod, prefix bool) string {
		var s []string
		for _, ip := range p.ips {
			if prefix {
				s = append(s, ip.Address.String())
			} else {
				s = append(s, ip.Address.IP.String())
			}
		}
		return strings.Join(s, ",")
	}
	fw := func(p *pod) string {
		var s []string
		for _, ip := range p.ips {
			s = append(s, "forward:"+ip.Address.IP.String(), "masquerade:"+ip.Address.IP.String())
		}
		return strings.Join(append(s, "antispoofing:"+hv(p)), ",")
	}
	q := regexp.QuoteMeta
	want := []struct {
		plugin, verb string
		p            *pod // nil: GC
		fields       []string
	}{
		{"infra-ensure", "ADD", p1, []string{`uplink=eth0 `, `set=\[[^\]]*net\.ipv4\.ip_forward[],]`, `unchanged=\[`}},
		{"infra-ensure", "ADD", p2, []string{`uplink=eth0 `, `set=\[\] `, `unchanged=\[[^\]]*net\.ipv4\.ip_forward`}},
		{"infra-ensure", "DEL", p1, []string{`removed=\[\]$`}},
		{"vrf-vxlan-bridge", "ADD", p1, []string{`created=\[` + q(br+","+vx) + `\] reused=\[\] fdb_added=\[198\.18\.0\.12\]`}},
		{"vrf-vxlan-bridge", "ADD", p2, []string{`created=\[\] reused=\[` + q(br+","+vx) + `\] fdb_added=\[\]`}},
		{"vrf-vxlan-bridge", "DEL", p1, []string{`removed=\[\]$`}},
		{"vrf-vxlan-bridge", "GC", nil, []string{`removed=\[` + q(vx+","+br) + `\]$`}},
		{"lockfile-ipam", "ADD", p1, []string{`allocated=\[` + q(ips(p1, true)) + `\] `, `state=/\S+ leases=1$`}},
		{"lockfile-ipam", "ADD", p2, []string{`allocated=\[` + q(ips(p2, true)) + `\] `, `leases=2$`}},
		{"lockfile-ipam", "DEL", p1, []string{`released=\[` + q(ips(p1, false)) + `\] `, `leases=1$`}},
		{"lockfile-ipam", "DEL", p2, []string{`released=\[` + q(ips(p2, false)) + `\] `, `leases=0$`}},
		{"veth-attach", "ADD", p1, []string{`host_veth=` + q(hv(p1)) + ` bridge=` + q(br) + ` created=\[` + q(hv(p1)) + `,eth0\]`, `addresses=\[` + q(ips(p1, true)) + `\]`, `gateway_added=\[`}},
		{"veth-attach", "ADD", p2, []string{`host_veth=` + q(hv(p2)) + ` `, `addresses=\[` + q(ips(p2, true)) + `\]`}},
		{"veth-attach", "DEL", p1, []string{`host_veth=` + q(hv(p1)) + ` removed=\[eth0\]$`}},
		{"sysctl-firewall", "ADD", p1, []string{`backend=nftables `, `sysctls_set=\[pod:[^\]]*arp_notify`, `added=\[` + q(fw(p1)) + `\]$`}},
		{"sysctl-firewall", "DEL", p1, []string{`cleaned=\[nftables\]$`}},
		{"sysctl-firewall", "GC", nil, []string{`kept=0 cleaned=\[nftables\]$`}},
	}
	for _, w := range want {
		cid := ""
		if w.p != nil {
			cid = w.p.rt.ContainerID
		}
		l := verbLine(t, lines, w.plugin, w.verb, cid)
		for _, f := range w.fields {
			if l != "" && !regexp.MustCompile(f).MatchString(l) {
				t.Errorf("%s %s %s: no %s in\n%s", w.plugin, w.verb, cid, f, l)
			}
		}
	}
	if strings.Contains(string(b), "fdb_removed") || strings.Contains(verbLine(t, lines, "veth-attach", "ADD", p2.rt.ContainerID), "gateway_added") {
		t.Errorf("a change reported that did not happen:\n%s", b)
	}
	// Debug detail only where the level is debug (p2's ADD).
	var debug []string
	for _, l := range lines {
		if strings.HasPrefix(l, "time=") && strings.Contains(l, "level=DEBUG") {
			debug = append(debug, l)
		}
	}
	dbg := strings.Join(debug, "\n")
	for _, w := range []string{`msg=veth plugin=veth-attach verb=ADD network=vxvrf container=` + p2.rt.ContainerID, `msg=vxlan plugin=vrf-vxlan-bridge`, `msg=state plugin=lockfile-ipam`} {
		if !strings.Contains(dbg, w) {
			t.Errorf("no debug line %q:\n%s", w, dbg)
		}
	}
	if strings.Contains(dbg, p1.rt.ContainerID) {
		t.Errorf("debug lines at level info:\n%s", dbg)
	}

	// A refused ADD: the error line carries the message and the code.
	bad := e.stageConfig("veth-attach", func(m map[string]any) { m["hairpn"] = true })
	o := testutil.Run(t, e.node.NetNS, testutil.Invocation{Plugin: "veth-attach", Command: "ADD", ContainerID: "c2", NetNS: p1.rt.NetNS, IfName: "eth0", Config: bad})
	o.CNIError(t)
	b, _ = os.ReadFile(logFile)
	if !regexp.MustCompile(`level=ERROR msg="ADD failed" plugin=veth-attach verb=ADD network=vxvrf container=c2 ifname=eth0 duration=\S+ error="veth-attach: unknown key \\"hairpn\\" \(did you mean \\"hairpin\\"\?\)" code=7`).Match(b) {
		t.Errorf("no error line for the refused ADD:\n%s", b)
	}
	if !strings.Contains(string(o.Stderr), `msg="ADD failed"`) {
		t.Errorf("the error is not on stderr: %q", o.Stderr)
	}
}

// TestVerbLogDefault: without "log" a successful verb writes nothing to
// stderr and a failed one its error line.
func TestVerbLogDefault(t *testing.T) {
	e := newEnv(t, "vlogd", nil)
	p := e.newPod("pod")
	conf := e.stageConfig("infra-ensure", func(map[string]any) {})
	o := testutil.Run(t, e.node.NetNS, testutil.Invocation{Plugin: "infra-ensure", Command: "ADD", ContainerID: "c1", NetNS: p.rt.NetNS, IfName: "eth0", Config: conf})
	if o.Err != nil || len(o.Stderr) != 0 {
		t.Fatalf("ADD: %v, stderr %q", o.Err, o.Stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(o.Stdout, &res); err != nil {
		t.Fatalf("stdout is not only the result: %q", o.Stdout)
	}
}

// writeConflist puts the env's conflist in a conf dir of its own.
func (e *env) writeConflist(conf []byte) string {
	e.t.Helper()
	dir := filepath.Join(e.root, "net.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	f := filepath.Join(dir, "10-vxvrf.conflist")
	if err := os.WriteFile(f, conf, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) inspect(args ...string) *inspect.Report {
	e.t.Helper()
	out, stderr, code := testutil.RunTool(e.t, e.node.NetNS, append([]string{"inspect", "--json"}, args...)...)
	if code != 0 {
		e.t.Fatalf("vxvrf inspect: exit %d: %s", code, stderr)
	}
	r := &inspect.Report{}
	if err := json.Unmarshal([]byte(out), r); err != nil {
		e.t.Fatalf("vxvrf inspect --json: %v: %s", err, out)
	}
	return r
}

func orphanKinds(n *inspect.Network) map[string]string {
	out := map[string]string{}
	for _, o := range n.Orphans {
		out[o.Kind] += o.What + "\n"
	}
	return out
}

// TestInspectLeak: vxvrf inspect shows every attachment of the node with
// its veth, lease and firewall objects of the backend in use, and finds
// planted leaks: a lease whose veth is gone, a tagged veth without lease,
// firewall state of an attachment that is gone (iptables: a rule tagged
// for it; nftables: an element tagged for it).
func TestInspectLeak(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { testInspectLeak(t, backend) })
	}
}

func testInspectLeak(t *testing.T, backend string) {
	e := newEnv(t, "insp"+backend[:1], nil, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "sysctl-firewall")["backend"] = backend
		return nil
	})
	conflist := e.writeConflist(e.conf)
	p1, p2 := e.addPod("p1"), e.addPod("p2")

	r := e.inspect("--conf-dir", filepath.Dir(conflist))
	if len(r.Networks) != 1 || r.Networks[0].Name != "vxvrf" {
		t.Fatalf("networks: %+v", r.Networks)
	}
	n := r.Networks[0]
	if !n.Bridge.Present || n.Bridge.Name != naming.BridgeName("vxvrf") || len(n.Bridge.Ports) != 2 {
		t.Errorf("bridge: %+v", n.Bridge)
	}
	if len(n.Attachments) != 2 || len(n.Orphans) != 0 || len(r.Orphans) != 0 {
		t.Fatalf("attachments %+v orphans %+v, node orphans %+v", n.Attachments, n.Orphans, r.Orphans)
	}
	fwWant := map[string]string{"nftables": "nftables element inet vxvrf @fwd4 {", "iptables": "-j " + naming.Prefix + "-"}[backend]
	for i, p := range []*pod{p1, p2} {
		a := n.Attachments[i]
		if a.ContainerID != p.rt.ContainerID || a.IfName != "eth0" || !a.VethPresent || !a.Lease {
			t.Errorf("attachment %d: %+v", i, a)
		}
		if fw := strings.Join(a.Firewall, "\n"); !strings.Contains(fw, fwWant) {
			t.Errorf("attachment %s: no %s object %q among its firewall objects:\n%s", a.ContainerID, backend, fwWant, fw)
		}
		for _, ip := range p.ips {
			if !strings.Contains(strings.Join(a.PodIPs, " "), ip.Address.IP.String()) {
				t.Errorf("attachment %s lacks pod address %s: %v", a.ContainerID, ip.Address.IP, a.PodIPs)
			}
			if backend == "nftables" && !strings.Contains(strings.Join(a.Firewall, "\n"), ip.Address.IP.String()+" . ") {
				t.Errorf("attachment %s: no nftables element for %s: %v", a.ContainerID, ip.Address.IP, a.Firewall)
			}
		}
	}

	// Plant the leaks.
	veth1 := naming.HostVethName("vxvrf", p1.rt.ContainerID, "eth0")
	e.in("ip", "link", "del", veth1)
	e.in("ip", "link", "add", "vxghost", "type", "veth", "peer", "name", "vxghostp")
	e.in("ip", "link", "set", "vxghost", "alias", naming.AttachmentTag("vxvrf", "ghost", "eth0"))
	goneWant := "gone/eth0"
	switch backend {
	case "iptables":
		e.in("iptables", "-t", "filter", "-A", naming.ForwardChain, "-m", "comment", "--comment", naming.AttachmentTag("vxvrf", "gone", "eth0"), "-j", "ACCEPT")
	case "nftables":
		// The tag is a hash: inspect names the element by it.
		goneWant = naming.NftTag("vxvrf", "gone", "eth0")
		e.addNftElement("guard4", []byte("vxgone"), goneWant)
	}

	r = e.inspect("--network", "vxvrf", "--conflist", conflist)
	kinds := orphanKinds(r.Networks[0])
	if !strings.Contains(kinds["lease-without-veth"], p1.rt.ContainerID+"/eth0") {
		t.Errorf("the lease of %s without its veth is not found: %+v", p1.rt.ContainerID, r.Networks[0].Orphans)
	}
	if !strings.Contains(kinds["veth-without-lease"], "vxghost") {
		t.Errorf("the veth without lease is not found: %+v", r.Networks[0].Orphans)
	}
	if !strings.Contains(kinds["rules-without-attachment"], goneWant) {
		t.Errorf("the %s state without attachment (%s) is not found: %+v", backend, goneWant, r.Networks[0].Orphans)
	}
	if len(r.Networks[0].Orphans) != 3 {
		t.Errorf("want exactly the 3 planted orphans: %+v", r.Networks[0].Orphans)
	}
	text, _, _ := testutil.RunTool(t, e.node.NetNS, "inspect", "--conflist", conflist)
	for _, want := range []string{"network vxvrf", "lease-without-veth", "veth-without-lease", "rules-without-attachment", "fix: run CNI DEL", p2.rt.ContainerID + " eth0  veth vx"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect text lacks %q:\n%s", want, text)
		}
	}
}

// addNftElement adds an element with comment to sysctl-firewall's set
// inet vxvrf set in the node (key: an interface name, for the sets keyed
// by ifname).
func (e *env) addNftElement(set string, ifname []byte, comment string) {
	e.t.Helper()
	key := make([]byte, 16)
	copy(key, ifname)
	err := e.node.Do(func(ns.NetNS) error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		s, err := c.GetSetByName(&nftables.Table{Name: naming.NftTable, Family: nftables.TableFamilyINet}, set)
		if err != nil {
			return err
		}
		if err := c.SetAddElements(s, []nftables.SetElement{{Key: key, Comment: comment}}); err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		e.t.Fatalf("add an element to inet %s @%s: %v", naming.NftTable, set, err)
	}
}

// findings runs vxvrf validate or doctor with --json.
func findings(t *testing.T, e *env, args ...string) (doctor.Findings, int) {
	t.Helper()
	out, stderr, code := testutil.RunTool(t, e.node.NetNS, append(args, "--json")...)
	var f doctor.Findings
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("vxvrf %v: %v: %s %s", args, err, out, stderr)
	}
	return f, code
}

func errorsOf(f doctor.Findings) []doctor.Finding {
	var out []doctor.Finding
	for _, x := range f {
		if x.Severity == doctor.Error {
			out = append(out, x)
		}
	}
	return out
}

// TestValidateMatchesADD: vxvrf validate refuses a broken conflist with
// the exact message ADD gives, offline, and accepts the shipped ones.
func TestValidateMatchesADD(t *testing.T) {
	e := newEnv(t, "valid", nil)
	bin := testutil.PluginDir(t)
	root, _ := testutil.RepoRoot()
	for _, f := range []string{"conflist/vxvrf.conflist", "conflist/vrf-vxlan.conflist"} {
		fs, code := findings(t, e, "validate", "--cni-bin-dir", bin, filepath.Join(root, f))
		if code != 0 || len(errorsOf(fs)) != 0 || len(fs) != 6 {
			t.Errorf("%s: exit %d: %+v", f, code, fs)
		}
	}
	for _, c := range []struct {
		name string
		edit edit
	}{
		{"typo", func(_ map[string]any, plugins []map[string]any) error {
			chain.Plugin(plugins, "veth-attach")["hairpn"] = true
			return nil
		}},
		{"reserved table", func(_ map[string]any, plugins []map[string]any) error {
			chain.Plugin(plugins, "vrf-vxlan-bridge")["vrf"] = map[string]any{"table": 254}
			return nil
		}},
		{"bad subnet", func(_ map[string]any, plugins []map[string]any) error {
			chain.Plugin(plugins, "lockfile-ipam")["ipam"].(map[string]any)["ranges"] = []any{[]any{map[string]any{"subnet": "10.0.0.0/33"}}}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf, err := chain.Edit(e.conf, c.edit)
			if err != nil {
				t.Fatal(err)
			}
			file := e.writeConflist(conf)
			fs, code := findings(t, e, "validate", "--cni-bin-dir", bin, file)
			errs := errorsOf(fs)
			if code != 1 || len(errs) != 1 {
				t.Fatalf("exit %d, findings %+v", code, fs)
			}
			p := e.newPod(strings.ReplaceAll(c.name, " ", ""))
			_, err = e.chainFor(conf, []string{bin}).Add(ctx(t), p.rt)
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("ADD: %v", err)
			}
			if errs[0].Message != ce.Msg {
				t.Errorf("validate says %q, ADD says %q", errs[0].Message, ce.Msg)
			}
			_ = e.chainFor(conf, []string{bin}).Del(ctx(t), p.rt)
		})
	}
}

// TestDoctor: doctor checks the node for the conflist; an error finding
// (here a broken stage config or a bridge MTU above the uplink's) makes
// it exit 1 with the fix.
func TestDoctor(t *testing.T) {
	e := newEnv(t, "doc", nil, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "infra-ensure")["uplink"] = "eth0"
		chain.Plugin(plugins, "vrf-vxlan-bridge")["vxlan"] = map[string]any{"vni": 42, "remotes": []string{"198.18.0.12", "198.18.0.99"}}
		return nil
	})
	n2, err := e.lab.AddNode("n2")
	if err != nil {
		t.Fatal(err)
	}
	_ = n2
	bin := testutil.PluginDir(t)
	fs, code := findings(t, e, "doctor", "--cni-bin-dir", bin, "--conflist", e.writeConflist(e.conf))
	byCheck := map[string]doctor.Finding{}
	for _, f := range fs {
		byCheck[f.Check] = f
	}
	if code != 0 || len(errorsOf(fs)) != 0 {
		t.Errorf("exit %d: %+v", code, fs)
	}
	for check, sev := range map[string]doctor.Severity{
		"kernel bridge":              doctor.OK,
		"uplink":                     doctor.OK,
		"plugins[3] veth-attach":     doctor.OK,
		"remote 198.18.0.12":         doctor.OK,
		"remote 198.18.0.99":         doctor.Warn,
		"sysctl net.ipv4.ip_forward": doctor.Warn, // before the first ADD
	} {
		if byCheck[check].Severity != sev {
			t.Errorf("%s: %+v, want %s", check, byCheck[check], sev)
		}
	}
	if !strings.Contains(byCheck["uplink"].Message, "eth0 mtu 1500") {
		t.Errorf("uplink: %+v", byCheck["uplink"])
	}

	conf, _ := chain.Edit(e.conf, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "vrf-vxlan-bridge")["bridge"] = map[string]any{"mtu": 1480}
		return nil
	})
	fs, code = findings(t, e, "doctor", "--cni-bin-dir", bin, "--conflist", e.writeConflist(conf))
	errs := errorsOf(fs)
	if code != 1 || len(errs) != 1 || errs[0].Check != "mtu" || !strings.Contains(errs[0].Fix, "at most 1450") {
		t.Errorf("bridge mtu above the overlay's: exit %d %+v", code, fs)
	}
	out, _, code := testutil.RunTool(t, e.node.NetNS, "doctor", "--cni-bin-dir", bin, "--conflist", e.writeConflist(conf))
	if code != 1 || !strings.Contains(out, "fix: set bridge.mtu to at most 1450") {
		t.Errorf("doctor text: exit %d\n%s", code, out)
	}
}

// TestToolHelp: every command answers --help on stdout with exit 0.
func TestToolHelp(t *testing.T) {
	_, node := testutil.NewNode(t, "thelp")
	for _, args := range [][]string{{"--help"}, {"inspect", "--help"}, {"doctor", "--help"}, {"validate", "--help"}, {"version"}} {
		out, stderr, code := testutil.RunTool(t, node.NetNS, args...)
		if code != 0 || !strings.Contains(out, "vxvrf") && !strings.Contains(out, "Usage") {
			t.Errorf("vxvrf %v: exit %d\n%s%s", args, code, out, stderr)
		}
	}
	if _, _, code := testutil.RunTool(t, node.NetNS, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// TestPluginHelp: every stage answers --help with its config keys (from
// the config struct) and their documentation (the README's Configuration
// section), which documents every key; --version carries the version.
func TestPluginHelp(t *testing.T) {
	dir := testutil.PluginDir(t, testutil.Plugins...)
	keyLine := regexp.MustCompile(`^  ([A-Za-z0-9.\[\]]+)\s{2,}\S`)
	for _, p := range testutil.Plugins {
		out, err := exec.Command(filepath.Join(dir, p), "--help").Output()
		if err != nil {
			t.Fatalf("%s --help: %v", p, err)
		}
		help := string(out)
		keys, doc, _ := strings.Cut(help, "Configuration (from the plugin's README.md):")
		if doc == "" {
			t.Errorf("%s --help has no documentation:\n%s", p, help)
			continue
		}
		n := 0
		for _, l := range strings.Split(keys, "\n") {
			m := keyLine.FindStringSubmatch(l)
			if m == nil || strings.HasPrefix(m[1], "log.") || strings.Contains(l, p+" --") {
				continue
			}
			n++
			parts := strings.Split(m[1], ".")
			last := strings.TrimSuffix(parts[len(parts)-1], "[]")
			if !strings.Contains(doc, "`"+last) && !strings.Contains(doc, "."+last) && !strings.Contains(doc, last+"`") {
				t.Errorf("%s: key %s is not documented in its README's Configuration section", p, m[1])
			}
		}
		if n == 0 {
			t.Errorf("%s --help lists no keys:\n%s", p, help)
		}
		out, err = exec.Command(filepath.Join(dir, p), "--version").Output()
		if err != nil || !strings.HasPrefix(string(out), "vxvrf "+p+" ") {
			t.Errorf("%s --version: %v %q", p, err, out)
		}
	}
}

// TestInspectVXLAN: inspect shows the VXLAN device and compares its flood
// list with the configured remotes: a peer missing from it and an entry
// no peer accounts for are both reported.
func TestInspectVXLAN(t *testing.T) {
	e := newEnv(t, "inspvx", nil, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "vrf-vxlan-bridge")["vxlan"] = map[string]any{"vni": 42, "remotes": []string{"198.18.0.12", "198.18.0.13"}}
		return nil
	})
	conflist := e.writeConflist(e.conf)
	e.addPod("p1")
	vx := e.inspect("--conflist", conflist).Networks[0].VXLAN
	if vx == nil || !vx.Present || vx.Name != "vxlan-42" || vx.VNI != 42 || vx.Mode != "remotes" || vx.MTU != 1450 || vx.Port != 4789 ||
		strings.Join(vx.Flood, ",") != "198.18.0.12,198.18.0.13" || len(vx.Missing)+len(vx.Extra) != 0 {
		t.Fatalf("vxlan: %+v", vx)
	}
	e.in("bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan-42", "dst", "198.18.0.13")
	e.in("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan-42", "dst", "198.18.0.77")
	vx = e.inspect("--conflist", conflist).Networks[0].VXLAN
	if strings.Join(vx.Missing, ",") != "198.18.0.13" || strings.Join(vx.Extra, ",") != "198.18.0.77" {
		t.Errorf("missing %v extra %v, want 198.18.0.13 and 198.18.0.77", vx.Missing, vx.Extra)
	}
	text, _, _ := testutil.RunTool(t, e.node.NetNS, "inspect", "--conflist", conflist)
	for _, want := range []string{"vxlan     vxlan-42 vni 42 mode remotes port 4789 mtu 1450", "peers missing from the flood list: 198.18.0.13", "flood entries no configured peer accounts for: 198.18.0.77", "vrf       none"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect text lacks %q:\n%s", want, text)
		}
	}
}
