package main

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/bum"
)

// TestBUMModes: each vxlan section resolves once to its mode, with the
// mode's attributes.
func TestBUMModes(t *testing.T) {
	for _, c := range []struct {
		vxlan    string
		mode     bum.Mode
		learning bool
		group    string
		addrs    []string
	}{
		{`{"vni":1}`, bum.StaticPeers, true, "", nil},
		{`{"vni":1,"remotes":["10.0.0.2","10.0.0.1","10.0.0.2"]}`, bum.StaticPeers, true, "", []string{"10.0.0.2", "10.0.0.1"}},
		{`{"vni":1,"remotes":["10.0.0.2"],"learning":false}`, bum.StaticPeers, false, "", []string{"10.0.0.2"}},
		{`{"vni":1,"group":"239.1.1.1"}`, bum.Multicast, true, "239.1.1.1", []string{"239.1.1.1"}},
		{`{"vni":1,"group":"ff05::100","learning":false}`, bum.Multicast, false, "ff05::100", []string{"ff05::100"}},
		{`{"vni":1,"evpn":true}`, bum.EVPN, false, "", nil},
		{`{"vni":1,"evpn":true,"learning":false}`, bum.EVPN, false, "", nil},
	} {
		conf, err := parseConfig([]byte(`{"cniVersion":"1.1.0","name":"n","type":"vrf-vxlan-bridge","vxlan":` + c.vxlan + `}`))
		if err != nil {
			t.Errorf("%s: %v", c.vxlan, err)
			continue
		}
		m := conf.VXLAN.mode
		var addrs []string
		for _, ip := range m.addresses() {
			addrs = append(addrs, ip.String())
		}
		var group string
		if g := m.group(); g != nil {
			group = g.String()
		}
		if m.name() != c.mode || conf.VXLAN.learning() != c.learning || group != c.group || !slices.Equal(addrs, c.addrs) {
			t.Errorf("%s: mode %s learning %t group %q addresses %v; want %s %t %q %v",
				c.vxlan, m.name(), conf.VXLAN.learning(), group, addrs, c.mode, c.learning, c.group, c.addrs)
		}
	}
}

// TestBUMModeRefused: two modes, or a mode's bad key, are refused with the
// messages (code 7) vrf-vxlan-bridge has always given.
func TestBUMModeRefused(t *testing.T) {
	for _, c := range []struct{ vxlan, msg string }{
		{`{"vni":1,"group":"239.1.1.1","remotes":["10.0.0.1"]}`, "vxlan: group, remotes and evpn are alternatives; set at most one"},
		{`{"vni":1,"group":"239.1.1.1","evpn":true}`, "vxlan: group, remotes and evpn are alternatives; set at most one"},
		{`{"vni":1,"remotes":["10.0.0.1"],"evpn":true,"learning":false}`, "vxlan: group, remotes and evpn are alternatives; set at most one"},
		{`{"vni":1,"evpn":true,"learning":true}`, "vxlan.learning must be false with evpn: the EVPN speaker fills the FDB"},
		{`{"vni":1,"group":"10.0.0.1"}`, `vxlan.group "10.0.0.1" is not a multicast IP address`},
		{`{"vni":1,"remotes":["239.0.0.1"]}`, `vxlan.remotes: "239.0.0.1" is not a unicast IP address`},
		{`{"vni":1,"local":"10.0.0.1","group":"ff05::1"}`, "vxlan: ff05::1 and local 10.0.0.1 are of different IP families"},
		{`{"vni":1,"local":"fd00::1","remotes":["fd00::2","10.0.0.2"]}`, "vxlan: 10.0.0.2 and local fd00::1 are of different IP families"},
	} {
		_, err := parseConfig([]byte(`{"cniVersion":"1.1.0","name":"n","type":"vrf-vxlan-bridge","vxlan":` + c.vxlan + `}`))
		var te *types.Error
		if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || te.Msg != c.msg {
			t.Errorf("%s: %v; want code 7 %q", c.vxlan, err, c.msg)
		}
	}
}

// TestStaticPeersSkipsSelf: the flood list leaves out this node's own VTEP.
func TestStaticPeersSkipsSelf(t *testing.T) {
	p, err := parseStaticPeers([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range p.peers(net.ParseIP("10.0.0.2")) {
		got = append(got, ip.String())
	}
	if !slices.Equal(got, []string{"10.0.0.1", "10.0.0.3"}) {
		t.Errorf("peers %v", got)
	}
}
