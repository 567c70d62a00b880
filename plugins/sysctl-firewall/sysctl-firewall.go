package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
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
	pod     *podInfo
	podKV   []kv
	hostK   []kv
	policy  *Policy
	backend Backend
}

// makePlan derives the plan. forCheck: with backend auto, the attachment
// is checked where its state is (checkBackend), whatever auto would pick
// for a new ADD now.
func makePlan(conf *NetConf, args *skel.CmdArgs, prev *current.Result, forCheck bool) (*plan, error) {
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
	zone, mark, err := zoneOf(conf, pod)
	if err != nil {
		return nil, err
	}
	p.policy = &Policy{
		Addrs:        pod.Addrs,
		HostVeth:     pod.HostVeth,
		Bridge:       pod.Bridge,
		VRF:          pod.VRF,
		Uplink:       conf.Uplink,
		Masquerade:   conf.Masquerade,
		AntiSpoofing: conf.AntiSpoofing,
		Zone:         zone,
		Mark:         mark,
	}
	if forCheck && (conf.Backend == "" || conf.Backend == BackendAuto) {
		p.backend = checkBackend(attachmentOf(conf, args))
	} else {
		p.backend = chooseBackend(conf.Backend, conf.Name)
	}
	if p.backend.Name() == BackendIPTables && p.policy.Spoofable() && pod.Bridge != "" {
		// iptables sees bridged frames only through br_netfilter.
		for _, f := range p.policy.Families() {
			p.hostK = append(p.hostK, kv{Key: bridgeNFKey(f), Value: "1"})
		}
	}
	return p, nil
}

// load is what ADD and CHECK start with: the command preamble
// (cniutil.ChainedPreamble: prevResult is required) and the plan derived
// from it. Nothing is changed.
func load(args *skel.CmdArgs, forCheck bool) (*NetConf, *current.Result, *plan, error) {
	conf, prev, err := cniutil.ChainedPreamble(args, "sysctl-firewall", parseConfig)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := makePlan(conf, args, prev, forCheck)
	if err != nil {
		return nil, nil, nil, err
	}
	return conf, prev, p, nil
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, prev, p, err := load(args, false)
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
	vlog.Set("backend", p.backend.Name())
	if err = p.backend.Add(attachmentOf(conf, args), p.policy); err != nil {
		return err
	}
	logAdded(p.policy, undo)
	return types.PrintResult(cniutil.NewResult(prev), conf.CNIVersion)
}

// cmdDel removes the attachment's firewall state from every backend that
// may hold some (teardownBackends). It reads only the network name from
// the config (see teardownConf) and needs neither prevResult nor the
// netns; sysctls are not restored (the pod netns goes away with the pod,
// the host veth too).
func cmdDel(args *skel.CmdArgs) error {
	// Only the refusal of the host netns counts: a missing netns is normal.
	tc, err := cniutil.DelPreamble(args, parseTeardown)
	if err != nil {
		return err
	}
	a := attachment{Network: tc.Name, ContainerID: args.ContainerID, IfName: args.IfName}
	var errs []error
	vlog.Did("cleaned")
	for _, b := range teardownBackends() {
		if err := b.Del(a, tc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), err))
			continue
		}
		vlog.Did("cleaned", b.Name())
	}
	return errors.Join(errs...)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, _, p, err := load(args, true)
	if err != nil {
		return err
	}
	if err := checkPodSysctls(args.Netns, p.podKV); err != nil {
		return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: pod: %v", err)
	}
	if err := checkHostSysctls(p.hostK); err != nil {
		return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check: host: %v", err)
	}
	if err := p.backend.Check(attachmentOf(conf, args), p.policy); err != nil {
		var e *types.Error
		if errors.As(err, &e) {
			return err
		}
		return cniutil.Errorf(types.ErrInternal, "sysctl-firewall check (%s): %v", p.backend.Name(), err)
	}
	return nil
}

// cmdStatus answers 50 unless the configured backend (auto: the one auto
// picks for a new ADD of this network now) can work.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	b := chooseBackend(conf.Backend, conf.Name)
	if err := b.Status(); err != nil {
		return statusError(b, err)
	}
	return nil
}

// cmdGC deletes, in every backend that may hold state of ours, each
// attachment of this network that is not in cni.dev/valid-attachments;
// with an empty list also the network's shared objects (conntrack zone
// rules, masquerade chains). Without the key it releases nothing.
func cmdGC(args *skel.CmdArgs) error {
	tc, err := parseTeardown(args.StdinData)
	if err != nil {
		return err
	}
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil || !present {
		return err
	}
	var errs []error
	vlog.Set("kept", strconv.Itoa(len(valid)))
	vlog.Did("cleaned")
	for _, b := range teardownBackends() {
		if err := b.GC(tc.Name, valid); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), err))
			continue
		}
		vlog.Did("cleaned", b.Name())
	}
	return errors.Join(errs...)
}

// logAdded records for ADD's log line the sysctls ADD wrote (pod: those
// in the pod netns; those already right are not listed) and the firewall
// objects the policy put in the backend, named by what they do (forward,
// masquerade of a pod address, anti-spoofing on the host veth, the
// network's conntrack zone): taken from the policy, not from a dump of
// the kernel.
func logAdded(p *Policy, undo undoList) {
	var set []string
	for _, w := range undo {
		if w.where != "" {
			set = append(set, "pod:"+w.key)
		} else {
			set = append(set, w.key)
		}
	}
	vlog.Did("sysctls_set", set...)
	var added []string
	for _, a := range p.Addrs {
		added = append(added, "forward:"+a.IP.String())
		if p.Masquerade {
			added = append(added, "masquerade:"+a.IP.String())
		}
	}
	if p.Spoofable() {
		added = append(added, "antispoofing:"+p.HostVeth)
	}
	if p.Zone != 0 && p.Bridge != "" {
		added = append(added, "zone:"+strconv.Itoa(p.Zone))
	}
	vlog.Did("added", added...)
	vlog.L().Debug("firewall policy", "addrs", len(p.Addrs), "hostVeth", p.HostVeth, "bridge", p.Bridge, "vrf", p.VRF, "uplink", p.Uplink)
}
