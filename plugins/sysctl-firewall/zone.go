package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/coreos/go-iptables/iptables"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Per-network conntrack zones (conntrackZone). Unlike the attachment
// chains these rules belong to the network (its bridge): every ADD of the
// network needs them, none owns them. They sit in naming.ZoneChain of the
// raw and mangle tables, hooked from PREROUTING, tagged naming.ZoneTag(net)
// (plus one node-wide rule tagged naming.ZoneRestoreTag). ADD and CHECK
// test them with -C probes inside the attachment's one iptables-restore
// per family, so an ensured network costs no extra exec; when ADD's
// restore is refused, its converging batch replaces them (convergeZone).
// DEL leaves them; GC with an empty attachment list removes them
// (deleteZone).

// zoneMask is the part of the packet and connection mark the zone rules
// use: naming.EgressMarkMask, the mask of vrf-vxlan-bridge's egress rule.
const zoneMask = naming.EgressMarkMask

// zoneHooks are the chains holding zone rules, in script order after the
// attachment tables (raw comes after filter and nat; mangle is last).
var zoneHooks = []hook{
	{Table: "raw", Builtin: "PREROUTING", Project: naming.ZoneChain},
	{Table: "mangle", Builtin: "PREROUTING", Project: naming.ZoneChain},
}

func zoneHookOf(table string) (hook, bool) {
	for _, h := range zoneHooks {
		if h.Table == table {
			return h, true
		}
	}
	return hook{}, false
}

// ZoneInput is what a network's zone rules depend on.
type ZoneInput struct {
	Network  string
	Bridge   string   // the pod's bridge: traffic entering from it is the network's
	Zone     int      // conntrack zone, 1..65535 (0: no rules)
	Mark     uint32   // connection mark (table<<16), within zoneMask
	Families []Family // families of the pod's addresses
}

// zoneOf decides the attachment's zone and mark: an explicit conntrackZone
// wins (0 turns zones off); absent, the table of the bridge's VRF when it
// fits in 16 bits. The mark is the VRF table<<16 when the bridge is in a
// VRF whose table fits (what vrf-vxlan-bridge's vrf.egress rule
// "fwmark <table<<16>/0xffff0000 lookup <table>" matches), else zone<<16.
func zoneOf(conf *NetConf, pod *podInfo) (zone int, mark uint32, err error) {
	vrfFits := pod.VRFTable > 0 && pod.VRFTable <= naming.MaxMarkTable
	switch {
	case conf.ConntrackZone != nil:
		zone = *conf.ConntrackZone
	case vrfFits:
		zone = int(pod.VRFTable)
	}
	if zone == 0 {
		return 0, 0, nil
	}
	if pod.Bridge == "" {
		return 0, 0, cniutil.Errorf(types.ErrInvalidNetworkConfig,
			"conntrackZone %d needs the pod's host veth on a bridge (the zone rules match the bridge)", zone)
	}
	mark = naming.EgressMark(int64(zone))
	if vrfFits {
		mark = naming.EgressMark(int64(pod.VRFTable))
	}
	return zone, mark, nil
}

// renderZone computes a network's zone rules per family and table (specs
// in naming.ZoneChain). Pure, unit-tested.
//
//	raw:    -i BRIDGE -m comment --comment TAG -j CT --zone-orig ZONE
//	mangle: -i BRIDGE -m conntrack --ctdir ORIGINAL -m comment --comment TAG -j CONNMARK --set-xmark MARK/0xffff0000
//	mangle: -m conntrack --ctdir REPLY -m comment --comment RESTORE -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000
//
// The first two are the network's (TAG = naming.ZoneTag), the last is
// node-wide (RESTORE = naming.ZoneRestoreTag) and the same for every
// network.
func renderZone(in ZoneInput) Rules {
	out := Rules{}
	if in.Zone == 0 || in.Bridge == "" {
		return out
	}
	tag := naming.ZoneTag(in.Network)
	mask := fmt.Sprintf("%#x", zoneMask)
	for _, f := range in.Families {
		out[f] = map[string][][]string{
			"raw": {{"-i", in.Bridge, "-m", "comment", "--comment", tag, "-j", "CT", "--zone-orig", strconv.Itoa(in.Zone)}},
			"mangle": {
				{"-i", in.Bridge, "-m", "conntrack", "--ctdir", "ORIGINAL", "-m", "comment", "--comment", tag,
					"-j", "CONNMARK", "--set-xmark", fmt.Sprintf("%#x/%s", in.Mark&zoneMask, mask)},
				{"-m", "conntrack", "--ctdir", "REPLY", "-m", "comment", "--comment", naming.ZoneRestoreTag,
					"-j", "CONNMARK", "--restore-mark", "--nfmask", mask, "--ctmask", mask},
			},
		}
	}
	return out
}

