package main

import (
	"strings"
	"testing"
)

// TestVRFRouteMarkVRF: the main-table route into the VRF carries the
// project's route protocol (118); the same route as the previous release
// left it (no protocol) is marked by the next ADD; a route to the subnet
// through another device is left alone. Needs CONFIG_NET_VRF (VM).
func TestVRFRouteMarkVRF(t *testing.T) {
	lab, node := newVRFNode(t, "va-vrfm")
	st := stage(t, node)
	conf := attach("1.0.0", hostLocal(t.TempDir(), "", "")).Bytes()
	route := func() string { return mustIn(t, node.NS, "ip", "route", "show", "table", "main", subnet) }

	st.Add(t, "c1", addPod(t, lab, "p1"), conf).OK(t)
	if rt := route(); !strings.Contains(rt, "dev vrf-test proto 118") {
		t.Errorf("main-table route to the pod subnet is not marked: %q", rt)
	}

	// The previous release's route (no protocol): marked by ADD.
	mustIn(t, node.NS, "ip", "route", "del", subnet, "table", "main")
	mustIn(t, node.NS, "ip", "route", "add", subnet, "dev", "vrf-test", "proto", "boot", "table", "main")
	st.Add(t, "c2", addPod(t, lab, "p2"), conf).OK(t)
	if rt := route(); !strings.Contains(rt, "dev vrf-test proto 118") || strings.Count(rt, "\n") > 1 {
		t.Errorf("the previous release's route was not marked (exactly once): %q", rt)
	}

	// Someone else's route to the subnet: kept as it is.
	mustIn(t, node.NS, "ip", "route", "del", subnet, "table", "main")
	mustIn(t, node.NS, "ip", "route", "add", subnet, "dev", "eth0", "proto", "static", "table", "main")
	st.Add(t, "c3", addPod(t, lab, "p3"), conf).OK(t)
	if rt := route(); !strings.Contains(rt, "dev eth0 proto static") || strings.Contains(rt, "118") {
		t.Errorf("a foreign route to the subnet was changed: %q", rt)
	}
}
