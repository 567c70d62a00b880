package overlap

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestCheckUnicastOnly: an overlap is judged against the subnets other
// devices route (unicast), not against local or broadcast routes of
// single addresses (in a VRF's table those sit next to its subnets; here
// they are put in main by hand, the kernel on this host has no VRF).
func TestCheckUnicastOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, node := testutil.NewNode(t, "ovl")
	for _, c := range [][]string{
		{"link", "add", "br-a", "type", "bridge"},
		{"link", "add", "br-b", "type", "bridge"},
		{"link", "set", "br-a", "up"},
		{"link", "set", "br-a", "alias", naming.NetworkMark("red")},
		{"addr", "add", "10.9.0.1/24", "dev", "br-a"},
		{"route", "add", "local", "10.8.0.5/32", "dev", "br-a", "table", "main"},
		{"route", "add", "broadcast", "10.7.0.255/32", "dev", "br-a", "table", "main"},
	} {
		if out, err := node.In("ip", c...); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	err := node.Do(func(ns.NetNS) error {
		br, err := netlinksafe.LinkByName("br-b")
		if err != nil {
			return err
		}
		for _, s := range []string{"10.8.0.0/24", "10.7.0.0/24"} {
			_, n, _ := net.ParseCIDR(s)
			if err := Check(br, []*net.IPNet{n}); err != nil {
				t.Errorf("%s against a local or broadcast route: %v", s, err)
			}
		}
		_, n, _ := net.ParseCIDR("10.9.0.128/25")
		var oe *Error
		if err := Check(br, []*net.IPNet{n}); !errors.As(err, &oe) || oe.Other.String() != "10.9.0.0/24" || oe.Owner != `network "red" (bridge br-a)` {
			t.Errorf("10.9.0.128/25: %v, want the overlap with 10.9.0.0/24 of network red", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
