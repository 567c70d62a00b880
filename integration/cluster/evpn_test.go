package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/pkg/naming"
)

// frrRoot finds FRR: $VXVRF_FRR or /var/cache/vxvrf-frr (unpacked by
// frr-extract.sh), else an installed FRR ("/"); "" when there is none.
func frrRoot() string {
	for _, d := range []string{os.Getenv("VXVRF_FRR"), "/var/cache/vxvrf-frr", "/"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "usr/lib/frr/bgpd")); err == nil {
			return d
		}
	}
	return ""
}

// frrConf is the FRR config of one node: iBGP EVPN to every other node.
func frrConf(c *Cluster, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname n%d\nlog file %s\n!\nrouter bgp 65000\n bgp router-id %s\n no bgp default ipv4-unicast\n",
		i+1, filepath.Join(c.NodeRoot(i), "frr", "frr.log"), c.Nodes[i].Addr)
	for j, n := range c.Nodes {
		if j != i {
			fmt.Fprintf(&b, " neighbor %s remote-as 65000\n neighbor %s timers connect 1\n", n.Addr, n.Addr)
		}
	}
	b.WriteString(" !\n address-family l2vpn evpn\n")
	for j, n := range c.Nodes {
		if j != i {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n.Addr)
		}
	}
	b.WriteString("  advertise-all-vni\n exit-address-family\n!\n")
	return b.String()
}

// startFRR runs zebra and bgpd in node i's namespace with their own
// config, pid, socket and vty paths; they are stopped (by pid) at the end.
func startFRR(t *testing.T, c *Cluster, root string, i int) {
	t.Helper()
	dir := filepath.Join(c.NodeRoot(i), "frr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(conf, []byte(frrConf(c, i)), 0o644); err != nil {
		t.Fatal(err)
	}
	// FRR looks up its vty group "frrvty"; instead of adding it to the
	// machine's /etc/group, each daemon sees a copy that has it (a bind
	// mount in its own mount namespace).
	groups, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	group := filepath.Join(dir, "group")
	if err := os.WriteFile(group, append(groups, []byte("frrvty:x:0:\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Join(root, "usr/lib/x86_64-linux-gnu")+":"+filepath.Join(root, "usr/lib/x86_64-linux-gnu/frr"))
	common := []string{"-u", "root", "-g", "root", "-P", "0", "-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir,
		"--moduledir", filepath.Join(root, "usr/lib/x86_64-linux-gnu/frr/modules")}
	for _, d := range []struct {
		name string
		args []string
	}{
		{"zebra", []string{"-f", conf, "-i", filepath.Join(dir, "zebra.pid")}},
		{"bgpd", []string{"-f", conf, "-i", filepath.Join(dir, "bgpd.pid"), "-p", "179"}},
	} {
		args := append([]string{"netns", "exec", c.Nodes[i].Name, "unshare", "-m", "sh", "-c", `mount --bind "$0" /etc/group && exec "$@"`,
			group, filepath.Join(root, "usr/lib/frr", d.name)}, append(d.args, common...)...)
		cmd := exec.Command("ip", args...)
		cmd.Env = env
		logf, err := os.Create(filepath.Join(dir, d.name+".out"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s on n%d: %v", d.name, i+1, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				out, _ := os.ReadFile(logf.Name())
				t.Logf("n%d %s output:\n%s", i+1, d.name, out)
			}
		})
		if d.name == "zebra" {
			// bgpd needs zebra's socket.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := os.Stat(filepath.Join(dir, "zserv.api")); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("n%d: zebra did not open its socket", i+1)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// eventually polls f until it is nil or the deadline passes (BGP needs a
// few seconds to converge; this bounds a wait, it asserts no timing).
func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestEVPN: learning off, no group, no static peers: FRR (zebra + bgpd in
// each node namespace, iBGP EVPN with advertise-all-vni) fills the FDBs,
// and pods on different nodes reach each other.
func TestEVPN(t *testing.T) {
	root := frrRoot()
	if root == "" {
		t.Skip("FRR not found: run integration/cluster/frr-extract.sh (unpacks Debian's frr without starting it) or set VXVRF_FRR")
	}
	t.Parallel()
	c := newCluster(t, "cl-evpn", 2)
	n := network(t, c, Spec{Name: "evpn", VNI: 360, Mode: EVPN, Subnet4: "10.36.0.0/16", Anycast: true})
	p1, p2 := addPod(t, n, 0, "p"), addPod(t, n, 1, "p")
	vx := naming.VXLANName(360)
	for i, node := range c.Nodes {
		if out := sh(t, node.NS, "ip", "-d", "link", "show", vx); !strings.Contains(out, "nolearning") || !strings.Contains(out, "local "+node.Addr.String()) {
			t.Errorf("n%d: %s is not as FRR expects (nolearning, local set): %s", i+1, vx, out)
		}
	}
	// Control: learning off and no flood entries - without FRR the nodes
	// do not reach each other.
	mustNotReach(t, "without FRR", p1.NS, p2.IP(true).Address.IP)
	for i := range c.Nodes {
		startFRR(t, c, root, i)
	}
	// Make the pods' MACs known locally (FRR advertises what the bridge learned).
	for _, p := range []*Pod{p1, p2} {
		_ = Ping(p.NS, p.IP(true).Gateway, "-W1")
	}
	if err := eventually(30*time.Second, func() error {
		fdb, err := c.FDB(0, "dev", vx)
		if err != nil {
			return err
		}
		mac := sh(t, p2.NS, "cat", "/sys/class/net/eth0/address")
		if len(Lines(fdb, mac, "dst "+c.Nodes[1].Addr.String())) == 0 {
			return fmt.Errorf("n1 has no FDB entry for %s via %s:\n%s", p2.Name, c.Nodes[1].Addr, fdb)
		}
		return nil
	}); err != nil {
		t.Fatalf("EVPN did not install the remote MAC: %v", err)
	}
	if err := eventually(15*time.Second, func() error { return Ping(p1.NS, p2.IP(true).Address.IP, "-W1") }); err != nil {
		t.Fatalf("%s -> %s over EVPN: %v", p1.Name, p2.Name, err)
	}
	mesh(t, p1, p2)
	// Learning stayed off: every remote entry came from FRR (extern_learn).
	fdb, _ := c.FDB(0, "dev", vx)
	for _, l := range Lines(fdb, "dst "+c.Nodes[1].Addr.String()) {
		if !strings.HasPrefix(l, "00:00:00:00:00:00") && !strings.Contains(l, "extern_learn") {
			t.Errorf("n1: an FDB entry FRR did not install: %s", l)
		}
	}
}
