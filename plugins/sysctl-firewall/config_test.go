package main

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfig(t *testing.T) {
	good := `{"cniVersion":"1.0.0","name":"n","type":"sysctl-firewall",
		"sysctls":{"net.ipv4.conf.IFNAME.rp_filter":"1","net.ipv6.conf.all.disable_ipv6":"0"},
		"hostSysctls":{"net/ipv4/conf/IFNAME/proxy_arp":"0"},
		"masquerade":true,"antiSpoofing":true,"uplink":"eth0"}`
	conf, err := parseConfig([]byte(good))
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	if !conf.Masquerade || !conf.AntiSpoofing || conf.Uplink != "eth0" || len(conf.Sysctls) != 2 || len(conf.HostSysctls) != 1 {
		t.Fatalf("parsed %+v", conf)
	}
	minimal, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"sysctl-firewall"}`))
	if err != nil || minimal.Masquerade || minimal.AntiSpoofing || minimal.Uplink != "" {
		t.Fatalf("minimal: %+v %v", minimal, err)
	}

	for name, tc := range map[string]struct {
		conf string
		code uint
	}{
		"malformed":           {`{"name":`, types.ErrDecodingFailure},
		"kernel key":          {`{"name":"n","sysctls":{"kernel.pid_max":"1"}}`, types.ErrInvalidNetworkConfig},
		"escape":              {`{"name":"n","sysctls":{"net/../kernel/x":"1"}}`, types.ErrInvalidNetworkConfig},
		"host kernel key":     {`{"name":"n","hostSysctls":{"kernel.hostname":"x"}}`, types.ErrInvalidNetworkConfig},
		"empty element":       {`{"name":"n","sysctls":{"net..ipv4":"1"}}`, types.ErrInvalidNetworkConfig},
		"duplicate":           {`{"name":"n","sysctls":{"net.ipv4.ip_forward":"1","net/ipv4/ip_forward":"1"}}`, types.ErrInvalidNetworkConfig},
		"duplicate ifname":    {`{"name":"n","sysctls":{"net.ipv4.conf.IFNAME.rp_filter":"1","net.ipv4.conf.eth0.rp_filter":"1"}}`, types.ErrInvalidNetworkConfig},
		"bad uplink":          {`{"name":"n","uplink":"a/b"}`, types.ErrInvalidNetworkConfig},
		"long uplink":         {`{"name":"n","uplink":"abcdefghijklmnop"}`, types.ErrInvalidNetworkConfig},
		"sysctl not string":   {`{"name":"n","sysctls":{"net.ipv4.ip_forward":1}}`, types.ErrInvalidNetworkConfig},
		"masquerade not bool": {`{"name":"n","masquerade":"yes"}`, types.ErrInvalidNetworkConfig},
		"zone too big":        {`{"name":"n","conntrackZone":65536}`, types.ErrInvalidNetworkConfig},
		"zone negative":       {`{"name":"n","conntrackZone":-1}`, types.ErrInvalidNetworkConfig},
		"zone not a number":   {`{"name":"n","conntrackZone":"410"}`, types.ErrInvalidNetworkConfig},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.conf))
			var e *types.Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("want code %d, got %v", tc.code, err)
			}
		})
	}
}

func TestResolveSysctls(t *testing.T) {
	got, err := resolveSysctls(map[string]string{
		"net.ipv4.conf.IFNAME.rp_filter": "2",
		"net.ipv4.ip_forward":            "1",
	}, "eth0.100")
	if err != nil {
		t.Fatal(err)
	}
	want := []kv{{"net/ipv4/conf/eth0.100/rp_filter", "2"}, {"net/ipv4/ip_forward", "1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Distinct keys that collide only after IFNAME substitution.
	if _, err := resolveSysctls(map[string]string{
		"net.ipv4.conf.IFNAME.rp_filter": "1",
		"net.ipv4.conf.vxabc.rp_filter":  "1",
	}, "vxabc"); err == nil {
		t.Fatal("duplicate after substitution accepted")
	}
}
