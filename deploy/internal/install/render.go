package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net"

	"github.com/containernetworking/cni/libcni"
)

// NodeView is the resolved per-node input of Render.
type NodeView struct {
	Name     string
	Address  net.IP
	PodCIDRs []*net.IPNet
	Uplink   string
	// Listed: the node is in the cluster config's node list.
	Listed bool
	// Peers: the other listed nodes' addresses, of the family of Address,
	// in the order of the node list.
	Peers []net.IP
	// Unaddressed: listed nodes (other than this one) without an address.
	Unaddressed []string
}

// Resolve combines the cluster config's entry for l.Name with what the node
// says about itself. When both give an address or pod CIDRs they must agree:
// a node whose VTEP address differs from what its peers were told would
// silently lose its BUM traffic. lookup (may be nil) resolves the node name
// when neither gives an address.
func (c *Cluster) Resolve(l Local, lookup func(string) ([]net.IP, error)) (*NodeView, error) {
	if l.Name == "" {
		return nil, fmt.Errorf("node name unknown: set NODE_NAME (the DaemonSet passes spec.nodeName)")
	}
	v := &NodeView{Name: l.Name}
	var entry *Node
	for i := range c.Nodes {
		if c.Nodes[i].Name == l.Name {
			entry = &c.Nodes[i]
		}
	}
	addr := l.Address
	cidrs := l.PodCIDRs
	if entry != nil {
		v.Listed = true
		v.Uplink = entry.Uplink
		if entry.Address != "" {
			if addr != "" && !net.ParseIP(addr).Equal(net.ParseIP(entry.Address)) {
				return nil, fmt.Errorf("node %q: NODE_IP %s differs from the cluster config's address %s; the other nodes would use the wrong VTEP address: fix the cluster config", l.Name, addr, entry.Address)
			}
			addr = entry.Address
		}
		if len(entry.PodCIDRs) > 0 {
			if len(cidrs) > 0 && !sameCIDRs(cidrs, entry.PodCIDRs) {
				return nil, fmt.Errorf("node %q: POD_CIDR %v differs from the cluster config's podCIDRs %v", l.Name, cidrs, entry.PodCIDRs)
			}
			cidrs = entry.PodCIDRs
		}
	}
	if addr == "" && lookup != nil {
		ips, err := lookup(l.Name)
		if err != nil {
			return nil, fmt.Errorf("node %q: no address in the cluster config or NODE_IP, and resolving the name failed: %w", l.Name, err)
		}
		for _, ip := range ips {
			if ip.IsGlobalUnicast() {
				addr = ip.String()
				break
			}
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("node %q: address unknown: set NODE_IP or the node's address in the cluster config", l.Name)
	}
	v.Address = net.ParseIP(addr)
	if v.Address == nil || !v.Address.IsGlobalUnicast() {
		return nil, fmt.Errorf("node %q: address %q is not a unicast IP address", l.Name, addr)
	}
	if v4 := v.Address.To4(); v4 != nil {
		v.Address = v4
	}
	for _, s := range cidrs {
		n, err := parseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("node %q: pod CIDR: %w", l.Name, err)
		}
		v.PodCIDRs = append(v.PodCIDRs, n)
	}
	for _, n := range c.Nodes {
		if n.Name == l.Name {
			continue
		}
		if n.Address == "" {
			v.Unaddressed = append(v.Unaddressed, n.Name)
			continue
		}
		ip := net.ParseIP(n.Address)
		if (ip.To4() != nil) != (v.Address.To4() != nil) || ip.Equal(v.Address) {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		v.Peers = append(v.Peers, ip)
	}
	return v, nil
}

func sameCIDRs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, err1 := parseCIDR(a[i])
		y, err2 := parseCIDR(b[i])
		if err1 != nil || err2 != nil || x.String() != y.String() {
			return false
		}
	}
	return true
}

