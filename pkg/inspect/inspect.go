// Package inspect reads what the vxvrf chain built on a node — per network
// its VRF, bridge, VXLAN device and flood list, every attachment (host
// veth, lease, firewall objects) and what is orphaned — from the kernel,
// the lease files and the firewall, in the network namespace it runs in.
// It is the core of `vxvrf inspect` and of the demo's picture of a node.
package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/bum"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/vxlanfdb"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// DefaultLeaseDir is lockfile-ipam's default dataDir.
const DefaultLeaseDir = "/var/lib/cni/vxvrf-ipam"

// Report is one node.
type Report struct {
	Networks []*Network `json:"networks"`
	// Orphans are objects of the project that no network of the
	// configuration accounts for.
	Orphans []Orphan `json:"orphans,omitempty"`
	Links   []Link   `json:"links"`
}

// Network is one network (one conflist) on the node.
type Network struct {
	Name        string        `json:"name"`
	Conflist    string        `json:"conflist,omitempty"`
	VRF         *VRF          `json:"vrf,omitempty"`
	Bridge      Bridge        `json:"bridge"`
	VXLAN       *VXLAN        `json:"vxlan,omitempty"`
	LeaseFile   string        `json:"leaseFile,omitempty"`
	Attachments []*Attachment `json:"attachments"`
	// Firewall are the network's own firewall objects that belong to no
	// single attachment: with nftables its masquerade and conntrack-zone
	// chains and zone elements.
	Firewall []string `json:"firewall,omitempty"`
	Orphans  []Orphan `json:"orphans,omitempty"`
}

// VRF is the network's VRF device.
type VRF struct {
	Name    string `json:"name"`
	Table   uint32 `json:"table"`
	Present bool   `json:"present"`
}

// Bridge is the network's bridge.
type Bridge struct {
	Name    string   `json:"name"`
	Present bool     `json:"present"`
	MTU     int      `json:"mtu,omitempty"`
	MAC     string   `json:"mac,omitempty"`
	Addrs   []string `json:"addrs,omitempty"`
	Master  string   `json:"master,omitempty"`
	Ports   []string `json:"ports,omitempty"`
	// NodeAddrs is the configured bridge.nodeAddresses (the node's own
	// addresses on the bridge); MissingNodeAddrs those the bridge lacks.
	NodeAddrs        []string `json:"nodeAddresses,omitempty"`
	MissingNodeAddrs []string `json:"nodeAddressesMissing,omitempty"`
}

// VXLAN is the network's VXLAN device and its flood list against the
// configured peers.
type VXLAN struct {
	Name     string   `json:"name"`
	Present  bool     `json:"present"`
	VNI      int      `json:"vni"`
	Mode     string   `json:"mode"` // remotes, group, evpn (pkg/bum) or learning (none of them); invalid: more than one
	Port     int      `json:"port,omitempty"`
	MTU      int      `json:"mtu,omitempty"`
	Local    string   `json:"local,omitempty"`
	Dev      string   `json:"dev,omitempty"`
	Learning bool     `json:"learning"`
	Peers    []string `json:"configuredPeers,omitempty"`
	Flood    []string `json:"floodList,omitempty"`
	// Missing are configured peers not in the flood list; Extra are
	// flood entries no configured peer accounts for.
	Missing []string `json:"missingPeers,omitempty"`
	Extra   []string `json:"extraFlood,omitempty"`
}

// Attachment is one (container ID, ifname) of a network.
type Attachment struct {
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifname"`
	HostVeth    string   `json:"hostVeth"`
	VethPresent bool     `json:"vethPresent"`
	Lease       bool     `json:"lease"`
	PodIPs      []string `json:"podIPs,omitempty"`
	// Firewall are the attachment's firewall objects, in either backend:
	// iptables lines (its tagged jumps and its VXVRF-<hex> chains) and
	// nftables elements commented with its naming.NftTag.
	Firewall []string `json:"firewall,omitempty"`
}

// Orphan is something left behind, with how to remove it.
type Orphan struct {
	Kind string `json:"kind"` // lease-without-veth, veth-without-lease, rules-without-attachment, chain-without-attachment, chain-without-network
	What string `json:"what"`
	Fix  string `json:"fix"`
}

