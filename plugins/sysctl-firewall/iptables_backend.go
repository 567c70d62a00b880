package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// iptablesBackend is the iptables (and ip6tables) backend: per attachment
// a chain per table jumped to from the project chains, tagged with the
// attachment (rules.go), and the network's conntrack zone rules
// (zone.go). Every change and check is an iptables-restore batch, one per
// family on the common path; go-iptables finds the binary and lists
// (restore.go, iptables.go).
type iptablesBackend struct{}

func (iptablesBackend) Name() string { return BackendIPTables }

// Status: iptables and a restore of its flavour are there, iptables is
// 1.6.2 or later (restore --wait) and can read the filter table
// (`iptables --version`, `iptables -S FORWARD 1`).
func (iptablesBackend) Status() error {
	x := newXtables(V4)
	if err := x.usable(); err != nil {
		return err
	}
	ipt, err := x.iptables()
	if err != nil {
		return err
	}
	if _, err := ipt.ChainExists("filter", "FORWARD"); err != nil {
		return fmt.Errorf("iptables cannot read the filter table: %w", err)
	}
	return nil
}

// rulesOf renders the policy as iptables rule specs.
func rulesOf(a attachment, p *Policy) (rules, zone Rules) {
	rules = renderRules(RuleInput{
		Addrs:        p.Addrs,
		HostVeth:     p.HostVeth,
		Bridge:       p.Bridge,
		Uplink:       p.Uplink,
		Masquerade:   p.Masquerade,
		AntiSpoofing: p.AntiSpoofing,
	})
	zone = renderZone(ZoneInput{Network: a.Network, Bridge: p.Bridge, Zone: p.Zone, Mark: p.Mark, Families: rules.Families()})
	return rules, zone
}

// Add installs the policy family by family (xtables.add); if a family
// fails, the attachment is deleted from every family tried (zone rules are
// the network's and stay), so a failed ADD leaves nothing of it.
func (iptablesBackend) Add(a attachment, p *Policy) error {
	rules, zone := rulesOf(a, p)
	var tried []*xtables
	for _, f := range rules.Families() {
		x := newXtables(f)
		tried = append(tried, x)
		if err := x.add(a, rules[f], zone[f]); err != nil {
			for _, done := range tried {
				_ = done.del(a, hookTables())
			}
			return fmt.Errorf("%s firewall: %w", f, err)
		}
	}
	return nil
}

func (iptablesBackend) Del(a attachment, tc *teardownConf) error {
	var errs []error
	for _, f := range delFamilies(tc.Prev) {
		if err := newXtables(f).del(a, tc.Tables); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// Check runs each family's probes in one restore (xtables.check).
func (iptablesBackend) Check(a attachment, p *Policy) error {
	rules, zone := rulesOf(a, p)
	for _, f := range rules.Families() {
		x := newXtables(f)
		if err := x.usable(); err != nil {
			return err
		}
		if err := x.check(probesOf(a, rules[f], zone[f])); err != nil {
			return err
		}
	}
	return nil
}

// GC lists the project chains per family (-S), takes the tags of network,
// deletes (as DEL, for the tables where its jump was found) every
// attachment not in valid, and with an empty list the network's zone rules.
func (iptablesBackend) GC(network string, valid map[cniutil.Attachment]bool) error {
	var errs []error
	for _, f := range Families {
		x := newXtables(f)
		if x.path == "" {
			continue
		}
		ipt, err := x.iptables()
		if err != nil {
			continue
		}
		found, err := listAttachments(ipt, network)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
		for at, tables := range found {
			if valid[at] {
				continue
			}
			a := attachment{Network: network, ContainerID: at.ContainerID, IfName: at.IfName}
			if err := x.del(a, tables); err != nil {
				errs = append(errs, fmt.Errorf("%s %s/%s: %w", f, at.ContainerID, at.IfName, err))
			}
		}
		if len(valid) == 0 {
			if err := deleteZone(x, ipt, network); err != nil {
				errs = append(errs, fmt.Errorf("%s conntrack zone: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}

// iptablesMayHaveState: iptables may hold chains of ours in this netns,
// found without an exec: legacy tables are loaded (their content is not
// visible without one), or iptables-nft's tables (family ip / ip6) have a
// chain named VXVRF-…, or nf_tables cannot be asked.
func iptablesMayHaveState() bool {
	for _, f := range []string{"/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"} {
		if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return true
		}
	}
	chains, _, err := xtChains()
	return err != nil || len(chains) > 0
}

// iptablesHolds: the attachment has a chain of its own
// (naming.AttachmentChain) in iptables-nft, one netlink dump, no exec.
// iptables-legacy is not looked into: with its filter table loaded auto
// picks iptables anyway.
func iptablesHolds(a attachment) bool {
	chains, _, err := xtChains()
	if err != nil {
		return false
	}
	name := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	for _, ch := range chains {
		if ch.Name == name {
			return true
		}
	}
	return false
}

// iptablesHoldsNetwork: a rule in one of our project chains of
// iptables-nft (the attachments' jumps, the zone rules) carries a tag of
// network, read over netlink without an exec; true also when nf_tables
// cannot be read (then nothing speaks for nftables).
func iptablesHoldsNetwork(network string) bool {
	chains, c, err := xtChains()
	if err != nil {
		return true
	}
	projects := []string{naming.ZoneChain}
	for _, h := range Hooks {
		projects = append(projects, h.Project)
	}
	for _, ch := range chains {
		if !contains(projects, ch.Name) {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return true
		}
		for _, r := range rules {
			tag := ruleComment(r)
			if strings.HasPrefix(tag, naming.NetworkTag(network)) || tag == naming.ZoneTag(network) {
				return true
			}
		}
	}
	return false
}

// xtChains lists the chains named VXVRF-… of the ip and ip6 nf_tables
// families (iptables-nft's tables), with the connection to read them.
func xtChains() ([]*nftables.Chain, *nftables.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, nil, err
	}
	all, err := c.ListChains()
	if err != nil {
		return nil, nil, err
	}
	var out []*nftables.Chain
	for _, ch := range all {
		fam := ch.Table.Family
		if (fam == nftables.TableFamilyIPv4 || fam == nftables.TableFamilyIPv6) && strings.HasPrefix(ch.Name, naming.Prefix+"-") {
			out = append(out, ch)
		}
	}
	return out, c, nil
}

// ruleComment is the comment of an iptables-nft rule: the rule's userdata
// comment (how iptables-nft stores `-m comment`), or an xt comment match.
func ruleComment(r *nftables.Rule) string {
	for ud := r.UserData; len(ud) >= 2; {
		typ, n := ud[0], int(ud[1])
		if len(ud) < 2+n {
			break
		}
		if userdata.Type(typ) == userdata.TypeComment {
			return strings.TrimRight(string(ud[2:2+n]), "\x00")
		}
		ud = ud[2+n:]
	}
	for _, e := range r.Exprs {
		if m, ok := e.(*expr.Match); ok && m.Name == "comment" {
			if c, ok := m.Info.(*xt.Comment); ok {
				return string(*c)
			}
		}
	}
	return ""
}

// delFamilies is both families, or only those of prevResult's addresses
// when DEL got a well-formed prevResult that has some (ADD derived its
// rules from the same result, so the other family has nothing). It saves
// the execs of a family that was never used.
func delFamilies(prev *current.Result) []Family {
	if prev == nil || len(prev.IPs) == 0 {
		return Families
	}
	var out []Family
	for _, f := range Families {
		for _, ipc := range prev.IPs {
			if familyOf(ipc.Address.IP) == f {
				out = append(out, f)
				break
			}
		}
	}
	return out
}
