package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// lockName serialises only the slow paths that create node-wide objects
// (the project chains and their jumps, the nftables tables, the zone
// rules), so concurrent first ADDs do not create them twice. The fast path
// (they exist) takes no lock. The lock belongs to the node's network
// namespace (cniutil.NetNSLock), not to a file: no path to configure or to
// be redirected through a symlink.
const lockName = "sysctl-firewall"

// iptablesWait is passed as --wait: seconds to wait for the xtables lock.
const iptablesWait = 30

func newIPTables(f Family) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if f == V6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(iptablesWait))
	if err != nil {
		return nil, fmt.Errorf("%s iptables: %w", f, err)
	}
	return ipt, nil
}

// isNotExist reports an iptables error that says a chain or rule is absent.
func isNotExist(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}

func isChainExists(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.ExitStatus() == 1 && strings.Contains(err.Error(), "already exists")
}

// ruleExists is Exists that also answers false when the rule's chain or
// target chain is missing (iptables exits 2 for those).
func ruleExists(ipt *iptables.IPTables, table, chain string, spec []string) (bool, error) {
	ok, err := ipt.Exists(table, chain, spec...)
	if err != nil && isNotExist(err) {
		return false, nil
	}
	return ok, err
}

// ensureProject makes sure table's project chain exists and is jumped to
// from its built-in chain (inserted at position 1). One exec when it
// already is; concurrent creators serialise on lockName.
func ensureProject(ipt *iptables.IPTables, h hook) error {
	if ok, err := ruleExists(ipt, h.Table, h.Builtin, projectJump(h)); err != nil || ok {
		return err
	}
	return withLock(func() error { return ensureProjectLocked(ipt, h) })
}

// ensureProjectLocked is ensureProject's work, for a caller holding lockName.
func ensureProjectLocked(ipt *iptables.IPTables, h hook) error {
	if ok, err := ruleExists(ipt, h.Table, h.Builtin, projectJump(h)); err != nil || ok {
		return err
	}
	if err := ipt.NewChain(h.Table, h.Project); err != nil && !isChainExists(err) {
		return fmt.Errorf("create chain %s/%s: %w", h.Table, h.Project, err)
	}
	if err := ipt.Insert(h.Table, h.Builtin, 1, projectJump(h)...); err != nil {
		return fmt.Errorf("jump %s/%s -> %s: %w", h.Table, h.Builtin, h.Project, err)
	}
	return nil
}

// withLock runs fn holding the node's lockName (code 11 when it is not
// acquired within iptablesWait seconds). Not reentrant.
func withLock(fn func() error) error {
	return cniutil.NetNSLock(lockName, iptablesWait*time.Second, fn)
}

// errAttachmentExists: the attachment's chain is already there (a second
// ADD for the same containerID and ifname). Nothing is changed.
var errAttachmentExists = errors.New("attachment chain already exists")

// ensureAttachment creates the attachment's chain in every table that has
// rules, fills it and then appends the tagged jump from the project chain.
// It returns the tables whose chain it created, for rollback.
func ensureAttachment(ipt *iptables.IPTables, a attachment, tables map[string][][]string) (created []string, err error) {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	for _, h := range Hooks {
		rules := tables[h.Table]
		if len(rules) == 0 {
			continue
		}
		if err := ensureProject(ipt, h); err != nil {
			return created, err
		}
		if err := ipt.NewChain(h.Table, chain); err != nil {
			if isChainExists(err) {
				return created, fmt.Errorf("%s/%s: %w", h.Table, chain, errAttachmentExists)
			}
			return created, fmt.Errorf("create chain %s/%s: %w", h.Table, chain, err)
		}
		created = append(created, h.Table)
		for _, r := range rules {
			if err := ipt.Append(h.Table, chain, r...); err != nil {
				return created, fmt.Errorf("rule %s/%s %v: %w", h.Table, chain, r, err)
			}
		}
		if err := ipt.Append(h.Table, h.Project, attachmentJump(a.Network, a.ContainerID, a.IfName)...); err != nil {
			return created, fmt.Errorf("jump %s/%s -> %s: %w", h.Table, h.Project, chain, err)
		}
	}
	return created, nil
}

