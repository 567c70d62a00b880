package chain

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/pkg/inspect"
	"github.com/vxvrf/cni/pkg/naming"
)

// Attachment is what Leftovers looks for of one (containerID, ifname).
type Attachment struct {
	RT  RuntimeConf
	IPs []net.IP
	Pod *netsim.NS // the pod namespace, or nil when it is gone
}

// NetworkRules returns the iptables-save lines that belong to network or to
// any attachment: rules tagged for the network, project chains other than
// the hooks, and any rule inside a project chain.
func NetworkRules(rules, network string) []string {
	var out []string
	for _, l := range strings.Split(rules, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.Contains(l, naming.NetworkTag(network)):
			out = append(out, l)
		case len(f) > 0 && strings.HasPrefix(f[0], ":"+naming.Prefix+"-") && !naming.IsHook(f[0][1:]):
			out = append(out, l)
		case len(f) > 1 && f[0] == "-A" && strings.HasPrefix(f[1], naming.Prefix+"-"):
			out = append(out, l)
		}
	}
	return out
}

// Ruleset is the node's firewall as vxvrf inspect reads it: iptables-save,
// ip6tables-save and the project's own nft tables.
func Ruleset(node *netsim.NS) (string, error) {
	var rules string
	err := node.Do(func(ns.NetNS) error {
		var err error
		rules, err = inspect.Ruleset()
		return err
	})
	return rules, err
}

// Links maps every link of the node to its alias (as vxvrf inspect reads them).
func Links(node ns.NetNS) (map[string]string, error) {
	out := map[string]string{}
	err := node.Do(func(ns.NetNS) error {
		ls, err := inspect.Links()
		for _, l := range ls {
			out[l.Name] = l.Alias
		}
		return err
	})
	return out, err
}

// StateFiles maps every regular file under dirs to its content.
func StateFiles(dirs ...string) map[string]string {
	out := map[string]string{}
	for _, dir := range dirs {
		_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err != nil || !info.Mode().IsRegular() {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil {
				out[path] = string(b)
			}
			return nil
		})
	}
	return out
}

