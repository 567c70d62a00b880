package inspect

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestConfigMode: the BUM mode inspect reports is the one pkg/bum selects.
func TestConfigMode(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		vxlan, mode string
		peers       []string
	}{
		{`{"vni":1,"remotes":["10.0.0.1","10.0.0.2"]}`, "remotes", []string{"10.0.0.1", "10.0.0.2"}},
		{`{"vni":1,"group":"239.1.1.1"}`, "group", []string{"239.1.1.1"}},
		{`{"vni":1,"evpn":true}`, "evpn", nil},
		{`{"vni":1}`, "learning", nil},
		{`{"vni":1,"evpn":true,"remotes":["10.0.0.1"]}`, "invalid", []string{"10.0.0.1"}},
	} {
		file := filepath.Join(dir, "n.conflist")
		conf := `{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"vrf-vxlan-bridge","vxlan":` + c.vxlan + `}]}`
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nc, err := loadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		if nc.mode != c.mode || !slices.Equal(nc.peers, c.peers) {
			t.Errorf("%s: mode %q peers %v; want %q %v", c.vxlan, nc.mode, nc.peers, c.mode, c.peers)
		}
	}
}
