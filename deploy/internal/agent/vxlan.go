package agent

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/vxvrf/cni/pkg/bum"
	"github.com/vxvrf/cni/pkg/naming"
)

// floodSpec is what the agent programs for one VXLAN device in remotes
// mode: the device (named from its VNI like vrf-vxlan-bridge does) and its
// peers (the rendered vxlan.remotes without this node's own address).
type floodSpec struct {
	Network string
	Device  string
	Peers   []net.IP
}

// floodSpecs reads a rendered conflist: one spec per vrf-vxlan-bridge in
// the static peers mode (pkg/bum; a vxlan object without group or evpn).
// The other modes have no flood list for the agent to keep.
func floodSpecs(conflist []byte) ([]floodSpec, error) {
	var list struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type  string `json:"type"`
			VXLAN *struct {
				VNI   uint32 `json:"vni"`
				Local string `json:"local"`
				bum.Keys
			} `json:"vxlan"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		return nil, fmt.Errorf("read rendered conflist: %w", err)
	}
	var out []floodSpec
	for _, p := range list.Plugins {
		if p.Type != "vrf-vxlan-bridge" || p.VXLAN == nil {
			continue
		}
		if mode, err := p.VXLAN.Select(); err != nil || mode != bum.StaticPeers {
			continue
		}
		local := net.ParseIP(p.VXLAN.Local)
		s := floodSpec{Network: list.Name, Device: naming.VXLANName(p.VXLAN.VNI), Peers: []net.IP{}}
		for _, r := range p.VXLAN.Remotes {
			ip := net.ParseIP(r)
			if ip == nil {
				return nil, fmt.Errorf("rendered vxlan.remotes: %q is not an IP address", r)
			}
			if ip.Equal(local) {
				continue
			}
			s.Peers = append(s.Peers, ip)
		}
		out = append(out, s)
	}
	return out, nil
}