// Link is one link of the node, for the picture.
type Link struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"`
	State  string   `json:"state"`
	Master string   `json:"master,omitempty"`
	Alias  string   `json:"alias,omitempty"`
	MAC    string   `json:"mac,omitempty"`
	Up     bool     `json:"up"` // administratively
	MTU    int      `json:"mtu"`
	Addrs  []string `json:"addrs,omitempty"`
	Extra  string   `json:"extra,omitempty"`
}

// netConfig is what inspect reads of a conflist.
type netConfig struct {
	name, file           string
	vrfName              string
	vrfTable             uint32
	hasVRF               bool
	bridge               string
	nodeAddrs            []string
	vni, port            int
	mode                 string
	peers                []string
	leaseDir             string
	lockfileIPAM, vxvrfs bool
}

// Conflists lists the conflist files of dir (*.conflist), sorted.
func Conflists(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.conflist"))
	sort.Strings(files)
	return files, err
}

func loadConfig(file string) (*netConfig, error) {
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		return nil, err
	}
	nc := &netConfig{name: list.Name, file: file, bridge: naming.BridgeName(list.Name), leaseDir: DefaultLeaseDir}
	for _, p := range list.Plugins {
		var c struct {
			VRF *struct {
				Name  string `json:"name"`
				Table uint32 `json:"table"`
			} `json:"vrf"`
			Bridge struct {
				Name          string   `json:"name"`
				NodeAddresses []string `json:"nodeAddresses"`
			} `json:"bridge"`
			VXLAN *struct {
				VNI  int `json:"vni"`
				Port int `json:"port"`
				bum.Keys
			} `json:"vxlan"`
			IPAM struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		}
		if err := json.Unmarshal(p.Bytes, &c); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, p.Network.Type, err)
		}
		switch p.Network.Type {
		case "vrf-vxlan-bridge":
			nc.vxvrfs = true
			if c.VRF != nil {
				nc.hasVRF, nc.vrfName, nc.vrfTable = true, c.VRF.Name, c.VRF.Table
				if nc.vrfName == "" {
					nc.vrfName = naming.VRFName(list.Name)
				}
			}
			if c.Bridge.Name != "" {
				nc.bridge = c.Bridge.Name
			}
			for _, a := range c.Bridge.NodeAddresses {
				if ip, n, err := net.ParseCIDR(a); err == nil {
					a = (&net.IPNet{IP: ip, Mask: n.Mask}).String()
				}
				nc.nodeAddrs = append(nc.nodeAddrs, a)
			}
			if v := c.VXLAN; v != nil {
				nc.vni, nc.port, nc.peers = v.VNI, v.Port, v.Remotes
				switch mode, err := v.Select(); {
				case err != nil:
					nc.mode = "invalid"
				case mode == bum.Multicast:
					nc.mode, nc.peers = string(mode), []string{v.Group}
				case mode == bum.StaticPeers && len(v.Remotes) == 0:
					nc.mode = "learning"
				default:
					nc.mode = string(mode)
				}
			}
		case "lockfile-ipam":
			nc.lockfileIPAM = true
			if c.IPAM.DataDir != "" {
				nc.leaseDir = c.IPAM.DataDir
			}
		default:
			if c.IPAM.Type == "lockfile-ipam" {
				nc.lockfileIPAM = true
				if c.IPAM.DataDir != "" {
					nc.leaseDir = c.IPAM.DataDir
				}
			}
		}
	}
	return nc, nil
}

