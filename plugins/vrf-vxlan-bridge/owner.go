package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/kernel"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/naming"
)

// Ownership. Every shared device this plugin creates carries the alias
// naming.NetworkMark(network); GC deletes only devices with that mark (or
// recognised as the previous release's, below) and ADD refuses to adopt a
// device of the configured name that carries no such mark.
//
// The previous release set no marks. Its devices are recognised by what it
// made (see legacy): the configured name, kind and attributes, and master
// relations that only this network's devices have. ADD marks them.

// netDevices are the names of a network's shared devices: what ADD is
// about to ensure, or what GC may find from a (possibly partly invalid)
// config. An empty name or a zero table/vni means "none" or "unknown".
type netDevices struct {
	network string
	mark    string
	vrf     string
	table   int64
	bridge  string
	vxlan   string
	vni     int
	port    int
}

// devices are the names the (validated) config asks for.
func (c *NetConf) devices() netDevices {
	d := netDevices{network: c.Name, mark: naming.NetworkMark(c.Name), bridge: c.Bridge.Name}
	if c.VRF != nil {
		d.vrf, d.table = c.VRF.Name, c.VRF.Table
	}
	if c.VXLAN != nil {
		d.vxlan, d.vni, d.port = c.VXLAN.Name(), int(c.VXLAN.VNI), c.VXLAN.Port
	}
	return d
}

// nodeLinks is the node's links, read once, to judge ownership.
type nodeLinks struct {
	byName  map[string]netlink.Link
	byIndex map[int]netlink.Link
	ports   map[int][]netlink.Link // by master index
}

func readLinks() (*nodeLinks, error) {
	ls, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	n := newNodeLinks()
	n.add(ls...)
	return n, nil
}

func newNodeLinks() *nodeLinks {
	return &nodeLinks{byName: map[string]netlink.Link{}, byIndex: map[int]netlink.Link{}, ports: map[int][]netlink.Link{}}
}

// add records links not recorded yet.
func (n *nodeLinks) add(ls ...netlink.Link) {
	for _, l := range ls {
		a := l.Attrs()
		if n.byIndex[a.Index] != nil {
			continue
		}
		n.byName[a.Name] = l
		n.byIndex[a.Index] = l
		if a.MasterIndex != 0 {
			n.ports[a.MasterIndex] = append(n.ports[a.MasterIndex], l)
		}
	}
}

// readNetworkLinks reads what judge needs to know of the node's links
// without listing them all (every pod adds a host veth: ~1.5 KB of a full
// dump, hundreds of KB read and parsed on a full node): the bridges, the
// VXLAN devices and, when the config names a VRF or a table, the VRFs
// (each a dump the kernel filters by kind; a kind whose module is not in
// the kernel has no devices); the devices under the configured names,
// whatever their kind; the masters of all of those; and every port of a
// configured bridge or VRF that does not carry the network's mark (the
// previous release's devices are recognised by their ports). GC reads
// every link (readLinks).
func readNetworkLinks(d netDevices) (*nodeLinks, error) {
	n := newNodeLinks()
	kinds := []string{"bridge", "vxlan"}
	if d.vrf != "" || d.table != 0 {
		kinds = append(kinds, "vrf")
	}
	for _, k := range kinds {
		if !kernel.InSysModule(k) {
			continue
		}
		ls, err := kernel.LinksOfKind(k)
		if err != nil {
			return nil, err
		}
		n.add(ls...)
	}
	for _, name := range []string{d.vrf, d.bridge, d.vxlan} {
		if name == "" || n.byName[name] != nil {
			continue
		}
		l, err := netlinksafe.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				continue
			}
			return nil, fmt.Errorf("link %s: %w", name, err)
		}
		n.add(l)
	}
	for _, name := range []string{d.bridge, d.vrf} {
		l := n.byName[name]
		if name == "" || l == nil || l.Attrs().Alias == d.mark {
			continue
		}
		ports, err := kernel.LinksOfMaster(l.Attrs().Index)
		if err != nil {
			return nil, err
		}
		n.add(ports...)
	}
	// Masters, and theirs (a bridge's VRF), for the messages and the
	// legacy rules.
	for more := true; more; {
		more = false
		for _, l := range n.byIndex {
			m := l.Attrs().MasterIndex
			if m == 0 || n.byIndex[m] != nil {
				continue
			}
			ml, err := netlink.LinkByIndex(m)
			if err != nil {
				continue // gone since: as in a full listing taken now
			}
			n.add(ml)
			more = true
		}
	}
	return n, nil
}

// ownership of a configured device name.
type ownership int

