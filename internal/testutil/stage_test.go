package testutil

import (
	"encoding/json"
	"net"
	"reflect"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// TestConfig: With, Keys and Prev return copies (a base config serves
// every case), Prev decodes raw JSON and converts a result to the
// config's cniVersion.
func TestConfig(t *testing.T) {
	base := Conf("0.4.0", "net", "veth-attach")
	a := base.With("mtu", 1400)
	b := base.Keys(map[string]any{"bridge": "br0", "cniVersion": "1.0.0"})
	if _, ok := base["mtu"]; ok || base["cniVersion"] != "0.4.0" || len(base) != 3 {
		t.Fatalf("base changed: %v", base)
	}
	if a["mtu"] != 1400 || b["bridge"] != "br0" || b["cniVersion"] != "1.0.0" {
		t.Fatalf("a %v, b %v", a, b)
	}

	raw := base.Prev([]byte(`{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}]}`))
	var got map[string]any
	if err := json.Unmarshal(raw.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"cniVersion": "0.4.0", "name": "net", "type": "veth-attach",
		"prevResult": map[string]any{"cniVersion": "0.4.0", "interfaces": []any{map[string]any{"name": "eth0"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Prev(raw): %v, want %v", got, want)
	}

	if b := WithPrev(t, base.Bytes(), []byte(`{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}]}`)); string(b) != string(raw.Bytes()) {
		t.Fatalf("WithPrev: %s, want %s", b, raw.Bytes())
	}

	idx := 0
	res := &current.Result{CNIVersion: "1.1.0", Interfaces: []*current.Interface{{Name: "eth0"}},
		IPs: []*current.IPConfig{{Interface: &idx, Address: net.IPNet{IP: net.IPv4(10, 0, 0, 2), Mask: net.CIDRMask(24, 32)}}}}
	conv := base.Prev(res)["prevResult"].(map[string]any)
	ips := conv["ips"].([]any)
	if conv["cniVersion"] != "0.4.0" || ips[0].(map[string]any)["version"] != "4" {
		t.Fatalf("Prev(result) not at the config's version 0.4.0: %v", conv)
	}
}