// Collect reads the node (the current network namespace) for the networks
// of the given conflists; network, when set, limits the report to it.
func Collect(conflists []string, network string) (*Report, error) {
	var configs []*netConfig
	for _, f := range conflists {
		nc, err := loadConfig(f)
		if err != nil {
			return nil, err
		}
		if network == "" || nc.name == network {
			configs = append(configs, nc)
		}
	}
	if network != "" && len(configs) == 0 {
		return nil, fmt.Errorf("no conflist defines network %q", network)
	}
	links, byName, err := readLinks()
	if err != nil {
		return nil, err
	}
	fw, err := ReadFirewall()
	if err != nil {
		return nil, err
	}
	r := &Report{Links: links}
	claimed := map[string]bool{} // attachment chains accounted for
	for _, nc := range configs {
		n, err := collectNetwork(nc, byName, fw, claimed)
		if err != nil {
			return nil, err
		}
		r.Networks = append(r.Networks, n)
	}
	if network == "" {
		r.Orphans = append(strayChains(fw.Rules, claimed), strayNft(fw.Nft, configs)...)
	}
	return r, nil
}

func collectNetwork(nc *netConfig, links map[string]netlink.Link, fw *Firewall, claimed map[string]bool) (*Network, error) {
	rules := fw.Rules
	n := &Network{Name: nc.name, Conflist: nc.file}
	if nc.hasVRF {
		n.VRF = &VRF{Name: nc.vrfName, Table: nc.vrfTable}
		if l, ok := links[nc.vrfName].(*netlink.Vrf); ok {
			n.VRF.Present, n.VRF.Table = true, l.Table
		}
	}
	n.Bridge.Name = nc.bridge
	n.Bridge.NodeAddrs = nc.nodeAddrs
	if l, ok := links[nc.bridge]; ok {
		a := l.Attrs()
		n.Bridge.Present, n.Bridge.MTU, n.Bridge.MAC = true, a.MTU, a.HardwareAddr.String()
		n.Bridge.Addrs = addrs(l)
		for _, a := range nc.nodeAddrs {
			if !slices.Contains(n.Bridge.Addrs, a) {
				n.Bridge.MissingNodeAddrs = append(n.Bridge.MissingNodeAddrs, a)
			}
		}
		n.Bridge.Master = masterName(links, a.MasterIndex)
		for name, p := range links {
			if p.Attrs().MasterIndex == a.Index {
				n.Bridge.Ports = append(n.Bridge.Ports, name)
			}
		}
		sort.Strings(n.Bridge.Ports)
	}
	if nc.vni != 0 {
		vx, err := readVXLAN(nc, links)
		if err != nil {
			return nil, err
		}
		n.VXLAN = vx
	}

	// Attachments: every host veth tagged for the network and every lease.
	atts := map[[2]string]*Attachment{}
	get := func(cid, ifName string) *Attachment {
		k := [2]string{cid, ifName}
		if atts[k] == nil {
			atts[k] = &Attachment{ContainerID: cid, IfName: ifName, HostVeth: naming.HostVethName(nc.name, cid, ifName)}
		}
		return atts[k]
	}
	for _, l := range links {
		if cid, ifName, ok := naming.ParseAttachmentTag(nc.name, l.Attrs().Alias); ok && l.Type() == "veth" {
			a := get(cid, ifName)
			a.HostVeth, a.VethPresent = l.Attrs().Name, true
		}
	}
	if nc.lockfileIPAM {
		n.LeaseFile = filepath.Join(nc.leaseDir, naming.LeaseFile(nc.name))
		st, err := readLeases(n.LeaseFile)
		if err != nil {
			return nil, err
		}
		for _, l := range st.Leases {
			a := get(l.ContainerID, l.IfName)
			a.Lease = true
			for _, ip := range l.IPs {
				a.PodIPs = append(a.PodIPs, ip.String())
			}
		}
	}
	for _, m := range tagRE.FindAllStringSubmatch(rules, -1) {
		if m[1] == nc.name {
			get(m[2], m[3]) // rules of an attachment that may have nothing else
		}
	}
	nftTags := map[string]bool{} // nftables tags of the attachments found
	for _, a := range atts {
		chain := naming.AttachmentChain(nc.name, a.ContainerID, a.IfName)
		claimed[chain] = true
		tag := naming.AttachmentTag(nc.name, a.ContainerID, a.IfName)
		for _, l := range strings.Split(rules, "\n") {
			if containsWord(l, tag) || strings.Contains(l, chain) {
				a.Firewall = append(a.Firewall, strings.TrimSpace(l))
			}
		}
		nftTag := naming.NftTag(nc.name, a.ContainerID, a.IfName)
		nftTags[nftTag] = true
		for _, o := range fw.Nft {
			if o.Set != "" && naming.NftTagOf(o.Comment) == nftTag {
				a.Firewall = append(a.Firewall, o.String())
			}
		}
		n.Attachments = append(n.Attachments, a)
	}
	// nftables: the network's own objects, and elements tagged for an
	// attachment the network has no veth, lease or iptables rule of (the
	// tag is a hash: its container ID and ifname cannot be read back).
	stray := map[string][]string{}
	var strayOrder []string
	for _, o := range fw.Nft {
		h, tag := nftOwner(o)
		switch {
		case h != nftNetHash(nc.name):
		case tag == "":
			n.Firewall = append(n.Firewall, o.String())
		case !nftTags[tag]:
			if stray[tag] == nil {
				strayOrder = append(strayOrder, tag)
			}
			stray[tag] = append(stray[tag], o.String())
		}
	}
	sort.Slice(n.Attachments, func(i, j int) bool {
		a, b := n.Attachments[i], n.Attachments[j]
		return a.ContainerID+"/"+a.IfName < b.ContainerID+"/"+b.IfName
	})
	for _, a := range n.Attachments {
		n.Orphans = append(n.Orphans, orphans(nc, a)...)
	}
	for _, tag := range strayOrder {
		n.Orphans = append(n.Orphans, Orphan{"rules-without-attachment",
			fmt.Sprintf("%d nftables elements tagged %s, an attachment of the network with no veth, no lease and no iptables rule: %s", len(stray[tag]), tag, strings.Join(stray[tag], "; ")),
			fmt.Sprintf("run the runtime's GC for network %q with its live attachments (CNI GC deletes the elements of attachments not in the list)", nc.name)})
	}
	return n, nil
}