const (
	absent  ownership = iota
	marked            // carries this network's mark
	legacy            // unmarked, made by the previous release for this network
	foreign           // anything else: never adopted, never deleted
)

// owner judges the device named name, which the config means as role
// ("vrf", "bridge" or "vxlan").
func (n *nodeLinks) owner(d netDevices, role, name string) ownership {
	l := n.byName[name]
	switch {
	case name == "" || l == nil:
		return absent
	case l.Attrs().Alias == d.mark:
		return marked
	case l.Attrs().Alias != "":
		return foreign
	}
	var ok bool
	switch role {
	case "vrf":
		ok = n.legacyVRF(d, l)
	case "bridge":
		ok = n.legacyBridge(d, l)
	case "vxlan":
		ok = n.legacyVXLAN(d, l)
	}
	if ok {
		return legacy
	}
	return foreign
}

// legacyVXLAN: the previous release's vxlan-<vni>: a VXLAN device with the
// configured VNI, a port of the configured bridge.
func (n *nodeLinks) legacyVXLAN(d netDevices, l netlink.Link) bool {
	vx, ok := l.(*netlink.Vxlan)
	if !ok || d.vni == 0 || vx.VxlanId != d.vni || vx.Alias != "" {
		return false
	}
	m := n.byIndex[vx.MasterIndex]
	return m != nil && m.Type() == "bridge" && m.Attrs().Name == d.bridge
}

// legacyBridge: the previous release's bridge: a bridge, unmarked, outside
// any VRF or in the configured one, whose ports are all this network's
// (host veths tagged for it, its VXLAN device), with at least one such
// port, or without ports under the name this project derives for the
// network (naming.BridgeName).
func (n *nodeLinks) legacyBridge(d netDevices, l netlink.Link) bool {
	a := l.Attrs()
	if l.Type() != "bridge" || a.Alias != "" {
		return false
	}
	if a.MasterIndex != 0 {
		m := n.byIndex[a.MasterIndex]
		if m == nil || m.Type() != "vrf" || m.Attrs().Name != d.vrf {
			return false
		}
	}
	ports := n.ports[a.Index]
	for _, p := range ports {
		pa := p.Attrs()
		switch {
		case pa.Alias == d.mark:
		case p.Type() == "veth" && strings.HasPrefix(pa.Alias, naming.NetworkTag(d.network)):
		case pa.Name == d.vxlan && n.legacyVXLAN(d, p):
		default:
			return false
		}
	}
	return len(ports) > 0 || a.Name == naming.BridgeName(d.network)
}

// legacyVRF: the previous release's VRF: a VRF with the configured table,
// unmarked, whose only port is this network's bridge, or without ports
// under the name this project derives for the network (naming.VRFName).
func (n *nodeLinks) legacyVRF(d netDevices, l netlink.Link) bool {
	vrf, ok := l.(*netlink.Vrf)
	if !ok || d.table == 0 || int64(vrf.Table) != d.table || vrf.Alias != "" {
		return false
	}
	ports := n.ports[vrf.Index]
	for _, p := range ports {
		if p.Attrs().Name != d.bridge || (p.Attrs().Alias != d.mark && !n.legacyBridge(d, p)) {
			return false
		}
	}
	return len(ports) > 0 || vrf.Name == naming.VRFName(d.network)
}

// notOurs is ADD's (and CHECK's) answer to a configured device name that
// holds a device this project did not make for the network: code 7 naming
// the key, the device and what it is.
func notOurs(d netDevices, key, name string, l netlink.Link) error {
	var what []string
	what = append(what, "type "+l.Type())
	switch x := l.(type) {
	case *netlink.Vrf:
		what = append(what, fmt.Sprintf("table %d", x.Table))
	case *netlink.Vxlan:
		what = append(what, fmt.Sprintf("vni %d", x.VxlanId))
	}
	alias := l.Attrs().Alias
	switch network, attachment, ok := naming.MarkedNetwork(alias); {
	case alias == "":
		what = append(what, "no vxvrf alias")
	case ok && !attachment:
		what = append(what, fmt.Sprintf("it belongs to vxvrf network %q", network))
	case ok:
		what = append(what, fmt.Sprintf("a pod's host veth of vxvrf network %q", network))
	default:
		what = append(what, fmt.Sprintf("alias %q", alias))
	}
	if m := l.Attrs().MasterIndex; m != 0 {
		if ml, err := netlink.LinkByIndex(m); err == nil {
			what = append(what, fmt.Sprintf("a port of %s %s", ml.Type(), ml.Attrs().Name))
		}
	}
	if key == "vxlan.vni" {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf-vxlan-bridge: vxlan.vni %d: its device %q exists but was not created by vxvrf for network %q (%s); every network needs its own VNI: pick another vxlan.vni, or remove the device",
			d.vni, name, d.network, strings.Join(what, ", "))
	}
	return cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf-vxlan-bridge: %s %q names an existing device not created by vxvrf for network %q (%s); pick another name",
		key, name, d.network, strings.Join(what, ", "))
}

