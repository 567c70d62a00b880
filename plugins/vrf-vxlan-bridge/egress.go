package main

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/naming"
)

// VRF egress (vrf.egress). A pod in a VRF sends traffic for outside the
// overlay to its gateway; the VRF's table knows only the pod subnet. With
// egress, the table also gets the node's default route(s) through the
// uplink (route leaking: the next hop is a device outside the VRF), so the
// traffic leaves by the uplink, where sysctl-firewall masquerades it.
//
// Replies arrive on the uplink, outside any VRF; after the masquerade is
// undone their destination is a pod address that several VRFs may share.
// They are steered back by the connection mark: sysctl-firewall marks the
// tenant's connections (conntrack mark table<<16, restored onto reply
// packets in mangle PREROUTING) and this plugin adds the policy rule
//
//	fwmark <table<<16>/0xffff0000 lookup <table>  (priority EgressRulePriority)
//
// so the reply is routed by the tenant's table into the tenant's bridge.
// The copied routes and the rule carry naming.RouteProtocol: GC deletes
// only those (and the previous release's, recognised in legacyEgress*).
// The table doubles as the conntrack zone (CT --zone-orig) that keeps two
// tenants' identical flows (same source address and port) apart, hence at
// most 65535.
// The mark and its mask are naming.EgressMark and naming.EgressMarkMask,
// shared with sysctl-firewall.
const (
	MaxEgressTable     = naming.MaxMarkTable
	EgressRulePriority = 900 // before the l3mdev rule (1000) and main (32766)
)

func egressRule(table int64, family int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Mark = naming.EgressMark(table)
	m := naming.EgressMarkMask
	r.Mask = &m
	r.Table = int(table)
	r.Priority = EgressRulePriority
	r.Protocol = naming.RouteProtocol
	return r
}

// mainDefaults returns the main table's default routes of the family
// that leave through the uplink.
func mainDefaults(up netlink.Link, family int) ([]netlink.Route, error) {
	rs, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Table: syscall.RT_TABLE_MAIN, LinkIndex: up.Attrs().Index}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, fmt.Errorf("list main-table routes of %s: %w", up.Attrs().Name, err)
	}
	var out []netlink.Route
	for _, r := range rs {
		if naming.IsDefaultRoute(r.Dst) {
			out = append(out, r)
		}
	}
	return out, nil
}

// leaked is the VRF-table copy of a main-table default route.
func leaked(r netlink.Route, table int64) *netlink.Route {
	return &netlink.Route{
		Family:    r.Family,
		Dst:       r.Dst,
		Gw:        r.Gw,
		LinkIndex: r.LinkIndex,
		Table:     int(table),
		Protocol:  naming.RouteProtocol,
	}
}

// ensureEgress copies the uplink's main-table default routes into the VRF
// table and adds the reply rule, for each family with a default route. A
// copy or rule the previous release made (without our protocol) is
// replaced by a marked one.
func ensureEgress(c *VRFConf, up netlink.Link) error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		defs, err := mainDefaults(up, fam)
		if err != nil {
			return err
		}
		if len(defs) == 0 {
			continue
		}
		for _, r := range defs {
			if err := netlink.RouteReplace(leaked(r, c.Table)); err != nil {
				return fmt.Errorf("vrf egress: default via %s dev %s table %d: %w", r.Gw, up.Attrs().Name, c.Table, err)
			}
		}
		if err := netlink.RuleAdd(egressRule(c.Table, fam)); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("vrf egress: rule fwmark %#x/%#x lookup %d: %w", naming.EgressMark(c.Table), naming.EgressMarkMask, c.Table, err)
		}
		if err := deleteLegacyEgressRules(c.Table, fam); err != nil {
			return err
		}
	}
	return nil
}

// checkEgress verifies a default route in the VRF table and the rule for
// each family that has a default route on the uplink.
func checkEgress(c *VRFConf, up netlink.Link) error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		defs, err := mainDefaults(up, fam)
		if err != nil || len(defs) == 0 {
			continue
		}
		rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: int(c.Table), LinkIndex: up.Attrs().Index}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
		if err != nil {
			return fmt.Errorf("list table %d: %w", c.Table, err)
		}
		found := false
		for _, r := range rs {
			if naming.IsDefaultRoute(r.Dst) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("vrf %s: no egress default route via %s in table %d", c.Name, up.Attrs().Name, c.Table)
		}
		if len(egressRules(c.Table, fam, naming.RouteProtocol, legacyRuleProtocol)) == 0 {
			return fmt.Errorf("vrf %s: no rule fwmark %#x/%#x lookup %d", c.Name, naming.EgressMark(c.Table), naming.EgressMarkMask, c.Table)
		}
	}
	return nil
}