// deleteAttachment removes the attachment's jump and chain from the given
// tables (all when tables is nil). Absent chains and rules are success.
func deleteAttachment(ipt *iptables.IPTables, a attachment, tables []string) error {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	var errs []error
	for _, h := range Hooks {
		if tables != nil && !contains(tables, h.Table) {
			continue
		}
		ok, err := ipt.ChainExists(h.Table, chain)
		if err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("look up %s/%s: %w", h.Table, chain, err))
			continue
		}
		if !ok {
			continue
		}
		if err := ipt.Delete(h.Table, h.Project, attachmentJump(a.Network, a.ContainerID, a.IfName)...); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete jump %s/%s -> %s: %w", h.Table, h.Project, chain, err))
			continue
		}
		if err := ipt.ClearAndDeleteChain(h.Table, chain); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete chain %s/%s: %w", h.Table, chain, err))
		}
	}
	return errors.Join(errs...)
}

// checkAttachment verifies the built-in and project jumps and every rule
// of the attachment's chains.
func checkAttachment(ipt *iptables.IPTables, f Family, a attachment, tables map[string][][]string) error {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	for _, h := range Hooks {
		rules := tables[h.Table]
		if len(rules) == 0 {
			continue
		}
		checks := []struct {
			chain string
			spec  []string
		}{
			{h.Builtin, projectJump(h)},
			{h.Project, attachmentJump(a.Network, a.ContainerID, a.IfName)},
		}
		for _, r := range rules {
			checks = append(checks, struct {
				chain string
				spec  []string
			}{chain, r})
		}
		for _, c := range checks {
			ok, err := ruleExists(ipt, h.Table, c.chain, c.spec)
			if err != nil {
				return fmt.Errorf("%s %s/%s: %w", f, h.Table, c.chain, err)
			}
			if !ok {
				return fmt.Errorf("%s rule missing in %s/%s: %s", f, h.Table, c.chain, strings.Join(c.spec, " "))
			}
		}
	}
	return nil
}

// listAttachments returns the attachments of network that have a jump in
// any project chain of this family, with the tables where they do.
func listAttachments(ipt *iptables.IPTables, network string) (map[cniutil.Attachment][]string, error) {
	found := map[cniutil.Attachment][]string{}
	var errs []error
	for _, h := range Hooks {
		// iptables-nft answers -S on a chain of a table it never created
		// with an "incompatible" error, so ask about the chain first.
		if ok, err := ipt.ChainExists(h.Table, h.Project); err != nil || !ok {
			if err != nil {
				errs = append(errs, fmt.Errorf("look up %s/%s: %w", h.Table, h.Project, err))
			}
			continue
		}
		lines, err := ipt.List(h.Table, h.Project)
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s/%s: %w", h.Table, h.Project, err))
			continue
		}
		for _, a := range parseTags(lines, network) {
			if !contains(found[a], h.Table) {
				found[a] = append(found[a], h.Table)
			}
		}
	}
	return found, errors.Join(errs...)
}

// parseTags extracts the attachments of network from `iptables -S` lines
// of a project chain: the value of --comment, optionally quoted, must start
// with naming.NetworkTag(network) and carry "<containerID>:<ifname>" after it.
func parseTags(lines []string, network string) []cniutil.Attachment {
	var out []cniutil.Attachment
	for _, line := range lines {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "--comment" {
				continue
			}
			if cid, ifName, ok := naming.ParseAttachmentTag(network, strings.Trim(f[i+1], `"`)); ok {
				out = append(out, cniutil.Attachment{ContainerID: cid, IfName: ifName})
			}
			break
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