// owned is what ADD knows of the network's devices before it changes
// anything: their names and which of them the previous release made.
type owned struct {
	d        netDevices
	legacies map[string]bool
}

// judge reads the node's links and refuses, before anything changes, a
// configured device name held by a device that is not this network's. It
// returns the names of the previous release's devices (to be marked). A
// device without any alias may be one a concurrent ADD has just created
// and is about to mark: it is given markWait before it counts as foreign.
func judge(d netDevices) (*owned, error) {
	deadline := time.Now().Add(markWait)
	for {
		n, err := readNetworkLinks(d)
		if err != nil {
			return nil, err
		}
		legacies := map[string]bool{}
		var refusal error
		unaliased := false
		for _, dev := range []struct{ role, key, name string }{
			{"vrf", "vrf.name", d.vrf},
			{"bridge", "bridge.name", d.bridge},
			{"vxlan", "vxlan.vni", d.vxlan},
		} {
			switch n.owner(d, dev.role, dev.name) {
			case foreign:
				l := n.byName[dev.name]
				unaliased = unaliased || l.Attrs().Alias == ""
				if refusal == nil {
					refusal = notOurs(d, dev.key, dev.name, l)
				}
			case legacy:
				legacies[dev.name] = true
			}
		}
		if refusal == nil {
			refusal = n.clashes(d, legacies)
		}
		switch {
		case refusal == nil:
			return &owned{d: d, legacies: legacies}, nil
		case unaliased && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
		default:
			return nil, refusal
		}
	}
}

// markWait bounds how long ADD waits for a concurrent ADD that has just
// created a device (EEXIST) to mark it.
const markWait = 2 * time.Second

// ensureLink creates want with the network's mark, or returns the
// existing link of that name when it is this network's (marked, or the
// previous release's, listed in legacies: then it is marked now) and has
// the same type. A device created by a concurrent ADD is given markWait to
// be marked; any other device is refused (code 7).
func (o *owned) ensureLink(want netlink.Link, key string) (netlink.Link, bool, error) {
	d, legacies := o.d, o.legacies
	name := want.Attrs().Name
	err := netlink.LinkAdd(want)
	created := err == nil
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, false, fmt.Errorf("create %s %s: %w", want.Type(), name, err)
	}
	deadline := time.Now().Add(markWait)
	for {
		l, err := netlinksafe.LinkByName(name)
		if err != nil {
			if !created && cniutil.IsGone(err) {
				return nil, false, cniutil.Errorf(types.ErrInvalidNetworkConfig,
					"create %s %s: the kernel says it exists but no link has that name: another device holds the same identity (for vxlan: the same VNI and port)", want.Type(), name)
			}
			return nil, false, fmt.Errorf("look up %s %s: %w", want.Type(), name, err)
		}
		if created {
			if err := netlink.LinkSetAlias(l, d.mark); err != nil {
				return l, true, fmt.Errorf("mark %s %s (alias %s): %w", want.Type(), name, d.mark, err)
			}
			l.Attrs().Alias = d.mark
		}
		switch alias := l.Attrs().Alias; {
		case alias == d.mark:
		case alias == "" && legacies[name]:
			if err := netlink.LinkSetAlias(l, d.mark); err != nil {
				return l, false, fmt.Errorf("mark %s %s (alias %s): %w", want.Type(), name, d.mark, err)
			}
			l.Attrs().Alias = d.mark
		case alias == "" && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
			continue
		default:
			return nil, false, notOurs(d, key, name, l)
		}
		if l.Type() != want.Type() {
			return nil, false, cniutil.Errorf(types.ErrInvalidNetworkConfig, "%s exists but is a %s device, not a %s", name, l.Type(), want.Type())
		}
		return l, created, nil
	}
}

// addLink is ensureLink for ADD: a link it creates is deleted again if the
// ADD fails (rb), and the log line lists the link as created or reused.
func (o *owned) addLink(want netlink.Link, key string, rb *cniutil.Rollback) (netlink.Link, bool, error) {
	l, created, err := o.ensureLink(want, key)
	switch {
	case l == nil:
	case created:
		rb.Push(func() { _ = netlink.LinkDel(l) })
		vlog.Did("created", l.Attrs().Name)
	default:
		vlog.Did("reused", l.Attrs().Name)
	}
	return l, created, err
}
