package bum

import (
	"errors"
	"testing"
)

func TestSelect(t *testing.T) {
	for _, c := range []struct {
		name string
		keys Keys
		want Mode
	}{
		{"no key: static peers, none yet", Keys{}, StaticPeers},
		{"remotes", Keys{Remotes: []string{"10.0.0.1"}}, StaticPeers},
		{"group", Keys{Group: "239.1.1.1"}, Multicast},
		{"evpn", Keys{EVPN: true}, EVPN},
		{"empty remotes list with group", Keys{Group: "239.1.1.1", Remotes: []string{}}, Multicast},
	} {
		got, err := c.keys.Select()
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	for _, k := range []Keys{
		{Group: "239.1.1.1", Remotes: []string{"10.0.0.1"}},
		{Group: "239.1.1.1", EVPN: true},
		{Remotes: []string{"10.0.0.1"}, EVPN: true},
		{Group: "239.1.1.1", Remotes: []string{"10.0.0.1"}, EVPN: true},
	} {
		m, err := k.Select()
		if !errors.Is(err, ErrAlternatives) || m != "" {
			t.Errorf("%+v: %q, %v; want ErrAlternatives", k, m, err)
		}
	}
	// The message vrf-vxlan-bridge has always given.
	if ErrAlternatives.Error() != "vxlan: group, remotes and evpn are alternatives; set at most one" {
		t.Errorf("message %q", ErrAlternatives)
	}
}

// TestKeysOf: the installer's generic map gives the same mode as the
// plugin's typed keys; values of the wrong type count as absent.
func TestKeysOf(t *testing.T) {
	for _, c := range []struct {
		vx   map[string]any
		want Mode
		err  bool
	}{
		{map[string]any{"vni": 1}, StaticPeers, false},
		{map[string]any{"remotes": []any{"10.0.0.1"}}, StaticPeers, false},
		{map[string]any{"group": "239.1.1.1"}, Multicast, false},
		{map[string]any{"evpn": true}, EVPN, false},
		{map[string]any{"evpn": false, "group": ""}, StaticPeers, false},
		{map[string]any{"evpn": "yes"}, StaticPeers, false},
		{map[string]any{"group": 239}, StaticPeers, false},
		{map[string]any{"group": "239.1.1.1", "remotes": []any{1}}, "", true},
		{map[string]any{"evpn": true, "remotes": []any{"10.0.0.1"}}, "", true},
	} {
		got, err := KeysOf(c.vx).Select()
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%v: %q, %v; want %q (error %v)", c.vx, got, err, c.want, c.err)
		}
	}
}