// specTag is the --comment value of a rule spec ("" when none).
func specTag(spec []string) string {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "--comment" {
			return strings.Trim(spec[i+1], `"`)
		}
	}
	return ""
}

// convergeZone adds to s what makes table t's zone objects hold specs
// (one family's zone rules of the network in t), given the listed state:
// the zone chain and its hook where missing, and the rules whose tags
// specs carry (the network's, the node-wide restore rule) deleted by
// number, last first, and appended again, all in t's one section. So a
// changed zone or bridge replaces the network's rules, concurrent first
// ADDs (serialised on the lock) leave each rule once, and another
// network's rules are untouched.
func convergeZone(s *script, t string, specs [][]string, ts *tableState) {
	h, _ := zoneHookOf(t)
	if !ts.zoneChain {
		s.cmd(t, ":"+h.Project, "-", "[0:0]")
	}
	if !ts.hooked[h.Project] {
		s.cmd(t, append([]string{"-I", h.Builtin, "1"}, projectJump(h)...)...)
	}
	replaced := map[string]bool{}
	for _, sp := range specs {
		replaced[specTag(sp)] = true
	}
	for i := len(ts.zone) - 1; i >= 0; i-- {
		if replaced[specTag(strings.Fields(ts.zone[i]))] {
			s.cmd(t, "-D", h.Project, strconv.Itoa(i+1))
		}
	}
	for _, sp := range specs {
		s.cmd(t, append([]string{"-A", h.Project}, sp...)...)
	}
}

// deleteZone removes the network's zone rules of one family from raw and
// mangle and, when no network's zone rule is left, the node-wide restore
// rule; a zone chain left empty goes too, with its hook (the next zone
// ADD recreates both), so after the last network's GC nothing of the
// zones remains. Listed with go-iptables, deleted in one restore, under
// the lock (a converging ADD must not add to a chain being deleted).
func deleteZone(x *xtables, ipt *iptables.IPTables, network string) error {
	tag := naming.ZoneTag(network)
	return withLock(func() error {
		s := &script{}
		for _, h := range zoneHooks {
			rules, ok, err := listChain(ipt, h.Table, h.Project)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			others := false
			for _, r := range rules {
				rt := specTag(strings.Fields(r))
				others = others || rt != tag && strings.HasPrefix(rt, naming.ZoneTag(""))
			}
			var del []int
			for i, r := range rules {
				if rt := specTag(strings.Fields(r)); rt == tag || rt == naming.ZoneRestoreTag && !others {
					del = append(del, i+1)
				}
			}
			for i := len(del) - 1; i >= 0; i-- {
				s.cmd(h.Table, "-D", h.Project, strconv.Itoa(del[i]))
			}
			if len(del) < len(rules) {
				continue // any rule, ours or not, keeps the chain
			}
			hooks, _, err := listChain(ipt, h.Table, h.Builtin)
			if err != nil {
				return err
			}
			if jumpsOf(hooks)[h.Project] {
				s.cmd(h.Table, append([]string{"-D", h.Builtin}, projectJump(h)...)...)
			}
			s.cmd(h.Table, "-X", h.Project)
		}
		if s.b.Len() == 0 {
			return nil
		}
		if err := x.usable(); err != nil {
			return err
		}
		return x.run(s)
	})
}