// strayNft are the objects of sysctl-firewall's nftables tables that
// belong to no configured network: elements tagged for another network
// (per attachment or its zone) and another network's masquerade and zone
// chains.
func strayNft(objs []NftObject, configs []*netConfig) []Orphan {
	known := map[string]bool{}
	for _, nc := range configs {
		known[nftNetHash(nc.name)] = true
	}
	var elems []string
	var out []Orphan
	for _, o := range objs {
		h, _ := nftOwner(o)
		switch {
		case h == "" || known[h]:
		case o.Set != "":
			elems = append(elems, o.String())
		default:
			out = append(out, Orphan{"chain-without-network", o.String() + " of no configured network",
				"if no network on the node owns it: run CNI GC with an empty attachment list for its network, or nft flush chain " + o.Family + " " + naming.NftTable + " " + o.Chain + " && nft delete chain " + o.Family + " " + naming.NftTable + " " + o.Chain + " (after removing the elements that jump to it)"})
		}
	}
	if len(elems) > 0 {
		out = append([]Orphan{{"rules-without-attachment", fmt.Sprintf("%d nftables elements tagged for no configured network: %s", len(elems), strings.Join(elems, "; ")),
			"if no network on the node owns them: run CNI GC for their network (an empty list removes all of them), or nft delete element with the key shown"}}, out...)
	}
	return out
}

func orphans(nc *netConfig, a *Attachment) []Orphan {
	id := fmt.Sprintf("%s/%s", a.ContainerID, a.IfName)
	del := fmt.Sprintf("run CNI DEL for container %s ifname %s on network %q (or the runtime's GC)", a.ContainerID, a.IfName, nc.name)
	switch {
	case nc.lockfileIPAM && a.Lease && !a.VethPresent:
		return []Orphan{{"lease-without-veth", fmt.Sprintf("lease %s of %s in %s, no host veth %s", strings.Join(a.PodIPs, ","), id, filepath.Join(nc.leaseDir, naming.LeaseFile(nc.name)), a.HostVeth), del}}
	case nc.lockfileIPAM && a.VethPresent && !a.Lease:
		return []Orphan{{"veth-without-lease", fmt.Sprintf("host veth %s of %s has no lease", a.HostVeth, id), del + fmt.Sprintf("; or: ip link del %s", a.HostVeth)}}
	case !a.VethPresent && !a.Lease && len(a.Firewall) > 0:
		return []Orphan{{"rules-without-attachment", fmt.Sprintf("%d firewall lines of %s, which has no veth and no lease", len(a.Firewall), id), del}}
	}
	return nil
}

