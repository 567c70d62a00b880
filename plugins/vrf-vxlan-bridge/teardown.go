package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/naming"
)

// Teardown is never blocked by the config: DEL reads none of it (see
// cmdDel), and GC takes from the config only the network name and the
// device names and table it can still read.

// cmdDel releases nothing: the VRF, bridge and VXLAN are shared by every
// attachment of the network and stay until GC says the network is empty.
// It reads no config (main declares cniutil.DelReadsNoConfig), so it
// succeeds whatever the config has become; like every stage's DEL it
// refuses only the node's own netns as CNI_NETNS. Its log line says
// removed=[].
func cmdDel(args *skel.CmdArgs) error {
	if err := cniutil.GuardTeardownNetNS(args.Netns); err != nil {
		return err
	}
	vlog.Did("removed")
	vlog.L().Debug("shared devices kept: GC removes them when the network has no attachment left")
	return nil
}

// teardownDevices reads, key by key, what GC needs from a config that may
// be invalid or changed since ADD: each name that is usable is taken, each
// that is not is left out (nothing can have been made under it).
func teardownDevices(stdin []byte) netDevices {
	var raw struct {
		Name   string `json:"name"`
		VRF    json.RawMessage
		Bridge json.RawMessage
		VXLAN  json.RawMessage
	}
	_ = json.Unmarshal(stdin, &raw)
	d := netDevices{network: raw.Name, mark: naming.NetworkMark(raw.Name)}
	name := func(given, def string) string {
		if given == "" {
			given = def
		}
		if utils.ValidateInterfaceName(given) != nil {
			return ""
		}
		return given
	}
	if len(raw.VRF) > 0 && string(raw.VRF) != "null" {
		var v struct {
			Name  any `json:"name"`
			Table any `json:"table"`
		}
		_ = json.Unmarshal(raw.VRF, &v)
		s, _ := v.Name.(string)
		d.vrf = name(s, naming.VRFName(raw.Name))
		if t, ok := v.Table.(float64); ok && t >= 1 && t <= MaxTable && t == float64(int64(t)) && reservedTables[int64(t)] == "" {
			d.table = int64(t)
		}
	}
	var b struct {
		Name any `json:"name"`
	}
	_ = json.Unmarshal(raw.Bridge, &b)
	s, _ := b.Name.(string)
	d.bridge = name(s, naming.BridgeName(raw.Name))
	var v struct {
		VNI any `json:"vni"`
	}
	if json.Unmarshal(raw.VXLAN, &v) == nil {
		if n, ok := v.VNI.(float64); ok && n >= 1 && n <= MaxVNI && n == float64(int(n)) {
			d.vni = int(n)
			d.vxlan = naming.VXLANName(uint32(n))
		}
	}
	return d
}

// gcNetwork deletes what is this network's on the node: every link marked
// with its NetworkMark (whatever its name: the config may have changed
// since ADD), the previous release's devices under the configured names
// (see nodeLinks.owner), and the egress rules and routes of the tables of
// those VRFs and of vrf.table. A device under a configured name that is
// not this network's is left alone (and reported on stderr).
func gcNetwork(d netDevices) error {
	n, err := readLinks()
	if err != nil {
		return err
	}
	var doomed []netlink.Link
	seen := map[int]bool{}
	doom := func(l netlink.Link) {
		if !seen[l.Attrs().Index] {
			seen[l.Attrs().Index] = true
			doomed = append(doomed, l)
		}
	}
	for _, dev := range []struct{ role, name string }{{"vxlan", d.vxlan}, {"bridge", d.bridge}, {"vrf", d.vrf}} {
		switch n.owner(d, dev.role, dev.name) {
		case marked, legacy:
			doom(n.byName[dev.name])
		case foreign:
			l := n.byName[dev.name]
			fmt.Fprintf(os.Stderr, "vrf-vxlan-bridge GC: keeping %s %s: not created by vxvrf for network %q (alias %q)\n", l.Type(), dev.name, d.network, l.Attrs().Alias)
		}
	}
	for _, l := range n.byIndex {
		if l.Attrs().Alias == d.mark {
			doom(l)
		}
	}
	// Tables: those of the network's VRFs, and vrf.table unless a VRF of
	// another owner (or network) holds it: its routes and rules are that
	// owner's business, whatever their protocol.
	tables := map[int64]bool{}
	for _, l := range doomed {
		if v, ok := l.(*netlink.Vrf); ok {
			tables[int64(v.Table)] = true
		}
	}
	if d.table != 0 && !tables[d.table] {
		held := false
		for _, l := range n.byIndex {
			if v, ok := l.(*netlink.Vrf); ok && int64(v.Table) == d.table {
				held = true
			}
		}
		tables[d.table] = !held
	}
	// The previous release's egress copies are recognised against the main
	// table's defaults while the network's VRF still exists.
	legacyRoutes := map[int64][]netlink.Route{}
	for _, l := range doomed {
		if v, ok := l.(*netlink.Vrf); ok {
			legacyRoutes[int64(v.Table)] = legacyEgressRoutes(int64(v.Table))
		}
	}

	var errs []error
	// Ports before masters: VXLAN, then bridges, then VRFs.
	for _, kind := range []string{"vxlan", "bridge", "vrf", ""} {
		for _, l := range doomed {
			if t := l.Type(); t == kind || kind == "" && t != "vxlan" && t != "bridge" && t != "vrf" {
				fmt.Fprintf(os.Stderr, "vrf-vxlan-bridge GC: deleting %s %s (alias %q)\n", l.Type(), l.Attrs().Name, l.Attrs().Alias)
				switch err := netlink.LinkDel(l); {
				case err == nil:
					vlog.Did("removed", l.Attrs().Name)
				case !errors.Is(err, syscall.ENODEV):
					errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
				}
			}
		}
	}
	for t, ours := range tables {
		if ours {
			err := deleteEgress(t, legacyRoutes[t])
			if err == nil {
				vlog.L().Debug("egress routes and rules removed", "table", t)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