// Leftovers lists what of the attachments remains: host veth or a link
// tagged for them, iptables chains and tagged rules, nftables elements
// commented with their tag, routes to their
// addresses, state files under stateDirs that name the container, the
// libcni cache entry, and the pod interface.
func (c *Chain) Leftovers(node *netsim.NS, atts []Attachment, stateDirs ...string) []string {
	var left []string
	network := c.List.Name
	links, err := Links(node.NetNS)
	if err != nil {
		left = append(left, "list links: "+err.Error())
	}
	rules, err := Ruleset(node)
	if err != nil {
		left = append(left, "iptables-save: "+err.Error())
	}
	var routes string
	for _, args := range [][]string{{"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}} {
		out, err := node.In("ip", args...)
		if err != nil {
			left = append(left, err.Error())
		}
		routes += string(out)
	}
	files := StateFiles(stateDirs...)
	nft, err := NftObjects(node.NetNS)
	if err != nil {
		left = append(left, "nftables: "+err.Error())
	}
	for _, a := range atts {
		rt := a.RT.libcni()
		cid, ifn := rt.ContainerID, rt.IfName
		veth := naming.HostVethName(network, cid, ifn)
		tag := naming.AttachmentTag(network, cid, ifn)
		if _, ok := links[veth]; ok {
			left = append(left, fmt.Sprintf("%s: host veth %s", cid, veth))
		}
		for name, alias := range links {
			if alias == tag && name != veth {
				left = append(left, fmt.Sprintf("%s: link %s tagged %s", cid, name, tag))
			}
		}
		for _, l := range strings.Split(rules, "\n") {
			if strings.Contains(l, naming.AttachmentChain(network, cid, ifn)) || strings.Contains(l, tag) {
				left = append(left, fmt.Sprintf("%s: iptables %s", cid, l))
			}
		}
		left = append(left, nftLeftovers(nft, network, cid, ifn)...)
		for _, ip := range a.IPs {
			for _, l := range strings.Split(routes, "\n") {
				for _, f := range strings.Fields(l) {
					if f == ip.String() || strings.HasPrefix(f, ip.String()+"/") {
						left = append(left, fmt.Sprintf("%s: route %q", cid, l))
					}
				}
			}
		}
		for path, content := range files {
			if strings.Contains(content, cid) {
				left = append(left, fmt.Sprintf("%s: state file %s names it: %s", cid, path, strings.TrimSpace(content)))
			}
		}
		if _, err := os.Stat(c.CacheFile(a.RT)); err == nil {
			left = append(left, fmt.Sprintf("%s: libcni cache entry %s", cid, c.CacheFile(a.RT)))
		}
		if a.Pod != nil {
			if _, err := os.Stat(a.Pod.Path); err == nil {
				if out, err := a.Pod.In("ip", "-o", "link", "show", ifn); err == nil {
					left = append(left, fmt.Sprintf("%s: the pod still has %s: %s", cid, ifn, strings.TrimSpace(string(out))))
				}
			}
		}
	}
	return left
}

// NetworkLeftovers lists what remains of the network itself once it has no
// attachments and GC ran with an empty list: its bridge and VRF, links
// marked (naming.NetworkMark: also its VXLAN device, whatever the names)
// or tagged for it, its iptables rules (the empty project hooks may stay),
// its nftables elements and masquerade chains (the node-wide tables, sets
// and base chains may stay), and its marked routes and rules in vrf.table.
func (c *Chain) NetworkLeftovers(node *netsim.NS) []string {
	var left []string
	network := c.List.Name
	links, err := Links(node.NetNS)
	if err != nil {
		left = append(left, "list links: "+err.Error())
	}
	for name, alias := range links {
		if name == naming.BridgeName(network) || name == naming.VRFName(network) || alias == naming.NetworkMark(network) ||
			strings.HasPrefix(alias, naming.NetworkTag(network)) {
			left = append(left, fmt.Sprintf("link %s (alias %q)", name, alias))
		}
	}
	rules, err := Ruleset(node)
	if err != nil {
		left = append(left, "iptables-save: "+err.Error())
	}
	for _, l := range NetworkRules(rules, network) {
		left = append(left, "iptables "+l)
	}
	nft, err := NftObjects(node.NetNS)
	if err != nil {
		left = append(left, "nftables: "+err.Error())
	}
	left = append(left, nftLeftovers(nft, network, "", "")...)
	if t := c.vrfTable(); t != 0 {
		table := fmt.Sprint(t)
		proto := fmt.Sprint(naming.RouteProtocol)
		for _, args := range [][]string{
			{"route", "show", "table", table, "proto", proto}, {"-6", "route", "show", "table", table, "proto", proto},
			{"rule", "show", "table", table}, {"-6", "rule", "show", "table", table},
		} {
			out, err := node.In("ip", args...)
			if err != nil {
				left = append(left, err.Error())
			}
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if l != "" {
					left = append(left, fmt.Sprintf("ip %s: %s", strings.Join(args, " "), l))
				}
			}
		}
	}
	return left
}

// vrfTable is vrf.table of the chain's vrf-vxlan-bridge, 0 without one.
func (c *Chain) vrfTable() int64 {
	for _, p := range c.List.Plugins {
		if p.Network.Type != "vrf-vxlan-bridge" {
			continue
		}
		var conf struct {
			VRF *struct {
				Table int64 `json:"table"`
			} `json:"vrf"`
		}
		if json.Unmarshal(p.Bytes, &conf) == nil && conf.VRF != nil {
			return conf.VRF.Table
		}
	}
	return 0
}

var (
	hostVethRe = regexp.MustCompile(`^vx[0-9a-f]{13}$`)
	attChainRe = regexp.MustCompile(naming.Prefix + `-[0-9a-f]{16}\b`)
)

