package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := cniutil.GuardNetNS(args.Netns); err != nil {
		return err
	}
	prev, err := cniutil.PrevResult(&conf.PluginConf)
	if err != nil {
		return err
	}
	mac, err := conf.podMAC(args.Args)
	if err != nil {
		return err
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "veth-attach: CNI_NETNS %q: %v", args.Netns, err)
	}
	defer podNS.Close()
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return fmt.Errorf("open node netns: %w", err)
	}
	defer hostNS.Close()

	br, err := findBridge(conf.Bridge, prev)
	if err != nil {
		return err
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}
	hostName := naming.HostVethName(conf.Name, args.ContainerID, args.IfName)
	// Refuse before creating anything: a second ADD must not touch the first.
	if err := checkFree(podNS, args.IfName, hostName); err != nil {
		return err
	}

	success := false
	hostIf, podIf, err := ensureVeth(podNS, hostNS, args.IfName, hostName, mtu, mac)
	if err != nil {
		return err
	}
	defer func() {
		if !success {
			_ = deleteHostVeth(hostName)
		}
	}()
	tag := naming.AttachmentTag(conf.Name, args.ContainerID, args.IfName)
	if err := ensurePort(hostName, tag, br, conf.Hairpin); err != nil {
		return err
	}

	// Addresses: delegated IPAM, else the prevResult ips nobody owns yet.
	res := cniutil.NewResult(prev)
	var newIPs []*current.IPConfig
	var routes []*types.Route
	if conf.IPAM.Type != "" {
		r, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
		if err != nil {
			return ipamError("ADD", conf.IPAM.Type, err)
		}
		defer func() {
			if !success {
				_ = ipam.ExecDel(conf.IPAM.Type, args.StdinData)
			}
		}()
		ipamRes, err := current.NewResultFromResult(r)
		if err != nil {
			return fmt.Errorf("ipam %s result: %w", conf.IPAM.Type, err)
		}
		newIPs, routes = ipamRes.IPs, ipamRes.Routes
		res.IPs = append(res.IPs, ipamRes.IPs...)
		res.Routes = append(res.Routes, ipamRes.Routes...)
		cniutil.MergeDNS(&res.DNS, ipamRes.DNS)
	} else {
		for _, ipc := range res.IPs {
			if ipc.Interface == nil {
				newIPs = append(newIPs, ipc)
			}
		}
		routes = res.Routes
	}

	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String(), Mtu: hostIf.MTU},
		&current.Interface{Name: podIf.Name, Mac: podIf.HardwareAddr.String(), Mtu: podIf.MTU, Sandbox: args.Netns})
	podIdx := len(res.Interfaces) - 1
	for _, ipc := range newIPs {
		ipc.Interface = current.Int(podIdx)
	}

	if err := configurePod(podNS, podIf, newIPs, routes, conf.EnableDAD); err != nil {
		return err
	}
	if err := ensureGateways(br, newIPs); err != nil {
		return err
	}
	if err := waitForwarding(hostName); err != nil {
		return err
	}
	// Addresses may be reused with a new MAC: refresh neighbours' caches.
	announce(podNS, podIf, newIPs)
	success = true
	return types.PrintResult(res, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := cniutil.GuardNetNS(args.Netns); err != nil && !cniutil.IsGone(err) {
		return err
	}
	var errs []error
	if conf.IPAM.Type != "" {
		if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
			errs = append(errs, ipamError("DEL", conf.IPAM.Type, err))
		}
	}
	if args.Netns != "" {
		err := ns.WithNetNSPath(args.Netns, func(ns.NetNS) error { return deletePodVeth(args.IfName) })
		if err != nil && !cniutil.IsGone(err) {
			errs = append(errs, err)
		}
	}
	if err := deleteHostVeth(naming.HostVethName(conf.Name, args.ContainerID, args.IfName)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := cniutil.GuardNetNS(args.Netns); err != nil {
		return err
	}
	prev, err := cniutil.RequirePrevResult(&conf.PluginConf, "veth-attach")
	if err != nil {
		return err
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
			return ipamError("CHECK", conf.IPAM.Type, err)
		}
	}
	br, err := findBridge(conf.Bridge, prev)
	if err != nil {
		return err
	}
	return checkAttachment(args, conf, prev, br)
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecStatus(conf.IPAM.Type, args.StdinData); err != nil {
			return ipamError("STATUS", conf.IPAM.Type, err)
		}
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	var errs []error
	if conf.IPAM.Type != "" {
		if err := invoke.DelegateGC(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
			errs = append(errs, ipamError("GC", conf.IPAM.Type, err))
		}
	}
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if !present {
		fmt.Fprintln(os.Stderr, "veth-attach GC: no cni.dev/valid-attachments key; releasing nothing")
		return errors.Join(errs...)
	}
	errs = append(errs, gcHostVeths(naming.NetworkTag(conf.Name), valid)...)
	return errors.Join(errs...)
}

// parseTag splits an AttachmentTag after the network prefix into its
// container ID and ifname (neither may contain ':').
func parseTag(prefix, alias string) (cniutil.Attachment, bool) {
	rest, ok := strings.CutPrefix(alias, prefix)
	if !ok {
		return cniutil.Attachment{}, false
	}
	cid, ifname, ok := strings.Cut(rest, ":")
	if !ok || cid == "" || ifname == "" {
		return cniutil.Attachment{}, false
	}
	return cniutil.Attachment{ContainerID: cid, IfName: ifname}, true
}

// ipamError puts the verb and plugin in front of a delegated IPAM's error
// and keeps its CNI code (skel prints the innermost *types.Error, so a %w
// wrap alone would lose the context).
func ipamError(verb, plugin string, err error) error {
	var e *types.Error
	if errors.As(err, &e) {
		return types.NewError(e.Code, fmt.Sprintf("ipam %s %s: %s", plugin, verb, e.Msg), e.Details)
	}
	return fmt.Errorf("ipam %s %s: %w", plugin, verb, err)
}
