package vxlanfdb

import (
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/testutil"
)

// Sync adds and removes flood entries only: a learned-style MAC entry and
// the device stay as they are.
func TestSync(t *testing.T) {
	if testing.Short() {
		t.Skip("privileged")
	}
	_, node := testutil.NewNode(t, "k8fdb")
	if _, err := node.In("ip", "link", "add", "vxlan-77", "type", "vxlan", "id", "77", "dstport", "4789", "local", node.Addr.String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := node.In("bridge", "fdb", "append", "02:00:00:00:00:09", "dev", "vxlan-77", "dst", "198.18.0.50", "self", "permanent"); err != nil {
		t.Fatal(err)
	}
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, x := range s {
			out = append(out, net.ParseIP(x))
		}
		return out
	}
	sync := func(peers []net.IP) (added, removed []string) {
		t.Helper()
		err := node.Do(func(ns.NetNS) error {
			l, err := netlinksafe.LinkByName("vxlan-77")
			if err != nil {
				return err
			}
			added, removed, err = Sync(l, peers)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return added, removed
	}
	flood := func() []string {
		out, err := node.In("bridge", "fdb", "show", "dev", "vxlan-77")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "00:00:00:00:00:00" {
				got = append(got, f[2])
			}
		}
		if !strings.Contains(string(out), "02:00:00:00:00:09 dst 198.18.0.50") {
			t.Errorf("the non-flood entry was touched:\n%s", out)
		}
		slices.Sort(got)
		return got
	}
	a, r := sync(ips("198.18.0.12", "198.18.0.13"))
	if !slices.Equal(a, []string{"198.18.0.12", "198.18.0.13"}) || len(r) != 0 || !slices.Equal(flood(), a) {
		t.Errorf("first sync: added %v removed %v, fdb %v", a, r, flood())
	}
	a, r = sync(ips("198.18.0.13", "198.18.0.14"))
	if !slices.Equal(a, []string{"198.18.0.14"}) || !slices.Equal(r, []string{"198.18.0.12"}) || !slices.Equal(flood(), []string{"198.18.0.13", "198.18.0.14"}) {
		t.Errorf("second sync: added %v removed %v, fdb %v", a, r, flood())
	}
	if a, r = sync(ips("198.18.0.13", "198.18.0.14")); len(a)+len(r) != 0 {
		t.Errorf("an unchanged list changed something: added %v removed %v", a, r)
	}
	if _, r = sync(nil); len(r) != 2 || len(flood()) != 0 {
		t.Errorf("empty list: removed %v, fdb %v", r, flood())
	}
}
