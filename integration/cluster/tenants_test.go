package cluster

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// tenants deploys red and blue: the same subnets, their own VNI and VRF
// table, anycast gateways, on the same nodes.
func tenants(t *testing.T, c *Cluster, egress bool) (red, blue *Network) {
	return tenantsWith(t, c, egress, "")
}

// tenantsWith is tenants with sysctl-firewall's backend set ("": auto).
func tenantsWith(t *testing.T, c *Cluster, egress bool, backend string) (red, blue *Network) {
	t.Helper()
	var edit func(map[string]any, []map[string]any) error
	if backend != "" {
		edit = func(_ map[string]any, plugins []map[string]any) error {
			sf := chain.Plugin(plugins, "sysctl-firewall")
			if sf == nil {
				return fmt.Errorf("no sysctl-firewall in the chain")
			}
			sf["backend"] = backend
			return nil
		}
	}
	red = network(t, c, Spec{Name: "red", VNI: 410, VRFTable: 410, Egress: egress, Mode: Remotes, Subnet4: "10.40.0.0/16", Subnet6: "fd00:40::/64", Anycast: true, Edit: edit})
	blue = network(t, c, Spec{Name: "blue", VNI: 420, VRFTable: 420, Egress: egress, Mode: Remotes, Subnet4: "10.40.0.0/16", Subnet6: "fd00:40::/64", Anycast: true, Edit: edit})
	return red, blue
}

// TestTenantsVRF: red and blue with the same subnet on two nodes. Red
// pods reach red pods on every node (both families) and blue likewise;
// red never reaches blue, not even an address only blue has; where both
// tenants have the same address, red's packets reach red's pod. The node
// reaches its pods: the first network on a node owns the main-table route
// to the shared prefix, the other tenant's pods are reached through their
// VRF (ping -I vrf-blue).
func TestTenantsVRF(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-ten", 2)
	testutil.RequireVRF(t, c.Nodes[0].NS)
	red, blue := tenants(t, c, false)
	r1, r2 := addPod(t, red, 0, "red"), addPod(t, red, 1, "red")
	b1, b2 := addPod(t, blue, 0, "blue"), addPod(t, blue, 1, "blue")
	bOnly := addPod(t, blue, 1, "blue2") // an address red does not have
	for _, pair := range [][2]*Pod{{r1, b1}, {r2, b2}} {
		if !pair[0].IP(true).Address.IP.Equal(pair[1].IP(true).Address.IP) {
			t.Fatalf("the tenants should overlap: %s has %s, %s has %s", pair[0].Name, pair[0].IP(true).Address, pair[1].Name, pair[1].IP(true).Address)
		}
	}
	mesh(t, r1, r2)
	mesh(t, b1, b2, bOnly)
	for _, v4 := range []bool{true, false} {
		mustNotReach(t, "red -> blue-only address", r1.NS, bOnly.IP(v4).Address.IP)
		mustNotReach(t, "red -> blue-only address", r2.NS, bOnly.IP(v4).Address.IP)
	}
	// The shared address 10.40.2.2 resolves, from red, to red's pod.
	want := sh(t, r2.NS, "cat", "/sys/class/net/eth0/address")
	if got := sh(t, r1.NS, "ip", "neigh", "show", r2.IP(true).Address.IP.String()); !strings.Contains(got, want) {
		t.Errorf("red/n1 resolves %s to %q, want red/n2's MAC %s", r2.IP(true).Address.IP, got, want)
	}
	for i, node := range c.Nodes {
		for _, tn := range []struct {
			name, table string
		}{{"red", "410"}, {"blue", "420"}} {
			out := sh(t, node.NS, "ip", "route", "show", "table", tn.table)
			if !strings.Contains(out, "10.40.0.0/16 dev "+naming.BridgeName(tn.name)) {
				t.Errorf("n%d: table %s lacks the pod subnet on %s:\n%s", i+1, tn.table, naming.BridgeName(tn.name), out)
			}
		}
		// Host reachability: red came first on every node.
		if out := sh(t, node.NS, "ip", "route", "show", "10.40.0.0/16"); !strings.Contains(out, "dev "+naming.VRFName("red")) {
			t.Errorf("n%d: main-table route to the shared prefix is not via %s: %q", i+1, naming.VRFName("red"), out)
		}
	}
	for _, p := range []*Pod{r1, r2} {
		for _, v4 := range []bool{true, false} {
			mustReach(t, "node -> its red pod", c.Nodes[p.Node].NS, p.IP(v4).Address.IP)
		}
	}
	for _, p := range []*Pod{b1, b2} {
		if _, err := c.Nodes[p.Node].In("ping", "-c1", "-W2", "-I", naming.VRFName("blue"), p.IP(true).Address.IP.String()); err != nil {
			t.Errorf("node -> its blue pod through the VRF: %v", err)
		}
	}
}

