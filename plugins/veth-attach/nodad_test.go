package main

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/testutil"
)

// TestNoDADAddressesUsableAtOnce: without enableDad the pod's IPv6 address
// is added with IFA_F_NODAD and ADD returns with no address of the pod
// interface tentative (the link-local included) and the v6 default route in
// place; with enableDad the address goes through DAD (no nodad flag).
func TestNoDADAddressesUsableAtOnce(t *testing.T) {
	lab, node := newNode(t, "va-nd")
	e := env(t)
	ipam := dualStack(t.TempDir(), "fd78::/64", "fd78::1")
	for _, c := range []struct {
		name      string
		enableDad bool
	}{{"nodad", false}, {"dad", true}} {
		pod := addPod(t, lab, c.name)
		conf := config(t, "1.0.0", map[string]any{"ipam": ipam, "prevResult": bridgePrev("1.0.0"), "enableDad": c.enableDad})
		testutil.MustRun(t, node.NetNS, inv("ADD", "c"+c.name, pod, conf, e))
		all := mustIn(t, pod, "ip", "-o", "-6", "addr", "show", "eth0")
		global := mustIn(t, pod, "ip", "-o", "-6", "addr", "show", "eth0", "scope", "global")
		if strings.Contains(all, "tentative") || !strings.Contains(all, "fe80::") || !strings.Contains(global, "fd78::") {
			t.Errorf("%s: pod addresses right after ADD: %s", c.name, all)
		}
		if got := strings.Contains(global, "nodad"); got == c.enableDad {
			t.Errorf("%s: nodad flag on the pod address = %v: %s", c.name, got, global)
		}
		if rt := mustIn(t, pod, "ip", "-6", "route", "show", "default"); !strings.Contains(rt, "via fd78::1") {
			t.Errorf("%s: v6 default route: %q", c.name, rt)
		}
		if rt := mustIn(t, pod, "ip", "route", "show", "default"); !strings.Contains(rt, "via "+gateway) {
			t.Errorf("%s: v4 default route: %q", c.name, rt)
		}
	}
}