// Render fills this node's values into the cluster's conflist:
//   - infra-ensure: `localAddress` = the node address; `uplink` = the node's
//     uplink when the cluster config gives one;
//   - vrf-vxlan-bridge with a `vxlan` object: `vxlan.local` = the node
//     address; unless `vxlan.group` or `vxlan.evpn` chooses another BUM mode,
//     `vxlan.remotes` = the other nodes' addresses (same family);
//   - every plugin's `ipam.ranges` (lockfile-ipam as a stage or delegated,
//     host-local): each range set holds one range whose subnet contains one
//     of the node's pod CIDRs; it gets rangeStart/rangeEnd spanning that pod
//     CIDR (its first address + 1 to its broadcast − 1, or its last address
//     for IPv6), so every node allocates from its own part of the shared subnet.
//   - vrf-vxlan-bridge with a `vxlan` object and a bridge MAC of the node's
//     own (no `bridge.mac`, no `anycastGateway`): `bridge.nodeAddresses` =
//     per family, the first host address of the node's pod CIDR (the next
//     one when that is the range's gateway) with the shared subnet's prefix
//     length, and the range starts after it. A `nodeAddresses` key in the
//     cluster config is left alone when empty (`[]` turns the node
//     addresses off) and refused otherwise: the conflist is the same on
//     every node, and so would the address be.
//
// The output is deterministic (keys sorted) and loads with libcni.
func Render(c *Cluster, v *NodeView) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(c.Conflist))
	dec.UseNumber()
	var list map[string]any
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("cluster config: conflist: %w", err)
	}
	plugins, ok := list["plugins"].([]any)
	if !ok || len(plugins) == 0 {
		return nil, fmt.Errorf("cluster config: conflist has no plugins list")
	}
	var bridge map[string]any // the vrf-vxlan-bridge plugin that gets node addresses; nil: none
	for i, p := range plugins {
		if pm, ok := p.(map[string]any); ok && pm["type"] == "vrf-vxlan-bridge" {
			want, err := wantsNodeAddresses(pm, fmt.Sprintf("conflist plugins[%d] (vrf-vxlan-bridge)", i))
			if err != nil {
				return nil, err
			}
			if want {
				bridge = pm
			}
		}
	}
	nodeAddrs := map[bool]string{} // by family (IPv4: true)
	for i, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("cluster config: conflist plugins[%d] is not an object", i)
		}
		typ, _ := pm["type"].(string)
		where := fmt.Sprintf("conflist plugins[%d] (%s)", i, typ)
		switch typ {
		case "infra-ensure":
			pm["localAddress"] = v.Address.String()
			if v.Uplink != "" {
				pm["uplink"] = v.Uplink
			}
		case "vrf-vxlan-bridge":
			if vx, ok := pm["vxlan"].(map[string]any); ok {
				if err := fillVXLAN(vx, v, where); err != nil {
					return nil, err
				}
			}
		}
		if ipam, ok := pm["ipam"].(map[string]any); ok {
			addrs := nodeAddrs
			if bridge == nil {
				addrs = nil
			}
			if err := fillRanges(ipam, v, where, addrs); err != nil {
				return nil, err
			}
		}
	}
	if bridge != nil && len(nodeAddrs) > 0 {
		var list []any
		for _, v4 := range []bool{true, false} {
			if a, ok := nodeAddrs[v4]; ok {
				list = append(list, a)
			}
		}
		b, ok := bridge["bridge"].(map[string]any)
		if !ok {
			b = map[string]any{}
			bridge["bridge"] = b
		}
		b["nodeAddresses"] = list
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(list); err != nil {
		return nil, fmt.Errorf("render conflist: %w", err)
	}
	if _, err := libcni.ConfListFromBytes(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("rendered conflist for node %q does not load with libcni: %w", v.Name, err)
	}
	return buf.Bytes(), nil
}

func fillVXLAN(vx map[string]any, v *NodeView, where string) error {
	vx["local"] = v.Address.String()
	if g, _ := vx["group"].(string); g != "" {
		return nil
	}
	if e, _ := vx["evpn"].(bool); e {
		return nil
	}
	if !v.Listed {
		return fmt.Errorf("%s: vxlan remotes mode: node %q is not in the cluster config's nodes, so its peers would not send to it: add it", where, v.Name)
	}
	if len(v.Unaddressed) > 0 {
		return fmt.Errorf("%s: vxlan remotes mode: nodes %v have no address in the cluster config", where, v.Unaddressed)
	}
	remotes := make([]any, 0, len(v.Peers))
	for _, p := range v.Peers {
		remotes = append(remotes, p.String())
	}
	vx["remotes"] = remotes
	return nil
}

// wantsNodeAddresses says whether the vrf-vxlan-bridge plugin pm gets
// node addresses: not without VXLAN, not with an anycast bridge MAC
// (bridge.mac, anycastGateway), not with nodeAddresses: [] in the cluster
// config; a non-empty list there is an error.
func wantsNodeAddresses(pm map[string]any, where string) (bool, error) {
	if _, ok := pm["vxlan"].(map[string]any); !ok {
		return false, nil
	}
	if a, _ := pm["anycastGateway"].(bool); a {
		return false, nil
	}
	b, ok := pm["bridge"].(map[string]any)
	if !ok {
		_, present := pm["bridge"]
		return !present, nil // present but not an object: the plugin refuses it
	}
	if m, _ := b["mac"].(string); m != "" {
		return false, nil
	}
	if na, present := b["nodeAddresses"]; present {
		if l, ok := na.([]any); ok && len(l) == 0 {
			return false, nil
		}
		return false, fmt.Errorf("%s: bridge.nodeAddresses is a per-node value and the conflist is the same on every node: leave it out (each node gets the first address of its pod CIDR) or set it to [] (no node addresses)", where)
	}
	return true, nil
}

