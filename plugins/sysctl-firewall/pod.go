package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/sysctl"
)

// podInfo is the pod side of an attachment as the kernel and prevResult
// describe it.
type podInfo struct {
	Addrs    []PodAddr
	HostVeth string // "" when the pod interface is not a veth
	Bridge   string // master of the host veth when it is a bridge
	VRFTable uint32 // table of the bridge's master when it is a VRF (0: none)
}

// findPod finds the pod interface in prevResult (sandbox == netns, name ==
// ifname), its addresses (ips pointing at it) and its veth peer in the
// node netns, whatever plugin created the veth.
func findPod(prev *current.Result, netnsPath, ifName string) (*podInfo, error) {
	idx := -1
	for i, iface := range prev.Interfaces {
		if iface != nil && iface.Sandbox == netnsPath && iface.Name == ifName {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
			"prevResult has no interface %q with sandbox %q", ifName, netnsPath)
	}
	pod := &podInfo{}
	for _, ipc := range prev.IPs {
		if ipc == nil || ipc.Interface == nil || *ipc.Interface != idx {
			continue
		}
		if ipc.Address.IP == nil || ipc.Address.Mask == nil {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "prevResult ips: an address of %s has no IP or prefix", ifName)
		}
		a := PodAddr{IP: ipc.Address.IP}
		a.Subnet = &net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask}
		pod.Addrs = append(pod.Addrs, a)
	}
	peer, podIndex := 0, 0
	err := inPodNS(netnsPath, func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "prevResult names pod interface %s in %s, but it is not there: %v", ifName, netnsPath, err)
		}
		veth, ok := link.(*netlink.Veth)
		if !ok {
			return nil
		}
		podIndex = link.Attrs().Index
		peer = link.Attrs().ParentIndex
		if peer == 0 {
			if peer, err = netlink.VethPeerIndex(veth); err != nil {
				return fmt.Errorf("veth peer of %s: %w", ifName, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if peer == 0 {
		return pod, nil
	}
	host, err := netlink.LinkByIndex(peer)
	if err != nil {
		return nil, fmt.Errorf("host end (ifindex %d) of pod interface %s: %w", peer, ifName, err)
	}
	if host.Type() != "veth" || host.Attrs().ParentIndex != podIndex {
		return nil, fmt.Errorf("ifindex %d in the node netns (%s %s) is not the peer of pod interface %s",
			peer, host.Type(), host.Attrs().Name, ifName)
	}
	pod.HostVeth = host.Attrs().Name
	if m := host.Attrs().MasterIndex; m != 0 {
		master, err := netlink.LinkByIndex(m)
		if err != nil {
			return nil, fmt.Errorf("master of %s: %w", pod.HostVeth, err)
		}
		if master.Type() == "bridge" {
			pod.Bridge = master.Attrs().Name
			if pod.VRFTable, err = vrfTableOf(master); err != nil {
				return nil, err
			}
		}
	}
	return pod, nil
}

// vrfTableOf is the table of the bridge's master when that is a VRF, else
// 0. One netlink lookup, only for a bridge that has a master.
func vrfTableOf(br netlink.Link) (uint32, error) {
	m := br.Attrs().MasterIndex
	if m == 0 {
		return 0, nil
	}
	master, err := netlink.LinkByIndex(m)
	if err != nil {
		return 0, fmt.Errorf("master of bridge %s: %w", br.Attrs().Name, err)
	}
	if vrf, ok := master.(*netlink.Vrf); ok {
		return vrf.Table, nil
	}
	return 0, nil
}

// bridgeNFKey is the node sysctl that makes bridged frames of a family
// traverse iptables (per netns since Linux 5.3).
func bridgeNFKey(f Family) string {
	if f == V6 {
		return "net/bridge/bridge-nf-call-ip6tables"
	}
	return "net/bridge/bridge-nf-call-iptables"
}

// written is one sysctl ADD changed, with its old value; where is the
// pod netns path, or "" for the node.
type written struct {
	where, key, old string
}

// undoList is what ADD wrote, for its rollback.
type undoList []written

// run writes the old values back, last first, pod keys inside netnsPath.
// Best effort: the rollback of a failed ADD.
func (u undoList) run(netnsPath string) {
	for i := len(u) - 1; i >= 0; i-- {
		w := u[i]
		if w.where == "" {
			_ = sysctl.Set(w.key, w.old)
			continue
		}
		_ = inPodNS(netnsPath, func(ns.NetNS) error { return sysctl.Set(w.key, w.old) })
	}
}

// ensurePodSysctls writes the sysctls inside the pod netns.
func ensurePodSysctls(netnsPath string, kvs []kv, undo *undoList) error {
	if len(kvs) == 0 {
		return nil
	}
	return inPodNS(netnsPath, func(ns.NetNS) error {
		return ensureHostSysctls(kvs, undo, netnsPath)
	})
}

// ensureHostSysctls writes the sysctls in the current netns (the node's,
// or the pod's when where names it), skipping those that already hold the
// value and recording the old value of each it writes in undo. A value
// the kernel refuses (or reads back differently) is the config's fault:
// code 7; only a permission error is the plugin's (999).
func ensureHostSysctls(kvs []kv, undo *undoList, where string) error {
	for _, s := range kvs {
		old, err := sysctl.Get(s.Key)
		if err != nil {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "sysctl %s cannot be read: %v", s.Key, err)
		}
		if old == strings.TrimSpace(s.Value) {
			continue
		}
		*undo = append(*undo, written{where: where, key: s.Key, old: old})
		if err := sysctl.Set(s.Key, s.Value); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("sysctl: %w", err)
			}
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "sysctl %s=%q not applied: %v", s.Key, s.Value, err)
		}
	}
	return nil
}

func checkPodSysctls(netnsPath string, kvs []kv) error {
	if len(kvs) == 0 {
		return nil
	}
	return inPodNS(netnsPath, func(ns.NetNS) error {
		return checkHostSysctls(kvs)
	})
}

func checkHostSysctls(kvs []kv) error {
	for _, s := range kvs {
		if err := sysctl.Check(s.Key, s.Value); err != nil {
			return err
		}
	}
	return nil
}

// requireSysctls refuses (code 7) keys that name no sysctl, in the pod
// netns or on the node, before anything is written.
func requireSysctls(netnsPath string, pod, host []kv) error {
	missing := func(kvs []kv, where string) error {
		for _, s := range kvs {
			p, err := sysctl.Path(s.Key)
			if err != nil {
				return cniutil.InvalidConfig(err)
			}
			st, err := os.Stat(p)
			if err != nil {
				return cniutil.Errorf(types.ErrInvalidNetworkConfig, "sysctl %s does not exist %s", s.Key, where)
			}
			if st.IsDir() {
				return cniutil.Errorf(types.ErrInvalidNetworkConfig, "sysctl %s %s is a directory, not a value", s.Key, where)
			}
		}
		return nil
	}
	if len(pod) > 0 {
		if err := inPodNS(netnsPath, func(ns.NetNS) error { return missing(pod, "in the pod netns") }); err != nil {
			return err
		}
	}
	return missing(host, "on the node (antiSpoofing on a bridge needs br_netfilter)")
}

// inPodNS runs fn inside the netns at path (cniutil.InNS: a panic in fn
// comes back as an error). A path that cannot be opened is code 4.
func inPodNS(path string, fn func(ns.NetNS) error) error {
	netns, err := ns.GetNS(path)
	if err != nil {
		return cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", path, err)
	}
	defer netns.Close()
	return cniutil.InNS(netns, fn)
}
