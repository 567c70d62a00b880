package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// TestAnnounce: the pod gets addresses the node still caches with an old
// MAC (a pod recreated with the same IPs). Without any other traffic, the
// gratuitous ARP and the unsolicited NA that ADD sends must replace the
// node's stale entries with the pod's MAC. (Verified by hand to fail with
// the announce call in cmdAdd commented out.)
func TestAnnounce(t *testing.T) {
	lab, node := newNode(t, "vag-ann")
	pod := addPod(t, lab, "p1")
	const (
		v4, v6   = "10.77.0.9", "fd77::9"
		oldMAC   = "02:00:00:00:00:99"
		gateway6 = "fd77::1"
	)
	// The network is already in use: gateways on the bridge, and the node
	// remembers the addresses with the MAC of a previous pod.
	// A bridge without ports takes its first port's MAC, and a MAC change
	// flushes its neighbour table; in a network in use it has ports (the
	// VXLAN) already. Fix the MAC so the entries below survive the attach.
	mustIn(t, node.NS, "ip", "link", "set", testBridge, "address", "02:00:00:00:00:01")
	mustIn(t, node.NS, "ip", "addr", "add", gateway+"/24", "dev", testBridge)
	mustIn(t, node.NS, "ip", "-6", "addr", "add", gateway6+"/64", "dev", testBridge, "nodad")
	for _, a := range []string{v4, v6} {
		mustIn(t, node.NS, "ip", "neigh", "replace", a, "lladdr", oldMAC, "dev", testBridge, "nud", "stale")
		if n := mustIn(t, node.NS, "ip", "neigh", "show", a, "dev", testBridge); !strings.Contains(n, oldMAC) {
			t.Fatalf("stale entry for %s not in place: %q", a, n)
		}
	}
	// The kernel sends the gratuitous ARP (arp_notify, only while ADD
	// announces): the pod interface keeps the netns default afterwards.
	arpNotify := strings.TrimSpace(mustIn(t, pod, "cat", "/proc/sys/net/ipv4/conf/default/arp_notify"))
	// Stage form, no routes: ADD itself is the only thing that talks.
	prev := map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []map[string]any{{"name": "eth0"}, {"name": testBridge}},
		"ips": []map[string]any{
			{"address": v4 + "/24", "gateway": gateway},
			{"address": v6 + "/64", "gateway": gateway6},
		},
	}
	o := stage(t, node).Add(t, "c1", pod, testutil.Conf("1.0.0", testNet, plugin).With("prevResult", prev).Bytes())
	if o.Err != nil {
		t.Fatalf("ADD: %v\nstdout: %s\nstderr: %s", o.Err, o.Stdout, o.Stderr)
	}
	if strings.Contains(string(o.Stderr), "announce") {
		t.Errorf("ADD reported an announcement failure: %s", o.Stderr)
	}
	r := parseResult(t, o.Stdout)
	mac := r.Interfaces[len(r.Interfaces)-1].Mac
	if mac == "" || mac == oldMAC {
		t.Fatalf("pod mac %q", mac)
	}
	if got := strings.TrimSpace(mustIn(t, pod, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify")); got != arpNotify {
		t.Errorf("pod eth0 arp_notify after ADD: %s, want the default %s", got, arpNotify)
	}
	for _, a := range []string{v4, v6} {
		if n, ok := waitNeigh(t, node.NS, a, mac); !ok {
			t.Errorf("node's neighbour entry for %s after ADD: %q, want lladdr %s", a, n, mac)
		}
	}
}

// waitNeigh polls (bounded, 2 s) until the node's entry for addr on the
// bridge has lladdr mac; it returns the last entry seen.
func waitNeigh(t *testing.T, n *netsim.NS, addr, mac string) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		e := mustIn(t, n, "ip", "neigh", "show", addr, "dev", testBridge)
		if strings.Contains(e, "lladdr "+mac) {
			return e, true
		}
		if time.Now().After(deadline) {
			return e, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
