package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Limits and defaults of the configuration.
const (
	MaxVNI           = 1<<24 - 1
	DefaultVXLANPort = 4789
	MaxTable         = 1<<32 - 1
	// DefaultMTU is the bridge MTU when no uplink can be found.
	DefaultMTU = 1500
	// VXLAN encapsulation overhead: outer Ethernet 14 + IP (20 or 40) +
	// UDP 8 + VXLAN 8.
	OverheadIPv4 = 50
	OverheadIPv6 = 70
)

// reservedTables are the kernel's default (253), main (254) and local (255) tables.
var reservedTables = map[int64]string{253: "default", 254: "main", 255: "local"}

// NetConf is the vrf-vxlan-bridge configuration.
type NetConf struct {
	types.PluginConf
	VRF    *VRFConf   `json:"vrf,omitempty"`
	Bridge BridgeConf `json:"bridge,omitempty"`
	VXLAN  *VXLANConf `json:"vxlan,omitempty"`
	// AnycastGateway gives every node's bridge the same gateway MAC
	// (bridge.mac, else naming.AnycastGatewayMAC) and keeps ARP/ND for
	// the gateway on the node; see anycast().
	AnycastGateway bool `json:"anycastGateway,omitempty"`
}

// anycast is whether the bridge is an anycast gateway: anycastGateway, or a
// fixed bridge.mac (the same MAC on every node needs the same protections).
func (c *NetConf) anycast() bool { return c.AnycastGateway || c.Bridge.mac != nil }

// VRFConf configures the network's VRF; absent means no VRF.
type VRFConf struct {
	Name  string `json:"name,omitempty"`
	Table int64  `json:"table"`
	// Egress routes the VRF's traffic for outside the overlay through the
	// node's uplink (see egress.go).
	Egress bool `json:"egress,omitempty"`
}

// BridgeConf configures the network's bridge.
type BridgeConf struct {
	Name string `json:"name,omitempty"`
	MTU  int    `json:"mtu,omitempty"`
	MAC  string `json:"mac,omitempty"`
	// NodeAddresses are this node's own addresses on the bridge, at most
	// one per family, with the prefix length of the network's subnet
	// (see ensureNodeAddresses).
	NodeAddresses []string `json:"nodeAddresses,omitempty"`

	mac       net.HardwareAddr
	nodeAddrs []*net.IPNet
}

// VXLANConf configures the VXLAN device; absent means a single-node network.
type VXLANConf struct {
	VNI      int64    `json:"vni"`
	Port     int      `json:"port,omitempty"`
	Learning *bool    `json:"learning,omitempty"`
	Group    string   `json:"group,omitempty"`
	Remotes  []string `json:"remotes,omitempty"`
	EVPN     bool     `json:"evpn,omitempty"`
	Local    string   `json:"local,omitempty"`
	Dev      string   `json:"dev,omitempty"`

	group   net.IP
	remotes []net.IP
	local   net.IP
}

// Name is the VXLAN device name of the configured VNI.
func (v *VXLANConf) Name() string { return naming.VXLANName(uint32(v.VNI)) }

// learning is the effective learning flag: the configured one, else on
// (off with evpn).
func (v *VXLANConf) learning() bool {
	if v.Learning != nil {
		return *v.Learning
	}
	return !v.EVPN
}

