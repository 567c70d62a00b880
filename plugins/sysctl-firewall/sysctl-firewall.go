package main

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/pkg/cniutil"
)

// attachment names one (network, containerID, ifname).
type attachment struct {
	Network     string
	ContainerID string
	IfName      string
}

func attachmentOf(conf *NetConf, args *skel.CmdArgs) attachment {
	return attachment{Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

// plan is what ADD and CHECK derive from config, prevResult and the
// kernel before changing anything.
type plan struct {
	pod   *podInfo
	podKV []kv
	hostK []kv
	rules Rules
	zone  Rules // the network's conntrack zone rules (empty: no zone)
}

func makePlan(conf *NetConf, args *skel.CmdArgs, prev *current.Result) (*plan, error) {
	pod, err := findPod(prev, args.Netns, args.IfName)
	if err != nil {
		return nil, err
	}
	if pod.HostVeth == "" && (len(conf.HostSysctls) > 0 || conf.AntiSpoofing) {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
			"hostSysctls and antiSpoofing need the pod interface %s to be a veth with its peer in the node netns", args.IfName)
	}
	p := &plan{pod: pod}
	if p.podKV, err = resolveSysctls(conf.Sysctls, args.IfName); err != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("sysctls: %w", err))
	}
	if p.hostK, err = resolveSysctls(merge(conf.HostSysctls, conf.NodeSysctls), pod.HostVeth); err != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("hostSysctls and nodeSysctls: %w", err))
	}
	p.rules = renderRules(RuleInput{
		Addrs:        pod.Addrs,
		HostVeth:     pod.HostVeth,
		Bridge:       pod.Bridge,
		Uplink:       conf.Uplink,
		Masquerade:   conf.Masquerade,
		AntiSpoofing: conf.AntiSpoofing,
	})
	zone, mark, err := zoneOf(conf, pod)
	if err != nil {
		return nil, err
	}
	p.zone = renderZone(ZoneInput{Network: conf.Name, Bridge: pod.Bridge, Zone: zone, Mark: mark, Families: p.rules.Families()})
	if conf.AntiSpoofing && pod.Bridge != "" {
		for _, f := range p.rules.Families() {
			p.hostK = append(p.hostK, kv{Key: bridgeNFKey(f), Value: "1"})
		}
	}
	return p, nil
}

// load is what ADD and CHECK start with: the netns guard, the config, the
// required prevResult and the plan derived from them.
func load(args *skel.CmdArgs) (*NetConf, *current.Result, *plan, error) {
	if err := cniutil.GuardNetNS(args.Netns); err != nil {
		var e *types.Error
		if !errors.As(err, &e) {
			err = cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", args.Netns, err)
		}
		return nil, nil, nil, err
	}
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cniutil.CheckAttachment(args, conf.Name); err != nil {
		return nil, nil, nil, err
	}
	prev, err := cniutil.RequirePrevResult(&conf.PluginConf, "sysctl-firewall")
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := makePlan(conf, args, prev)
	if err != nil {
		return nil, nil, nil, err
	}
	return conf, prev, p, nil
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, prev, p, err := load(args)
	if err != nil {
		return err
	}
	if err := requireSysctls(args.Netns, p.podKV, p.hostK); err != nil {
		return err
	}
	// A failed ADD changes nothing: the sysctls written so far get their
	// old values back.
	var undo undoList
	defer func() {
		if err != nil {
			undo.run(args.Netns)
		}
	}()
	if err = ensurePodSysctls(args.Netns, p.podKV, &undo); err != nil {
		return err
	}
	if err = ensureHostSysctls(p.hostK, &undo, ""); err != nil {
		return err
	}
	if err = ensureRules(attachmentOf(conf, args), p.rules, p.zone); err != nil {
		return err
	}
	return types.PrintResult(cniutil.NewResult(prev), conf.CNIVersion)
}