// flow is one pod's TCP connection to the external host from a fixed
// source port: what the pod got back and what the external host saw.
type flow struct {
	pod  *Pod
	peer string // as seen by the external host
	echo string // what came back to the pod
	err  error
}

// sameTupleEgress opens one connection per pod, all at once, from the same
// source port to the same listener on the external host; each pod sends
// its name and expects it back with the peer address the host saw.
func sameTupleEgress(t *testing.T, c *Cluster, port int, pods ...*Pod) []*flow {
	t.Helper()
	var ln net.Listener
	if err := c.External.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(netsim.ExternalHost, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				name, err := bufio.NewReader(conn).ReadString('\n')
				if err == nil {
					_, _ = fmt.Fprintf(conn, "%s %s\n", strings.TrimSpace(name), conn.RemoteAddr())
				}
			}()
		}
	}()
	flows := make([]*flow, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		flows[i] = &flow{pod: p}
		wg.Add(1)
		go func(f *flow) {
			defer wg.Done()
			f.err = p.NS.Do(func(ns.NetNS) error {
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: p.IP(true).Address.IP, Port: port}}
				conn, err := d.Dial("tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(conn, "%s\n", p.Name); err != nil {
					return err
				}
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					return err
				}
				f.echo = strings.TrimSpace(line)
				if fs := strings.Fields(f.echo); len(fs) == 2 {
					f.peer = fs[1]
				}
				return nil
			})
		}(flows[i])
	}
	wg.Wait()
	return flows
}

// apart says whether every flow came back to its own pod, masqueraded to
// the node's address, with distinct source ports at the external host.
func apart(c *Cluster, flows []*flow) error {
	ports := map[string]string{}
	for _, f := range flows {
		if f.err != nil {
			return fmt.Errorf("%s: %w", f.pod.Name, f.err)
		}
		host, port, err := net.SplitHostPort(f.peer)
		if err != nil || !strings.HasPrefix(f.echo, f.pod.Name+" ") {
			return fmt.Errorf("%s got back %q", f.pod.Name, f.echo)
		}
		if host != c.Nodes[f.pod.Node].Addr.String() {
			return fmt.Errorf("%s: the external host saw %s, not the node's address", f.pod.Name, host)
		}
		if other, ok := ports[port]; ok {
			return fmt.Errorf("%s and %s share the external port %s", other, f.pod.Name, port)
		}
		ports[port] = f.pod.Name
	}
	return nil
}

// TestTenantEgressVRF: a red and a blue pod on the same node have the same
// address; both connect to the external host at the same time from the same
// source port. sysctl-firewall puts each tenant in its own conntrack zone
// (conntrackZone absent: the VRF's table) and marks its connections
// table<<16, so both are masqueraded to the node's address on distinct
// ports and each reply comes back into its own VRF to its own pod. Control:
// with the zone rules removed by hand the flows mix and CHECK fails; the
// next ADD of each network puts the rules back and the flows are apart
// again.
//
// It runs with each sysctl-firewall backend.
func TestTenantEgressVRF(t *testing.T) {
	t.Parallel()
	for _, be := range []string{"iptables", "nftables"} {
		t.Run(be, func(t *testing.T) { testTenantEgress(t, be) })
	}
}