// legacyRuleProtocol is the protocol of the previous release's egress
// rule: none (unspec).
const legacyRuleProtocol = 0

// egressRules lists the rules of the family with the egress rule's
// selector, table and priority, and one of the protocols.
func egressRules(table int64, fam int, protos ...uint8) []netlink.Rule {
	rules, err := netlinksafe.RuleList(fam)
	if err != nil {
		return nil
	}
	var out []netlink.Rule
	for _, r := range rules {
		if r.Table == int(table) && r.Mark == naming.EgressMark(table) && r.Mask != nil && *r.Mask == naming.EgressMarkMask &&
			r.Priority == EgressRulePriority && slices.Contains(protos, r.Protocol) {
			out = append(out, r)
		}
	}
	return out
}

// deleteLegacyEgressRules deletes the previous release's egress rules
// (the same rule without a protocol). A delete without a protocol matches
// a rule of any protocol, so a marked or foreign rule it takes instead is
// put back.
func deleteLegacyEgressRules(table int64, fam int) error {
	for i := 0; i < 8 && len(egressRules(table, fam, legacyRuleProtocol)) > 0; i++ {
		before := egressRules(table, fam, allProtocols()...)
		del := egressRule(table, fam)
		del.Protocol = legacyRuleProtocol
		if err := netlink.RuleDel(del); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("delete the previous release's rule fwmark %#x lookup %d: %w", naming.EgressMark(table), table, err)
		}
		count := map[uint8]int{}
		for _, r := range egressRules(table, fam, allProtocols()...) {
			count[r.Protocol]++
		}
		for _, r := range before {
			if r.Protocol == legacyRuleProtocol {
				continue
			}
			if count[r.Protocol] > 0 {
				count[r.Protocol]--
				continue
			}
			back := egressRule(table, fam)
			back.Protocol = r.Protocol
			if err := netlink.RuleAdd(back); err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("restore rule fwmark %#x lookup %d proto %d: %w", naming.EgressMark(table), table, r.Protocol, err)
			}
		}
	}
	return nil
}

func allProtocols() []uint8 {
	out := make([]uint8, 256)
	for i := range out {
		out[i] = uint8(i)
	}
	return out
}

// legacyEgressRoutes are the previous release's copies in the VRF table:
// default routes without our protocol that equal a main-table default
// route (gateway, device and protocol copied).
func legacyEgressRoutes(table int64) []netlink.Route {
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		mains, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: syscall.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			continue
		}
		rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: int(table)}, netlink.RT_FILTER_TABLE)
		if err != nil {
			continue
		}
		for _, r := range rs {
			if r.Protocol == naming.RouteProtocol || !naming.IsDefaultRoute(r.Dst) {
				continue
			}
			for _, m := range mains {
				if naming.IsDefaultRoute(m.Dst) && m.LinkIndex == r.LinkIndex && m.Gw.Equal(r.Gw) && m.Protocol == r.Protocol {
					out = append(out, r)
					break
				}
			}
		}
	}
	return out
}

// deleteEgress removes the VRF table's egress: the rules and the routes of
// the table that carry our protocol, the previous release's rules, and
// legacyRoutes (the previous release's routes, see legacyEgressRoutes).
// Routes other software put in the table stay. Absent ones are fine.
func deleteEgress(table int64, legacyRoutes []netlink.Route) error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		for i := 0; i < 8 && len(egressRules(table, fam, naming.RouteProtocol)) > 0; i++ {
			if err := netlink.RuleDel(egressRule(table, fam)); err != nil {
				if !errors.Is(err, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("delete egress rule of table %d: %w", table, err))
				}
				break
			}
		}
		if err := deleteLegacyEgressRules(table, fam); err != nil {
			errs = append(errs, err)
		}
		rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Table: int(table), Protocol: naming.RouteProtocol}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rs {
			errs = append(errs, deleteRoute(r))
		}
	}
	for _, r := range legacyRoutes {
		errs = append(errs, deleteRoute(r))
	}
	return errors.Join(errs...)
}

// deleteRoute deletes r exactly (its protocol too); absent is fine.
func deleteRoute(r netlink.Route) error {
	if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("delete route %s table %d: %w", r.Dst, r.Table, err)
	}
	return nil
}