// strayChains are per-attachment chains (VXVRF-<16 hex>) no attachment of
// the configured networks accounts for.
func strayChains(rules string, claimed map[string]bool) []Orphan {
	seen := map[string]bool{}
	var out []Orphan
	for _, m := range chainRE.FindAllString(rules, -1) {
		if claimed[m] || seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, Orphan{"chain-without-attachment", "firewall chain " + m + " of no configured attachment",
			"if no network on the node owns it: iptables -F " + m + " && iptables -X " + m + " (in its table; same for ip6tables/nft)"})
	}
	return out
}

var (
	tagRE   = regexp.MustCompile(`vxvrf:([^:\s"]+):([^:\s"]+):([^:\s"]+)`)
	chainRE = regexp.MustCompile(naming.Prefix + `-[0-9a-f]{16}\b`)
)

// containsWord: s contains tag not followed by more tag characters (so
// the tag of eth0 does not match eth01's).
func containsWord(s, tag string) bool {
	for i := strings.Index(s, tag); i >= 0; {
		end := i + len(tag)
		if end == len(s) || strings.ContainsRune(" \t\"", rune(s[end])) {
			return true
		}
		j := strings.Index(s[end:], tag)
		if j < 0 {
			return false
		}
		i = end + j
	}
	return false
}

func readVXLAN(nc *netConfig, links map[string]netlink.Link) (*VXLAN, error) {
	name := naming.VXLANName(uint32(nc.vni))
	vx := &VXLAN{Name: name, VNI: nc.vni, Mode: nc.mode, Port: nc.port, Peers: nc.peers}
	l, ok := links[name].(*netlink.Vxlan)
	if !ok {
		vx.Missing = nc.peers
		return vx, nil
	}
	vx.Present, vx.VNI, vx.Port, vx.MTU, vx.Learning = true, l.VxlanId, l.Port, l.Attrs().MTU, l.Learning
	if l.SrcAddr != nil {
		vx.Local = l.SrcAddr.String()
	}
	if l.VtepDevIndex != 0 {
		for n, d := range links {
			if d.Attrs().Index == l.VtepDevIndex {
				vx.Dev = n
			}
		}
	}
	flood, err := vxlanfdb.Flood(l)
	if err != nil {
		return nil, err
	}
	for ip := range flood {
		vx.Flood = append(vx.Flood, ip)
	}
	sort.Strings(vx.Flood)
	if nc.mode == string(bum.StaticPeers) {
		for _, p := range nc.peers {
			if ip := net.ParseIP(p); ip != nil && !slices.Contains(vx.Flood, ip.String()) {
				vx.Missing = append(vx.Missing, p)
			}
		}
		for _, f := range vx.Flood {
			if !slices.ContainsFunc(nc.peers, func(p string) bool { return net.ParseIP(p).Equal(net.ParseIP(f)) }) {
				vx.Extra = append(vx.Extra, f)
			}
		}
	}
	return vx, nil
}

func readLeases(path string) (*allocator.State, error) {
	st := &allocator.State{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("lease file %s: %w", path, err)
	}
	return st, nil
}

// Links lists the links of the current network namespace.
func Links() ([]Link, error) {
	l, _, err := readLinks()
	return l, err
}