// ensureRules installs the attachment's rules for every family that has
// some and makes sure the network's zone rules are there (one
// iptables-restore per family on the common path); on failure it removes
// the chains it created (zone rules are the network's and stay).
func ensureRules(a attachment, rules, zone Rules) (err error) {
	type made struct {
		x      *xtables
		tables []string
	}
	var done []made
	defer func() {
		if err == nil {
			return
		}
		for _, m := range done {
			if len(m.tables) > 0 {
				_ = m.x.del(a, m.tables, false)
			}
		}
	}()
	for _, f := range rules.Families() {
		x := newXtables(f)
		created, err := x.add(a, rules[f], zone[f])
		done = append(done, made{x, created})
		if err != nil {
			if errors.Is(err, errAttachmentExists) {
				return cniutil.Errorf(types.ErrInternal, "%s: %v (ADD repeated without DEL?)", f, err)
			}
			return fmt.Errorf("%s firewall: %w", f, err)
		}
	}
	return nil
}

// cmdDel removes the attachment's chains and jumps in both families and
// every table. It reads only the network name from the config (see
// teardownConf) and needs neither prevResult nor the netns; sysctls are
// not restored (the pod netns goes away with the pod, the host veth too).
func cmdDel(args *skel.CmdArgs) error {
	// Only the refusal of the host netns counts: a missing netns is normal.
	if err := cniutil.GuardNetNS(args.Netns); err != nil {
		var e *types.Error
		if errors.As(err, &e) && e.Code == types.ErrInvalidNetNS {
			return err
		}
	}
	tc, err := parseTeardown(args.StdinData)
	if err != nil {
		return err
	}
	return deleteRules(attachment{Network: tc.Name, ContainerID: args.ContainerID, IfName: args.IfName}, delFamilies(tc.Prev), tc.Tables)
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

func deleteRules(a attachment, families []Family, tables []string) error {
	var errs []error
	for _, f := range families {
		if err := newXtables(f).del(a, tables, true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, _, p, err := load(args)
	if err != nil {
		return err
	}
	if err := checkPodSysctls(args.Netns, p.podKV); err != nil {
		return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: pod: %v", err)
	}
	if err := checkHostSysctls(p.hostK); err != nil {
		return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: host: %v", err)
	}
	a := attachmentOf(conf, args)
	for _, f := range p.rules.Families() {
		x := newXtables(f)
		if x.check(a, p.rules[f], p.zone[f]) {
			continue
		}
		// Something is missing (or no restore): go-iptables rule by rule
		// names the first missing piece.
		ipt, err := x.iptables()
		if err != nil {
			return err
		}
		if err := checkAttachment(ipt, f, a, p.rules[f]); err != nil {
			return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: %v", err)
		}
		if err := checkZone(ipt, f, p.zone[f]); err != nil {
			return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: %v", err)
		}
	}
	return nil
}

// cmdStatus answers 50 unless the iptables binary runs.
func cmdStatus(args *skel.CmdArgs) error {
	if _, err := parseConfig(args.StdinData); err != nil {
		return err
	}
	if _, err := newIPTables(V4); err != nil {
		return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "sysctl-firewall: %v", err)
	}
	return nil
}

// cmdGC deletes every attachment of this network found in the project
// chains that is not in cni.dev/valid-attachments (one restore each, for
// the tables where its jump was found). With an empty list it also
// removes the network's conntrack zone rules (and the node-wide restore
// rule when no network's zone is left). Without the key it releases
// nothing.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseTeardown(args.StdinData)
	if err != nil {
		return err
	}
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil || !present {
		return err
	}
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
		found, err := listAttachments(ipt, conf.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
		for at, tables := range found {
			if valid[at] {
				continue
			}
			a := attachment{Network: conf.Name, ContainerID: at.ContainerID, IfName: at.IfName}
			if err := x.del(a, tables, true); err != nil {
				errs = append(errs, fmt.Errorf("%s %s/%s: %w", f, at.ContainerID, at.IfName, err))
			}
		}
		if len(valid) == 0 {
			if err := deleteZone(ipt, conf.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s conntrack zone: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}
