package main

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/testutil"
)

// TestGatewayDeprecatedNextToNodeAddress: when the bridge has a node
// address in the gateway's IPv6 subnet (vrf-vxlan-bridge's
// bridge.nodeAddresses), the IPv6 gateway goes on it deprecated
// (preferred_lft 0), also one added before the node address, so the node
// picks the node address as source; without a node address the gateway
// stays preferred; the IPv4 gateway is never deprecated.
func TestGatewayDeprecatedNextToNodeAddress(t *testing.T) {
	lab, node := newNode(t, "va-na")
	e := env(t)
	ipam := dualStack(t.TempDir(), "fd79::/64", "fd79::1")
	conf := config(t, "1.0.0", map[string]any{"ipam": ipam, "prevResult": bridgePrev("1.0.0")})
	gw6 := func() string {
		for _, l := range strings.Split(mustIn(t, node.NS, "ip", "-o", "-6", "addr", "show", "dev", testBridge), "\n") {
			if strings.Contains(l, "fd79::1/64") {
				return l
			}
		}
		return ""
	}

	// No node address: the gateway is preferred.
	testutil.MustRun(t, node.NetNS, inv("ADD", "c1", addPod(t, lab, "p1"), conf, e))
	if l := gw6(); l == "" || strings.Contains(l, "deprecated") {
		t.Fatalf("without a node address the gateway must be there and preferred: %q", l)
	}
	// The node address arrives (an upgrade): the next ADD deprecates the
	// gateway that is already there.
	mustIn(t, node.NS, "ip", "addr", "add", "fd79::7:1/64", "dev", testBridge, "nodad")
	testutil.MustRun(t, node.NetNS, inv("ADD", "c2", addPod(t, lab, "p2"), conf, e))
	if l := gw6(); !strings.Contains(l, "deprecated") || !strings.Contains(l, "valid_lft forever") {
		t.Errorf("with a node address the gateway must be deprecated and valid forever: %q", l)
	}
	if out := mustIn(t, node.NS, "ip", "-o", "-4", "addr", "show", "dev", testBridge); strings.Contains(out, "deprecated") {
		t.Errorf("IPv4 addresses deprecated: %s", out)
	}
	if out := mustIn(t, node.NS, "ip", "-6", "route", "get", "fd79::99"); !strings.Contains(out, "src fd79::7:1") {
		t.Errorf("the node must pick its node address as source: %s", out)
	}
	// A fresh gateway next to a node address is added deprecated.
	mustIn(t, node.NS, "ip", "addr", "del", "fd79::1/64", "dev", testBridge)
	testutil.MustRun(t, node.NetNS, inv("ADD", "c3", addPod(t, lab, "p3"), conf, e))
	if l := gw6(); !strings.Contains(l, "deprecated") {
		t.Errorf("gateway added next to a node address: %q, want deprecated", l)
	}
}
