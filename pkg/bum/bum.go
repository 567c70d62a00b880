// Package bum names the ways vrf-vxlan-bridge's VXLAN device carries
// broadcast, unknown-unicast and multicast (BUM) frames to the other nodes,
// and says which one a vxlan config section selects. vrf-vxlan-bridge
// resolves the selected mode into its own type (attributes and kernel
// work); the installer and the agent ask Select instead of reading the
// keys themselves.
package bum

import (
	"errors"
	"fmt"
)

// Mode is a BUM mode, named after the vxlan key that selects it.
type Mode string

// The BUM modes.
const (
	// StaticPeers: head-end replication to the addresses of
	// vxlan.remotes (one all-zero FDB entry each). The mode of a vxlan
	// section that sets neither group nor evpn; the installer fills the
	// list with the other nodes' addresses.
	StaticPeers Mode = "remotes"
	// Multicast: flooding to the multicast group vxlan.group.
	Multicast Mode = "group"
	// EVPN: an EVPN speaker (FRR) fills the FDB; no learning.
	EVPN Mode = "evpn"
)

// ErrAlternatives is Select's error for a section that sets more than one
// mode's key.
var ErrAlternatives = errors.New("vxlan: group, remotes and evpn are alternatives; set at most one")

// Keys are the keys of a vxlan section that select its mode, as
// vrf-vxlan-bridge's config declares them (embedded in its vxlan section).
type Keys struct {
	Group   string   `json:"group,omitempty"`
	Remotes []string `json:"remotes,omitempty"`
	EVPN    bool     `json:"evpn,omitempty"`
}

// Select is the mode the keys select: the one whose key is set, else
// StaticPeers (with no peers yet); ErrAlternatives when more than one is.
func (k Keys) Select() (Mode, error) {
	var set []Mode
	if k.Group != "" {
		set = append(set, Multicast)
	}
	if len(k.Remotes) > 0 {
		set = append(set, StaticPeers)
	}
	if k.EVPN {
		set = append(set, EVPN)
	}
	switch len(set) {
	case 0:
		return StaticPeers, nil
	case 1:
		return set[0], nil
	default:
		return "", ErrAlternatives
	}
}

// KeysOf reads the mode keys of a vxlan section decoded into a generic map
// (as the installer holds the cluster's conflist). A value of the wrong
// type counts as absent, a list element that is not a string as present:
// vrf-vxlan-bridge refuses either when it parses the section.
func KeysOf(vx map[string]any) Keys {
	var k Keys
	k.Group, _ = vx["group"].(string)
	k.EVPN, _ = vx["evpn"].(bool)
	if rs, ok := vx["remotes"].([]any); ok {
		for _, r := range rs {
			k.Remotes = append(k.Remotes, fmt.Sprint(r))
		}
	}
	return k
}
