package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/naming"
)

func TestParseConfigDefaults(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"blue","type":"vrf-vxlan-bridge","vxlan":{"vni":42}}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Bridge.Name != naming.BridgeName("blue") {
		t.Errorf("bridge name %q, want %q", conf.Bridge.Name, naming.BridgeName("blue"))
	}
	if conf.VRF != nil {
		t.Errorf("vrf %+v, want none", conf.VRF)
	}
	if conf.VXLAN.Port != 4789 {
		t.Errorf("port %d, want 4789", conf.VXLAN.Port)
	}
	if !conf.VXLAN.learning() {
		t.Error("learning off by default, want on")
	}
	if conf.VXLAN.Name() != "vxlan-42" {
		t.Errorf("vxlan name %q", conf.VXLAN.Name())
	}
	if conf.Bridge.MTU != 0 {
		t.Errorf("bridge mtu %d before the node resolves it, want 0 (derived from the uplink)", conf.Bridge.MTU)
	}

	conf, err = parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x","vrf":{"table":100},"vxlan":{"vni":7,"evpn":true},"bridge":{"mtu":1400,"mac":"02:00:00:00:00:01"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.VRF.Name != naming.VRFName("red") || conf.VRF.Table != 100 {
		t.Errorf("vrf %+v", conf.VRF)
	}
	if conf.VXLAN.learning() {
		t.Error("evpn: learning on, want off")
	}
	if conf.Bridge.mac.String() != "02:00:00:00:00:01" || conf.Bridge.MTU != 1400 {
		t.Errorf("bridge %+v", conf.Bridge)
	}
}

func TestOverhead(t *testing.T) {
	u4 := &underlay{local: net.ParseIP("198.18.0.11")}
	if u4.overhead() != 50 {
		t.Errorf("IPv4 overhead %d, want 50", u4.overhead())
	}
	u6 := &underlay{local: net.ParseIP("fd00::11")}
	if u6.overhead() != 70 {
		t.Errorf("IPv6 overhead %d, want 70", u6.overhead())
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name, json string
		code       uint
	}{
		{"malformed", `{"cniVersion":"1.0.0",`, types.ErrDecodingFailure},
		{"vni zero", `{"vxlan":{"vni":0}}`, 7},
		{"vni missing", `{"vxlan":{}}`, 7},
		{"vni too big", `{"vxlan":{"vni":16777216}}`, 7},
		{"vni negative", `{"vxlan":{"vni":-1}}`, 7},
		{"group and remotes", `{"vxlan":{"vni":1,"group":"239.1.1.1","remotes":["10.0.0.1"]}}`, 7},
		{"group and evpn", `{"vxlan":{"vni":1,"group":"239.1.1.1","evpn":true}}`, 7},
		{"remotes and evpn", `{"vxlan":{"vni":1,"remotes":["10.0.0.1"],"evpn":true}}`, 7},
		{"bad group", `{"vxlan":{"vni":1,"group":"239.1.1"}}`, 7},
		{"unicast group", `{"vxlan":{"vni":1,"group":"10.1.1.1"}}`, 7},
		{"bad remote", `{"vxlan":{"vni":1,"remotes":["nope"]}}`, 7},
		{"multicast remote", `{"vxlan":{"vni":1,"remotes":["239.0.0.1"]}}`, 7},
		{"bad local", `{"vxlan":{"vni":1,"local":"1.2.3"}}`, 7},
		{"mixed families", `{"vxlan":{"vni":1,"local":"10.0.0.1","remotes":["fd00::1"]}}`, 7},
		{"evpn with learning", `{"vxlan":{"vni":1,"evpn":true,"learning":true}}`, 7},
		{"port too big", `{"vxlan":{"vni":1,"port":70000}}`, 7},
		{"table main", `{"vrf":{"table":254}}`, 7},
		{"table local", `{"vrf":{"table":255}}`, 7},
		{"table default", `{"vrf":{"table":253}}`, 7},
		{"table missing", `{"vrf":{}}`, 7},
		{"table too big", `{"vrf":{"table":4294967296}}`, 7},
		{"vrf name too long", `{"vrf":{"name":"vrf-0123456789abc","table":10}}`, 7},
		{"bridge name slash", `{"bridge":{"name":"br/0"}}`, 7},
		{"bridge mtu", `{"bridge":{"mtu":10}}`, 7},
		{"bridge mac", `{"bridge":{"mac":"zz"}}`, 7},
		{"bridge multicast mac", `{"bridge":{"mac":"01:00:5e:00:00:01"}}`, 7},
		{"same names", `{"vrf":{"name":"x","table":10},"bridge":{"name":"x"}}`, 7},
		{"node address without prefix", `{"bridge":{"nodeAddresses":["10.244.1.1"]}}`, 7},
		{"node address not an address", `{"bridge":{"nodeAddresses":["nope/16"]}}`, 7},
		{"node address network address", `{"bridge":{"nodeAddresses":["10.244.0.0/16"]}}`, 7},
		{"node address multicast", `{"bridge":{"nodeAddresses":["239.0.0.1/8"]}}`, 7},
		{"node address link-local", `{"bridge":{"nodeAddresses":["fe80::1/64"]}}`, 7},
		{"two node addresses of a family", `{"bridge":{"nodeAddresses":["10.244.1.1/16","10.244.1.2/16"]}}`, 7},
		{"node addresses not a list", `{"bridge":{"nodeAddresses":"10.244.1.1/16"}}`, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.json
			if c.code != types.ErrDecodingFailure {
				in = `{"cniVersion":"1.0.0","name":"n","type":"vrf-vxlan-bridge",` + c.json[1:]
			}
			_, err := parseConfig([]byte(in))
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a CNI error with code %d", err, c.code)
			}
			if te.Code != c.code {
				t.Fatalf("code %d (%s), want %d", te.Code, te.Msg, c.code)
			}
		})
	}
}