func testTenantEgress(t *testing.T, be string) {
	c := newCluster(t, "cl-tegr-"+be[:1], 1)
	testutil.RequireVRF(t, c.Nodes[0].NS)
	red, blue := tenantsWith(t, c, true, be)
	r, b := addPod(t, red, 0, "red"), addPod(t, blue, 0, "blue")
	if !r.IP(true).Address.IP.Equal(b.IP(true).Address.IP) {
		t.Fatalf("the tenants should overlap: %s vs %s", r.IP(true).Address, b.IP(true).Address)
	}
	check := func(p *Pod) error { return p.Net.Chains[0].Check(ctxT(t), p.RT) }
	for _, p := range []*Pod{r, b} {
		if err := check(p); err != nil {
			t.Errorf("CHECK %s: %v", p.Name, err)
		}
	}
	node := c.Nodes[0]
	if be == "nftables" {
		nftZones(t, node.NS)
	} else {
		iptablesZones(t, node.NS)
	}
	if err := apart(c, sameTupleEgress(t, c, 40001, r, b)); err != nil {
		t.Errorf("with per-tenant conntrack zones: %v", err)
	}

	// Control: no zones, the flows mix, and CHECK notices.
	if be == "nftables" {
		dropNftZoneJumps(t, node.NS)
	} else {
		for _, table := range []string{"raw", "mangle"} {
			sh(t, node.NS, "iptables", "-t", table, "-F", naming.ZoneChain)
		}
	}
	if err := apart(c, sameTupleEgress(t, c, 40000, r, b)); err == nil {
		t.Errorf("control: without conntrack zones the two tenants' identical flows stayed apart; the test proves nothing")
	} else {
		t.Logf("control (no zones): %v", err)
	}
	if err := check(r); err == nil || !strings.Contains(err.Error(), "conntrack zone") {
		t.Errorf("CHECK %s without the zone rules: %v, want a conntrack zone error", r.Name, err)
	}

	// The next ADD of each network ensures its rules again.
	addPod(t, red, 0, "red2")
	addPod(t, blue, 0, "blue2")
	for _, p := range []*Pod{r, b} {
		if err := check(p); err != nil {
			t.Errorf("CHECK %s after the next ADD: %v", p.Name, err)
		}
	}
	if err := apart(c, sameTupleEgress(t, c, 40002, r, b)); err != nil {
		t.Errorf("zones back: %v", err)
	}
	// Each tenant on its own also egresses (the single-tenant path).
	for _, p := range []*Pod{r, b} {
		if err := apart(c, sameTupleEgress(t, c, 40003, p)); err != nil {
			t.Errorf("%s alone: %v", p.Name, err)
		}
	}
}

// iptablesZones: the iptables backend's zone rules: zone = VRF table,
// mark = table<<16 (what vrf.egress's fwmark rule matches), per tenant
// bridge, both families.
func iptablesZones(t *testing.T, node *netsim.NS) {
	t.Helper()
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		s := sh(t, node, save)
		for _, tn := range []struct {
			name string
			t    int
		}{{"red", 410}, {"blue", 420}} {
			for _, want := range []string{
				fmt.Sprintf("-i %s -m comment --comment \"%s\" -j CT --zone-orig %d", naming.BridgeName(tn.name), naming.ZoneTag(tn.name), tn.t),
				fmt.Sprintf("-j CONNMARK --set-xmark %#x/0xffff0000", tn.t<<16),
			} {
				if !strings.Contains(s, want) {
					t.Errorf("%s lacks %q:\n%s", save, want, s)
				}
			}
		}
		if !strings.Contains(s, naming.ZoneRestoreTag) {
			t.Errorf("%s lacks the restore-mark rule:\n%s", save, s)
		}
	}
}

// nftZones: the nftables backend's zone objects: per tenant its three
// zone map elements and its zone chain for the VRF table.
func nftZones(t *testing.T, node *netsim.NS) {
	t.Helper()
	objs, err := chain.NftObjects(node.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, o := range objs {
		all = append(all, o.String())
	}
	dump := strings.Join(all, "\n")
	for _, tn := range []struct {
		name string
		t    int
	}{{"red", 410}, {"blue", 420}} {
		if n := strings.Count(dump, naming.NftZoneTag(tn.name)); n != 3 {
			t.Errorf("%s: %d zone elements, want 3:\n%s", tn.name, n, dump)
		}
		if !strings.Contains(dump, naming.NftZoneChain(tn.name, tn.t)) {
			t.Errorf("%s: no zone chain for zone %d:\n%s", tn.name, tn.t, dump)
		}
	}
}

// dropNftZoneJumps deletes every element of the zonejump map by hand (the
// control: no zones).
func dropNftZoneJumps(t *testing.T, node *netsim.NS) {
	t.Helper()
	err := node.Do(func(ns.NetNS) error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: naming.NftTable, Family: nftables.TableFamilyINet}
		set, err := c.GetSetByName(table, "zonejump")
		if err != nil {
			return err
		}
		els, err := c.GetSetElements(set)
		if err != nil {
			return err
		}
		for _, el := range els {
			if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: el.Key}}); err != nil {
				return err
			}
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
}
