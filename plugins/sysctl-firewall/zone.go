package main

import (
	"errors"
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
// test them with -C lines inside the attachment's one iptables-restore
// per family, so an ensured network costs no extra exec; only a failing
// -C sends ADD to ensureZone. DEL leaves them; GC with an empty
// attachment list removes them.

// zoneMask is the part of the packet and connection mark the zone rules
// use: naming.EgressMarkMask, the mask of vrf-vxlan-bridge's egress rule.
const zoneMask = naming.EgressMarkMask

// zoneHooks are the chains holding zone rules, in script order after the
// attachment tables (raw comes after filter and nat; mangle is last).
var zoneHooks = []hook{
	{Table: "raw", Builtin: "PREROUTING", Project: naming.ZoneChain},
	{Table: "mangle", Builtin: "PREROUTING", Project: naming.ZoneChain},
}

func zoneHookOf(table string) hook {
	for _, h := range zoneHooks {
		if h.Table == table {
			return h
		}
	}
	panic("no zone hook for table " + table)
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

// zoneRuleNumbers lists naming.ZoneChain in table and returns the
// numbers (1-based) of its rules whose tag satisfies match, and whether
// any rule carries a network's zone tag.
func zoneRuleNumbers(ipt *iptables.IPTables, table string, match func(string) bool) (nums []int, anyNetwork bool, err error) {
	if ok, err := ipt.ChainExists(table, naming.ZoneChain); err != nil || !ok {
		if isNotExist(err) {
			err = nil
		}
		return nil, false, err
	}
	lines, err := ipt.List(table, naming.ZoneChain)
	if err != nil {
		return nil, false, fmt.Errorf("list %s/%s: %w", table, naming.ZoneChain, err)
	}
	n := 0
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "-A" {
			continue
		}
		n++
		tag := specTag(f)
		if strings.HasPrefix(tag, naming.ZoneTag("")) {
			anyNetwork = true
		}
		if match(tag) {
			nums = append(nums, n)
		}
	}
	return nums, anyNetwork, nil
}

// deleteNumbers deletes rules of naming.ZoneChain by number, last first.
func deleteNumbers(ipt *iptables.IPTables, table string, nums []int) error {
	for i := len(nums) - 1; i >= 0; i-- {
		if err := ipt.Delete(table, naming.ZoneChain, strconv.Itoa(nums[i])); err != nil {
			return fmt.Errorf("delete %s/%s rule %d: %w", table, naming.ZoneChain, nums[i], err)
		}
	}
	return nil
}

// zonePresent: the hook and every spec of table are there.
func zonePresent(ipt *iptables.IPTables, table string, specs [][]string) (bool, error) {
	h := zoneHookOf(table)
	if ok, err := ruleExists(ipt, table, h.Builtin, projectJump(h)); err != nil || !ok {
		return false, err
	}
	for _, s := range specs {
		if ok, err := ruleExists(ipt, table, h.Project, s); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// ensureZone makes table's zone rules of the network exactly specs: the
// zone chain and its hook, the network's rules (rules of the network that
// differ, e.g. after a change of zone or bridge, are replaced) and the
// node-wide restore rule. Cheap when all is there (the -C execs); changes
// happen under the lock, so concurrent first ADDs create each rule once.
func ensureZone(ipt *iptables.IPTables, network, table string, specs [][]string) error {
	if ok, err := zonePresent(ipt, table, specs); err != nil || ok {
		return err
	}
	// Chain, hook and rules under one lock: GC deletes an empty zone chain
	// (under the same lock), so the chain must not be left empty between.
	return withLock(func() error {
		if ok, err := zonePresent(ipt, table, specs); err != nil || ok {
			return err
		}
		if err := ensureProjectLocked(ipt, zoneHookOf(table)); err != nil {
			return err
		}
		tag := naming.ZoneTag(network)
		var mine, shared [][]string
		for _, s := range specs {
			if specTag(s) == tag {
				mine = append(mine, s)
			} else {
				shared = append(shared, s)
			}
		}
		// The network's rules go in as a set: if any is missing or
		// different, drop the network's old ones and append them all.
		complete := true
		for _, s := range mine {
			if ok, err := ruleExists(ipt, table, naming.ZoneChain, s); err != nil {
				return err
			} else if !ok {
				complete = false
			}
		}
		if !complete {
			nums, _, err := zoneRuleNumbers(ipt, table, func(t string) bool { return t == tag })
			if err != nil {
				return err
			}
			if err := deleteNumbers(ipt, table, nums); err != nil {
				return err
			}
			for _, s := range mine {
				if err := ipt.Append(table, naming.ZoneChain, s...); err != nil {
					return fmt.Errorf("zone rule %s/%s %v: %w", table, naming.ZoneChain, s, err)
				}
			}
		}
		for _, s := range shared {
			if ok, err := ruleExists(ipt, table, naming.ZoneChain, s); err != nil {
				return err
			} else if !ok {
				if err := ipt.Append(table, naming.ZoneChain, s...); err != nil {
					return fmt.Errorf("zone rule %s/%s %v: %w", table, naming.ZoneChain, s, err)
				}
			}
		}
		return nil
	})
}

// ensureZones ensures every table of a family's zone rules (go-iptables).
func ensureZones(ipt *iptables.IPTables, network string, zone map[string][][]string) error {
	for _, h := range zoneHooks {
		if specs := zone[h.Table]; len(specs) > 0 {
			if err := ensureZone(ipt, network, h.Table, specs); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkZone names the first missing zone rule of a family (CHECK's slow path).
func checkZone(ipt *iptables.IPTables, f Family, zone map[string][][]string) error {
	for _, h := range zoneHooks {
		specs := zone[h.Table]
		if len(specs) == 0 {
			continue
		}
		checks := []struct {
			chain string
			spec  []string
		}{{h.Builtin, projectJump(h)}}
		for _, sp := range specs {
			checks = append(checks, struct {
				chain string
				spec  []string
			}{h.Project, sp})
		}
		for _, c := range checks {
			ok, err := ruleExists(ipt, h.Table, c.chain, c.spec)
			if err != nil {
				return fmt.Errorf("%s %s/%s: %w", f, h.Table, c.chain, err)
			}
			if !ok {
				return fmt.Errorf("%s conntrack zone rule missing in %s/%s: %s", f, h.Table, c.chain, strings.Join(c.spec, " "))
			}
		}
	}
	return nil
}

// deleteZone removes the network's zone rules of one family from raw and
// mangle and, when no network's zone rule is left, the node-wide restore
// rule; a zone chain left empty goes too, with its hook (the next zone
// ADD recreates both), so after the last network's GC nothing of the
// zones remains.
func deleteZone(ipt *iptables.IPTables, network string) error {
	tag := naming.ZoneTag(network)
	return withLock(func() error {
		var errs []error
		for _, h := range zoneHooks {
			nums, _, err := zoneRuleNumbers(ipt, h.Table, func(t string) bool { return t == tag })
			if err == nil {
				err = deleteNumbers(ipt, h.Table, nums)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			nums, others, err := zoneRuleNumbers(ipt, h.Table, func(t string) bool { return t == naming.ZoneRestoreTag })
			if err == nil && !others {
				err = deleteNumbers(ipt, h.Table, nums)
			}
			if err == nil {
				err = deleteEmptyZoneChain(ipt, h)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// deleteEmptyZoneChain deletes the hook and the zone chain of h's table
// when the chain exists and holds no rule (any rule, ours or not, keeps it).
func deleteEmptyZoneChain(ipt *iptables.IPTables, h hook) error {
	if ok, err := ipt.ChainExists(h.Table, h.Project); err != nil || !ok {
		if isNotExist(err) {
			err = nil
		}
		return err
	}
	lines, err := ipt.List(h.Table, h.Project)
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", h.Table, h.Project, err)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			return nil
		}
	}
	if err := ipt.DeleteIfExists(h.Table, h.Builtin, projectJump(h)...); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete jump %s/%s -> %s: %w", h.Table, h.Builtin, h.Project, err)
	}
	if err := ipt.DeleteChain(h.Table, h.Project); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete chain %s/%s: %w", h.Table, h.Project, err)
	}
	return nil
}