// fillRanges sets each range's rangeStart/rangeEnd from the node's pod
// CIDR. With nodeAddrs (not nil) the first host address of the pod CIDR
// (the next one when that is the range's gateway) is the node's own, with
// the subnet's prefix length, recorded once per family, and the range
// starts after it.
func fillRanges(ipam map[string]any, v *NodeView, where string, nodeAddrs map[bool]string) error {
	if _, legacy := ipam["subnet"]; legacy {
		return fmt.Errorf("%s: ipam uses the legacy single-range form (subnet); write it as ranges: [[{subnet, gateway}]] so a per-node range can be filled in", where)
	}
	raw, ok := ipam["ranges"]
	if !ok {
		return nil
	}
	sets, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%s: ipam.ranges is not a list of range sets", where)
	}
	for si, s := range sets {
		set, ok := s.([]any)
		if !ok || len(set) != 1 {
			return fmt.Errorf("%s: ipam.ranges[%d]: a per-node range needs exactly one range in the set", where, si)
		}
		r, ok := set[0].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: ipam.ranges[%d][0] is not an object", where, si)
		}
		subStr, _ := r["subnet"].(string)
		sub, err := parseCIDR(subStr)
		if err != nil {
			return fmt.Errorf("%s: ipam.ranges[%d][0].subnet: %w", where, si, err)
		}
		found := -1
		for ci, pc := range v.PodCIDRs {
			if (pc.IP.To4() != nil) != (sub.IP.To4() != nil) {
				continue
			}
			so, _ := sub.Mask.Size()
			po, _ := pc.Mask.Size()
			if sub.Contains(pc.IP) && po >= so {
				found = ci
				break
			}
		}
		if found < 0 {
			return fmt.Errorf("%s: ipam.ranges[%d]: node %q has no pod CIDR inside subnet %s (pod CIDRs %v): set its podCIDRs in the cluster config or POD_CIDR", where, si, v.Name, sub, v.PodCIDRs)
		}
		start, end, err := hostRange(v.PodCIDRs[found])
		if err != nil {
			return fmt.Errorf("%s: node %q: %w", where, v.Name, err)
		}
		if nodeAddrs != nil {
			v4 := sub.IP.To4() != nil
			gw := next(sub.IP) // lockfile-ipam's and host-local's default
			if g, _ := r["gateway"].(string); g != "" {
				gw = net.ParseIP(g)
			}
			node := start
			if node.Equal(gw) {
				node = next(node)
			}
			start = next(node)
			if bigIP(start).Cmp(bigIP(end)) > 0 {
				return fmt.Errorf("%s: node %q: pod CIDR %s has no room for the node address and a pod; use a larger pod CIDR or set bridge.nodeAddresses to []", where, v.Name, v.PodCIDRs[found])
			}
			if _, done := nodeAddrs[v4]; !done {
				ones, _ := sub.Mask.Size()
				nodeAddrs[v4] = fmt.Sprintf("%s/%d", node, ones)
			}
		}
		r["rangeStart"] = start.String()
		r["rangeEnd"] = end.String()
	}
	return nil
}

// hostRange is the first and last address a node may hand out from its pod
// CIDR: network+1 .. broadcast−1 (IPv4), network+1 .. last (IPv6).
func hostRange(n *net.IPNet) (net.IP, net.IP, error) {
	ones, bits := n.Mask.Size()
	if bits == 32 && ones > 30 || bits == 128 && ones > 126 {
		return nil, nil, fmt.Errorf("pod CIDR %s is too small (at most /30 or /126)", n)
	}
	base := new(big.Int).SetBytes(n.IP)
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits-ones))
	last := new(big.Int).Sub(new(big.Int).Add(base, size), big.NewInt(1))
	if bits == 32 {
		last.Sub(last, big.NewInt(1))
	}
	start := new(big.Int).Add(base, big.NewInt(1))
	return toIP(start, bits/8), toIP(last, bits/8), nil
}

func toIP(i *big.Int, n int) net.IP {
	b := i.Bytes()
	ip := make(net.IP, n)
	copy(ip[n-len(b):], b)
	return ip
}

func bigIP(ip net.IP) *big.Int {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return new(big.Int).SetBytes(ip)
}

// next is the address after ip.
func next(ip net.IP) net.IP {
	n := len(ip)
	if v4 := ip.To4(); v4 != nil {
		n = 4
	}
	return toIP(new(big.Int).Add(bigIP(ip), big.NewInt(1)), n)
}
