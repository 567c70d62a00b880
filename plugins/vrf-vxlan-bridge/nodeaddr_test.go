package main

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/testutil"
)

// TestNodeAddressDevices: bridge.nodeAddresses on the bridge (IPv4 as the
// primary address of the subnet, also on a bridge that has the gateway
// first), CHECK verifying them, and the refusals: with a shared bridge MAC
// (nothing created) and with the address present under another prefix.
func TestNodeAddressDevices(t *testing.T) {
	node, pod := labNode(t, "vb-nad")
	br := naming.BridgeName("nad")
	addrs := []string{"10.60.1.1/16", "fd00:60::1:1/64"}
	conf := func(extra map[string]any) []byte {
		m := map[string]any{"vxlan": map[string]any{"vni": 600}, "bridge": map[string]any{"nodeAddresses": addrs}}
		for k, v := range extra {
			m[k] = v
		}
		return netConf("1.1.0", "nad", m)
	}
	ipo := func(args ...string) string {
		out, err := node.In("ip", append([]string{"-o"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}

	// A shared bridge MAC: refused before anything is created.
	for key, extra := range map[string]map[string]any{
		"bridge.mac":     {"bridge": map[string]any{"mac": "02:00:0a:f4:00:01", "nodeAddresses": addrs}},
		"anycastGateway": {"anycastGateway": true},
	} {
		e := testutil.Run(t, node.NetNS, inv("ADD", "c1", pod, conf(extra))).CNIError(t)
		if e.Code != 7 || !strings.Contains(e.Msg, "bridge.nodeAddresses") || !strings.Contains(e.Msg, key) {
			t.Errorf("%s + nodeAddresses: code %d %q, want 7 naming both keys", key, e.Code, e.Msg)
		}
		if link(t, node, br) != nil {
			t.Fatalf("%s + nodeAddresses: the refused ADD created %s", key, br)
		}
	}

	// A network from before the key: the bridge has the gateway (as
	// veth-attach adds it) as its primary address.
	testutil.MustRun(t, node.NetNS, inv("ADD", "c1", pod, netConf("1.1.0", "nad", map[string]any{"vxlan": map[string]any{"vni": 600}})))
	if _, err := node.In("ip", "addr", "add", "10.60.0.1/16", "dev", br); err != nil {
		t.Fatal(err)
	}
	testutil.MustRun(t, node.NetNS, inv("ADD", "c1", pod, conf(nil)))
	out := ipo("-4", "addr", "show", "dev", br)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "inet 10.60.1.1/16") || strings.Contains(lines[0], "secondary") ||
		!strings.Contains(lines[1], "inet 10.60.0.1/16") || !strings.Contains(lines[1], "secondary") {
		t.Errorf("want the node address primary, the gateway secondary:\n%s", out)
	}
	if out := ipo("-6", "addr", "show", "dev", br); !strings.Contains(out, "inet6 fd00:60::1:1/64") {
		t.Errorf("no IPv6 node address:\n%s", out)
	}
	if out := ipo("-4", "route", "show", "10.60.0.0/16"); !strings.Contains(out, "src 10.60.1.1") {
		t.Errorf("subnet route %q, want src 10.60.1.1", out)
	}
	testutil.MustRun(t, node.NetNS, inv("CHECK", "c1", pod, conf(nil)))
	// Idempotent: the same ADD again changes nothing.
	testutil.MustRun(t, node.NetNS, inv("ADD", "c1", pod, conf(nil)))
	if again := ipo("-4", "addr", "show", "dev", br); again != out {
		t.Errorf("a repeated ADD changed the addresses:\n%s", again)
	}

	// CHECK sees a node address that is gone, or no longer primary.
	if _, err := node.In("ip", "addr", "del", "10.60.1.1/16", "dev", br); err != nil {
		t.Fatal(err)
	}
	if e := testutil.Run(t, node.NetNS, inv("CHECK", "c1", pod, conf(nil))).CNIError(t); !strings.Contains(e.Msg, "lacks its node address 10.60.1.1/16") {
		t.Errorf("CHECK without the node address: %q", e.Msg)
	}
	if _, err := node.In("ip", "addr", "add", "10.60.1.1/16", "dev", br); err != nil {
		t.Fatal(err)
	}
	if e := testutil.Run(t, node.NetNS, inv("CHECK", "c1", pod, conf(nil))).CNIError(t); !strings.Contains(e.Msg, "not the primary address") {
		t.Errorf("CHECK with the node address secondary: %q", e.Msg)
	}

	// The address under another prefix: refused, named.
	if _, err := node.In("ip", "addr", "del", "10.60.1.1/16", "dev", br); err != nil {
		t.Fatal(err)
	}
	if _, err := node.In("ip", "addr", "add", "10.60.1.1/24", "dev", br); err != nil {
		t.Fatal(err)
	}
	e := testutil.Run(t, node.NetNS, inv("ADD", "c1", pod, conf(nil))).CNIError(t)
	if e.Code != 7 || !strings.Contains(e.Msg, "10.60.1.1/24") || !strings.Contains(e.Msg, "subnet prefix") {
		t.Errorf("node address under another prefix: code %d %q, want 7 naming it", e.Code, e.Msg)
	}
}