// Orphans lists what of this network's attachments is on the node although
// it belongs to none of live: host veths and attachment-tagged links,
// attachment chains and tagged rules in iptables, nftables elements tagged
// for the network (naming.NftTag) of no live attachment, leases and stray temp
// files under stateDirs, and libcni cache entries. Unlike Leftovers it
// needs no list of the dead attachments, so it also finds what an ADD that
// was killed before it reported anything left behind.
func (c *Chain) Orphans(node *netsim.NS, live []Attachment, stateDirs ...string) []string {
	var left []string
	network := c.List.Name
	veths, chains, tags, nftTags := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	type key struct{ cid, ifn string }
	liveKeys := map[key]bool{}
	for _, a := range live {
		rt := a.RT.libcni()
		veths[naming.HostVethName(network, rt.ContainerID, rt.IfName)] = true
		chains[naming.AttachmentChain(network, rt.ContainerID, rt.IfName)] = true
		tags[naming.AttachmentTag(network, rt.ContainerID, rt.IfName)] = true
		nftTags[naming.NftTag(network, rt.ContainerID, rt.IfName)] = true
		liveKeys[key{rt.ContainerID, rt.IfName}] = true
	}
	links, err := Links(node.NetNS)
	if err != nil {
		left = append(left, "list links: "+err.Error())
	}
	for name, alias := range links {
		if hostVethRe.MatchString(name) && !veths[name] {
			left = append(left, fmt.Sprintf("host veth %s (alias %q) of no live attachment", name, alias))
			continue
		}
		if rest, ok := strings.CutPrefix(alias, naming.NetworkTag(network)); ok && strings.Contains(rest, ":") && !tags[alias] {
			left = append(left, fmt.Sprintf("link %s tagged %q for no live attachment", name, alias))
		}
	}
	rules, err := Ruleset(node)
	if err != nil {
		left = append(left, "iptables-save: "+err.Error())
	}
	tagRe := regexp.MustCompile(regexp.QuoteMeta(naming.NetworkTag(network)) + `[^\s"]+`)
	for _, l := range strings.Split(rules, "\n") {
		for _, ch := range attChainRe.FindAllString(l, -1) {
			if !chains[ch] {
				left = append(left, fmt.Sprintf("iptables chain %s of no live attachment: %s", ch, l))
				break
			}
		}
		for _, tag := range tagRe.FindAllString(l, -1) {
			if !tags[tag] {
				left = append(left, fmt.Sprintf("iptables rule tagged %s for no live attachment: %s", tag, l))
				break
			}
		}
	}
	nft, err := NftObjects(node.NetNS)
	if err != nil {
		left = append(left, "nftables: "+err.Error())
	}
	for _, o := range nft {
		if o.Set != "" && strings.HasPrefix(o.Comment, naming.NftNetworkTag(network)) && !nftTags[naming.NftTagOf(o.Comment)] {
			left = append(left, fmt.Sprintf("%s: tagged for no live attachment", o))
		}
	}
	for path, content := range StateFiles(stateDirs...) {
		if strings.Contains(filepath.Base(path), ".tmp") {
			left = append(left, fmt.Sprintf("stray temp file %s", path))
			continue
		}
		var st leaseFile
		if json.Unmarshal([]byte(content), &st) != nil {
			continue
		}
		for _, l := range st.Leases {
			if !liveKeys[key{l.ContainerID, l.IfName}] {
				left = append(left, fmt.Sprintf("lease of %s/%s (%v) in %s: no live attachment", l.ContainerID, l.IfName, l.IPs, path))
			}
		}
	}
	cached, err := c.CachedAttachments()
	if err != nil {
		left = append(left, "libcni cache: "+err.Error())
	}
	for _, a := range cached {
		if !liveKeys[key{a.ContainerID, a.IfName}] {
			left = append(left, fmt.Sprintf("libcni cache entry of %s/%s: no live attachment", a.ContainerID, a.IfName))
		}
	}
	return left
}

// leaseFile is what Orphans and DuplicateLeases read of a lockfile-ipam
// state file.
type leaseFile struct {
	Leases []struct {
		ContainerID string   `json:"containerID"`
		IfName      string   `json:"ifname"`
		IPs         []net.IP `json:"ips"`
	} `json:"leases"`
}

// DuplicateLeases lists every address that the lease files under
// stateDirs give to more than one attachment.
func DuplicateLeases(stateDirs ...string) []string {
	var dup []string
	for path, content := range StateFiles(stateDirs...) {
		var st leaseFile
		if json.Unmarshal([]byte(content), &st) != nil {
			continue
		}
		holder := map[string]string{}
		for _, l := range st.Leases {
			for _, a := range l.IPs {
				who := l.ContainerID + "/" + l.IfName
				if h, ok := holder[a.String()]; ok {
					dup = append(dup, fmt.Sprintf("%s: %s leased to %s and %s", path, a, h, who))
				}
				holder[a.String()] = who
			}
		}
	}
	return dup
}
