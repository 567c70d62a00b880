package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParseTeardown: the config parser and the teardown reader never panic,
// and refuse only with a CNI error of code 6 or 7. Seeded from the
// sysctl-firewall objects of the shipped conflists.
func FuzzParseTeardown(f *testing.F) {
	files, _ := filepath.Glob("../../conflist/*.conflist")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var list struct {
			Plugins []map[string]any `json:"plugins"`
		}
		if json.Unmarshal(b, &list) != nil {
			continue
		}
		for _, p := range list.Plugins {
			if p["type"] == plugin {
				p["name"], p["cniVersion"] = "net", "1.1.0"
				seed, _ := json.Marshal(p)
				f.Add(seed)
			}
		}
	}
	f.Add([]byte(`{"name":"n","hostSysctls":{"net.ipv4.conf.IFNAME.rp_filter":"1"},"nodeSysctls":{"net.ipv4.ip_forward":"1"},"backend":"nftables","conntrackZone":5}`))
	f.Add([]byte(`{"name":"n","prevResult":{"interfaces":[null],"ips":[null]},"masquerade":"x"}`))
	f.Fuzz(func(t *testing.T, stdin []byte) {
		for what, err := range map[string]error{
			"parseConfig":   func() error { _, err := parseConfig(stdin); return err }(),
			"parseTeardown": func() error { _, err := parseTeardown(stdin); return err }(),
		} {
			if err == nil {
				continue
			}
			var e *types.Error
			if !errors.As(err, &e) || (e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig) {
				t.Fatalf("%s(%q): %v, want a CNI error 6 or 7", what, stdin, err)
			}
		}
	})
}