// parseConfig decodes stdin, sets the defaults and validates. The bridge
// MTU default depends on the uplink and is settled in the node namespace
// (see bridgeMTU).
func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cniutil.DecodeStrict("vrf-vxlan-bridge", stdin, conf); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*NetConf, error) {
		return nil, cniutil.InvalidConfig(fmt.Errorf(format, a...))
	}
	if conf.VRF != nil {
		if conf.VRF.Name == "" {
			conf.VRF.Name = naming.VRFName(conf.Name)
		}
		if utils.ValidateInterfaceName(conf.VRF.Name) != nil {
			return bad("vrf.name %q is not a valid interface name", conf.VRF.Name)
		}
		t := conf.VRF.Table
		if t < 1 || t > MaxTable {
			return bad("vrf.table %d: must be 1..%d", t, int64(MaxTable))
		}
		if r, ok := reservedTables[t]; ok {
			return bad("vrf.table %d is the kernel's reserved %s table", t, r)
		}
		if conf.VRF.Egress && t > MaxEgressTable {
			return bad("vrf.table %d: with vrf.egress the table is also the conntrack zone and mark, at most %d", t, MaxEgressTable)
		}
	}
	if conf.Bridge.Name == "" {
		conf.Bridge.Name = naming.BridgeName(conf.Name)
	}
	if utils.ValidateInterfaceName(conf.Bridge.Name) != nil {
		return bad("bridge.name %q is not a valid interface name", conf.Bridge.Name)
	}
	if conf.Bridge.MTU != 0 && (conf.Bridge.MTU < 68 || conf.Bridge.MTU > 65535) {
		return bad("bridge.mtu %d: must be 68..65535", conf.Bridge.MTU)
	}
	if conf.Bridge.MAC != "" {
		mac, err := net.ParseMAC(conf.Bridge.MAC)
		if err != nil || len(mac) != 6 {
			return bad("bridge.mac %q is not an Ethernet MAC address", conf.Bridge.MAC)
		}
		if mac[0]&1 != 0 {
			return bad("bridge.mac %s is a multicast address", conf.Bridge.MAC)
		}
		conf.Bridge.mac = mac
	}
	if err := parseNodeAddresses(conf); err != nil {
		return nil, err
	}
	if conf.AnycastGateway && conf.Bridge.mac == nil {
		conf.Bridge.mac = naming.AnycastGatewayMAC(conf.Name)
	}
	if conf.VRF != nil && conf.VRF.Name == conf.Bridge.Name {
		return bad("vrf.name and bridge.name are both %q", conf.VRF.Name)
	}
	if v := conf.VXLAN; v != nil {
		if v.VNI < 1 || v.VNI > MaxVNI {
			return bad("vxlan.vni %d: must be 1..%d", v.VNI, MaxVNI)
		}
		if v.Port == 0 {
			v.Port = DefaultVXLANPort
		}
		if v.Port < 1 || v.Port > 65535 {
			return bad("vxlan.port %d: must be 1..65535", v.Port)
		}
		modes := 0
		if v.Group != "" {
			modes++
			v.group = net.ParseIP(v.Group)
			if v.group == nil || !v.group.IsMulticast() {
				return bad("vxlan.group %q is not a multicast IP address", v.Group)
			}
		}
		if len(v.Remotes) > 0 {
			modes++
			seen := map[string]bool{}
			for _, r := range v.Remotes {
				ip := net.ParseIP(r)
				if ip == nil || !ip.IsGlobalUnicast() {
					return bad("vxlan.remotes: %q is not a unicast IP address", r)
				}
				if !seen[ip.String()] {
					seen[ip.String()] = true
					v.remotes = append(v.remotes, ip)
				}
			}
		}
		if v.EVPN {
			modes++
			if v.Learning != nil && *v.Learning {
				return bad("vxlan.learning must be false with evpn: the EVPN speaker fills the FDB")
			}
		}
		if modes > 1 {
			return bad("vxlan: group, remotes and evpn are alternatives; set at most one")
		}
		if v.Local != "" {
			v.local = net.ParseIP(v.Local)
			if v.local == nil || !v.local.IsGlobalUnicast() {
				return bad("vxlan.local %q is not a unicast IP address", v.Local)
			}
		}
		if v.Dev != "" && utils.ValidateInterfaceName(v.Dev) != nil {
			return bad("vxlan.dev %q is not a valid interface name", v.Dev)
		}
		if v.local != nil {
			for _, ip := range append([]net.IP{v.group}, v.remotes...) {
				if ip != nil && (ip.To4() == nil) != (v.local.To4() == nil) {
					return bad("vxlan: %s and local %s are of different IP families", ip, v.local)
				}
			}
		}
		if conf.VRF != nil && conf.VRF.Name == v.Name() || conf.Bridge.Name == v.Name() {
			return bad("device name %q is used twice", v.Name())
		}
	}
	return conf, nil
}

// parseNodeAddresses validates bridge.nodeAddresses: unicast addresses in
// CIDR form, at most one per family, and a bridge MAC of this node's own.
// With one MAC on every bridge (bridge.mac, anycastGateway) a pod's reply
// to the node's ARP/ND would be taken by its own node's bridge.
func parseNodeAddresses(conf *NetConf) error {
	seen := map[bool]string{}
	for _, s := range conf.Bridge.NodeAddresses {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			return cniutil.InvalidConfig(fmt.Errorf("bridge.nodeAddresses: %q is not an address with a prefix length (e.g. \"10.244.1.1/16\", the subnet's prefix)", s))
		}
		if !ip.IsGlobalUnicast() {
			return cniutil.InvalidConfig(fmt.Errorf("bridge.nodeAddresses: %s is not a unicast address", s))
		}
		v4 := ip.To4() != nil
		if v4 {
			ip = ip.To4()
		}
		if ip.Equal(n.IP) {
			return cniutil.InvalidConfig(fmt.Errorf("bridge.nodeAddresses: %s is the network address of %s, not a host address", s, n))
		}
		if o, dup := seen[v4]; dup {
			return cniutil.InvalidConfig(fmt.Errorf("bridge.nodeAddresses: %s and %s are of the same family; give at most one per family", o, s))
		}
		seen[v4] = s
		conf.Bridge.nodeAddrs = append(conf.Bridge.nodeAddrs, &net.IPNet{IP: ip, Mask: n.Mask})
	}
	if len(conf.Bridge.nodeAddrs) > 0 && conf.anycast() {
		key := "bridge.mac"
		if conf.AnycastGateway {
			key = "anycastGateway"
		}
		return cniutil.InvalidConfig(fmt.Errorf("bridge.nodeAddresses needs a bridge MAC of this node's own, but %s gives every node's bridge the same MAC: a pod's reply to the node's ARP/ND would be taken by the pod's own node. Remove %s (the bridge then keeps the random MAC it was born with) or remove bridge.nodeAddresses", key, key))
	}
	return nil
}