func TestParseConfigGood(t *testing.T) {
	for _, in := range []string{
		`{"vxlan":{"vni":16777215}}`,
		`{"vxlan":{"vni":1,"group":"239.1.1.1"}}`,
		`{"vxlan":{"vni":1,"group":"ff05::100","local":"fd00::1"}}`,
		`{"vxlan":{"vni":1,"remotes":["10.0.0.1","10.0.0.2","10.0.0.1"],"learning":false}}`,
		`{"vxlan":{"vni":1,"evpn":true,"learning":false,"port":8472,"dev":"eth1","local":"10.0.0.9"}}`,
		`{"vrf":{"table":1}}`,
		`{"vrf":{"name":"tenant-a","table":4294967295},"bridge":{"name":"br-a"}}`,
	} {
		conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"vrf-vxlan-bridge",` + in[1:]))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if conf.VXLAN != nil && len(conf.VXLAN.Remotes) == 3 && len(conf.VXLAN.remotes) != 2 {
			t.Errorf("duplicate remote kept: %v", conf.VXLAN.remotes)
		}
	}
}

func TestParseConfigAnycast(t *testing.T) {
	for _, tc := range []struct {
		conf    string
		anycast bool
		mac     string
	}{
		{`{"cniVersion":"1.0.0","name":"red","type":"x","vxlan":{"vni":7}}`, false, ""},
		{`{"cniVersion":"1.0.0","name":"red","type":"x","anycastGateway":true,"vxlan":{"vni":7}}`, true, naming.AnycastGatewayMAC("red").String()},
		{`{"cniVersion":"1.0.0","name":"red","type":"x","anycastGateway":true,"bridge":{"mac":"02:00:00:00:00:09"}}`, true, "02:00:00:00:00:09"},
		{`{"cniVersion":"1.0.0","name":"red","type":"x","bridge":{"mac":"02:00:00:00:00:09"}}`, true, "02:00:00:00:00:09"},
	} {
		conf, err := parseConfig([]byte(tc.conf))
		if err != nil {
			t.Fatalf("%s: %v", tc.conf, err)
		}
		if conf.anycast() != tc.anycast || conf.Bridge.mac.String() != tc.mac {
			t.Errorf("%s: anycast %t mac %q, want %t %q", tc.conf, conf.anycast(), conf.Bridge.mac, tc.anycast, tc.mac)
		}
	}
	if _, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x","anycastGateway":"yes"}`)); err == nil {
		t.Error("anycastGateway as a string accepted")
	}
}

func TestParseConfigEgress(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x","vrf":{"table":100,"egress":true}}`))
	if err != nil || !conf.VRF.Egress {
		t.Fatalf("%+v %v", conf, err)
	}
	if naming.EgressMark(100) != 0x640000 {
		t.Errorf("mark %#x", naming.EgressMark(100))
	}
	_, err = parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x","vrf":{"table":70000,"egress":true}}`))
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 7 {
		t.Errorf("table 70000 with egress: %v, want code 7", err)
	}
}

func TestParseConfigNodeAddresses(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x","bridge":{"nodeAddresses":["10.244.1.1/16","fd00:10:244:1::1/56"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range conf.Bridge.nodeAddrs {
		got = append(got, a.String())
	}
	if len(got) != 2 || got[0] != "10.244.1.1/16" || got[1] != "fd00:10:244:1::1/56" || len(conf.Bridge.nodeAddrs[0].IP) != 4 {
		t.Errorf("node addresses %v, want [10.244.1.1/16 fd00:10:244:1::1/56] (IPv4 in 4 bytes)", got)
	}
	// A node address needs a bridge MAC of the node's own: refused with
	// bridge.mac or anycastGateway, naming both keys and the fix.
	for key, in := range map[string]string{
		"bridge.mac":     `"bridge":{"mac":"02:00:0a:f4:00:01","nodeAddresses":["10.244.1.1/16"]}`,
		"anycastGateway": `"anycastGateway":true,"bridge":{"nodeAddresses":["10.244.1.1/16"]}`,
	} {
		_, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"red","type":"x",` + in + `}`))
		var te *types.Error
		if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
			t.Fatalf("%s with nodeAddresses: %v, want code 7", key, err)
		}
		for _, want := range []string{"bridge.nodeAddresses", key, "Remove " + key} {
			if !strings.Contains(te.Msg, want) {
				t.Errorf("%s: message %q lacks %q", key, te.Msg, want)
			}
		}
	}
}