func readLinks() ([]Link, map[string]netlink.Link, error) {
	ls, err := netlinksafe.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range ls {
		byName[l.Attrs().Name] = l
	}
	var out []Link
	for _, l := range ls {
		a := l.Attrs()
		k := Link{Name: a.Name, Kind: l.Type(), State: strings.ToLower(a.OperState.String()), Alias: a.Alias,
			MAC: a.HardwareAddr.String(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, Addrs: addrs(l)}
		k.Master = masterName(byName, a.MasterIndex)
		switch v := l.(type) {
		case *netlink.Vxlan: // as ip -d link says it
			learn := "learning"
			if !v.Learning {
				learn = "nolearning"
			}
			k.Extra = fmt.Sprintf("vni %d local %v dev %s dstport %d %s", v.VxlanId, v.SrcAddr, indexName(ls, v.VtepDevIndex), v.Port, learn)
		case *netlink.Vrf:
			k.Extra = fmt.Sprintf("table %d", v.Table)
		case *netlink.Bridge:
			k.Extra = fmt.Sprintf("mac %s", a.HardwareAddr)
		}
		out = append(out, k)
	}
	return out, byName, nil
}

func indexName(ls []netlink.Link, index int) string {
	for _, l := range ls {
		if l.Attrs().Index == index {
			return l.Attrs().Name
		}
	}
	return "-"
}

func masterName(links map[string]netlink.Link, index int) string {
	if index == 0 {
		return ""
	}
	for n, l := range links {
		if l.Attrs().Index == index {
			return n
		}
	}
	return ""
}

func addrs(l netlink.Link) []string {
	list, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range list {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

// Firewall is the node's firewall as inspect reads it: the iptables
// rules as text (Ruleset) and sysctl-firewall's nftables objects.
type Firewall struct {
	Rules string
	Nft   []NftObject
}

// ReadFirewall reads the firewall of the current network namespace. It
// fails when neither iptables-save nor the nftables listing works (the
// attachments would look rule-less); one of them failing alone is fine.
func ReadFirewall() (*Firewall, error) {
	rules, ierr := Ruleset()
	objs, nerr := NftObjects()
	if ierr != nil && rules == "" && nerr != nil {
		return nil, errors.Join(ierr, fmt.Errorf("nftables: %w", nerr))
	}
	return &Firewall{Rules: rules, Nft: objs}, nil
}

// NetworkObjects lists what the firewall holds of network, per backend.
// nftables: the elements tagged for it (its attachments' and its zone's)
// and its masquerade and zone chains. iptables: the rules tagged for it
// (the jumps to its attachments' chains, its zone rules) and the rules of
// the chains those jumps go to, each after its table (iptables-save's
// "*filter" …).
func (f *Firewall) NetworkObjects(network string) (nft, ipt []string) {
	for _, o := range f.Nft {
		if h, _ := nftOwner(o); h == nftNetHash(network) {
			nft = append(nft, o.String())
		}
	}
	sort.Strings(nft) // chains first; the kernel's order varies
	tagged := func(l string) bool {
		return strings.Contains(l, naming.NetworkTag(network)) || containsWord(l, naming.ZoneTag(network))
	}
	chains := map[string]bool{}
	for _, l := range strings.Split(f.Rules, "\n") {
		if fs := strings.Fields(l); tagged(l) && len(fs) > 1 && fs[len(fs)-2] == "-j" {
			chains[fs[len(fs)-1]] = true
		}
	}
	table := ""
	for _, l := range strings.Split(f.Rules, "\n") {
		fs := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case len(fs) > 1 && fs[0] == "-A" && (tagged(l) || chains[fs[1]]):
			ipt = append(ipt, fmt.Sprintf("%-6s %s", table, l))
		}
	}
	return nft, ipt
}

// Ruleset is the node's firewall as text: iptables-save, ip6tables-save
// and the nft tables that are not iptables-nft's. The error names an
// iptables-save that failed (the text has what the others printed); nft
// is optional.
func Ruleset() (string, error) {
	var b strings.Builder
	var errs []error
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cmd, err))
		}
		b.Write(out)
	}
	if out, err := exec.Command("nft", "list", "ruleset").Output(); err == nil {
		b.WriteString(ownTables(string(out)))
	}
	return b.String(), errors.Join(errs...)
}

// ownTables keeps the nft tables that are not iptables-nft's own (those
// iptables-save shows already).
func ownTables(ruleset string) string {
	var b strings.Builder
	keep := false
	for _, l := range strings.Split(ruleset, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "table" {
			keep = !slices.Contains([]string{"filter", "nat", "mangle", "raw", "security"}, f[2])
		}
		if keep {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
