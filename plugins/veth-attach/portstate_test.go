package main

import (
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
)

// TestPortState: portState reads the state of one bridge port: forwarding
// on a bridge without STP, not yet forwarding on a bridge with kernel STP, an error
// for a link that is no bridge port.
func TestPortState(t *testing.T) {
	_, node := newNode(t, "va-ps")
	for _, c := range [][]string{
		{"link", "add", "brps0", "type", "bridge", "stp_state", "0"},
		{"link", "add", "brps1", "type", "bridge", "stp_state", "1"},
		{"link", "add", "ps0", "type", "veth", "peer", "name", "ps0p"},
		{"link", "add", "ps1", "type", "veth", "peer", "name", "ps1p"},
		{"link", "set", "ps0", "master", "brps0"},
		{"link", "set", "ps1", "master", "brps1"},
	} {
		mustIn(t, node.NS, "ip", c...)
	}
	for _, l := range []string{"brps0", "brps1", "ps0", "ps0p", "ps1", "ps1p"} {
		mustIn(t, node.NS, "ip", "link", "set", l, "up")
	}
	err := node.Do(func(ns.NetNS) error {
		idx := func(name string) int {
			l, err := netlinksafe.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			return l.Attrs().Index
		}
		var st uint8
		var err error
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if st, err = portState(idx("ps0")); err == nil && st == brStateForwarding {
				break
			}
		}
		if err != nil || st != brStateForwarding {
			t.Errorf("port of a bridge without STP: state %d, %v; want %d", st, err, brStateForwarding)
		}
		if st, err := portState(idx("ps1")); err != nil || st == brStateForwarding {
			t.Errorf("port of a bridge with STP, just up: state %d, %v; want not yet forwarding", st, err)
		}
		if st, err := portState(idx("ps0p")); err == nil {
			t.Errorf("a link that is no bridge port: state %d, no error", st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
