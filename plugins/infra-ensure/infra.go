package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/kernel"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/sysctl"
	"github.com/vxvrf/cni/pkg/uplink"
)

func cmdAdd(args *skel.CmdArgs) error {
	conf, prev, err := cniutil.Preamble(args, parseConfig)
	if err != nil {
		return err
	}
	link, err := resolveUplink(conf, types.ErrInvalidNetworkConfig, types.ErrTryAgainLater)
	if err != nil {
		return err
	}
	vlog.Set("uplink", link.Attrs().Name)
	vlog.L().Debug("uplink", "name", link.Attrs().Name, "mtu", link.Attrs().MTU, "oper", link.Attrs().OperState.String())
	if err := probeFeatures(); err != nil {
		return err
	}
	// Everything that can fail on the config comes before the node
	// sysctls: a refused ADD leaves them as they were.
	if err := ensureStateDir(conf.StateDir); err != nil {
		return err
	}
	if err := ensureSysctls(link.Attrs().Name); err != nil {
		return err
	}
	result := cniutil.NewResult(prev)
	appendUplink(result, link)
	return types.PrintResult(result, conf.CNIVersion)
}

// cmdDel has nothing to undo per attachment: the node prerequisites stay
// for the other attachments and networks.
func cmdDel(args *skel.CmdArgs) error {
	vlog.Did("removed")
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, _, err := cniutil.Preamble(args, parseConfig)
	if err != nil {
		return err
	}
	if _, err := resolveUplink(conf, types.ErrInvalidNetworkConfig, types.ErrTryAgainLater); err != nil {
		return err
	}
	if err := checkSysctls(); err != nil {
		return cniutil.Errorf(types.ErrInternal, "infra-ensure check: %v", err)
	}
	if st, err := os.Stat(conf.StateDir); err != nil || !st.IsDir() {
		return cniutil.Errorf(types.ErrInternal, "infra-ensure check: stateDir %s is missing", conf.StateDir)
	}
	return nil
}

// cmdStatus answers 50 unless an ADD could succeed: the uplink exists, is
// up and carries the VTEP address, and the kernel has a bridge.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := resolveUplink(conf, cniutil.ErrPluginNotAvailable, cniutil.ErrPluginNotAvailable); err != nil {
		return err
	}
	if err := probeFeatures(); err != nil {
		return err
	}
	return nil
}

// cmdGC has nothing to release: infra-ensure keeps no per-attachment state.
func cmdGC(args *skel.CmdArgs) error {
	vlog.Did("removed")
	return nil
}

// resolveUplink finds the uplink, checks that it is up and that it carries
// the local address. missing is the code for a configured uplink that does
// not exist; notReady for one that is down or lacks its address.
func resolveUplink(conf *NetConf, missing, notReady uint) (netlink.Link, error) {
	link, err := uplink.Find(conf.Uplink)
	if err != nil {
		if errors.Is(err, uplink.ErrNoDefaultRoute) {
			return nil, cniutil.Errorf(notReady, "infra-ensure: %v", err)
		}
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, cniutil.Errorf(missing, "infra-ensure: uplink %q does not exist in the node's network namespace", conf.Uplink)
		}
		return nil, cniutil.Errorf(types.ErrInternal, "infra-ensure: %v", err)
	}
	if err := uplink.Ready(link); err != nil {
		return nil, cniutil.Errorf(notReady, "infra-ensure: %v", err)
	}
	if _, err := uplink.Address(link, conf.localIP); err != nil {
		code := notReady
		if conf.localIP != nil {
			code = missing
		}
		return nil, cniutil.Errorf(code, "infra-ensure: localAddress: %v", err)
	}
	return link, nil
}

// probeFeatures checks the kernel features the topology needs that can be
// seen without creating devices. A feature is there when its module is
// loaded or built in with parameters (/sys/module/<name>), or listed in
// modules.builtin or modules.dep of the running kernel (a module not loaded
// yet is loaded by the kernel on first use). veth shows in none of these
// when built in, so it is assumed, as is VRF, which vrf-vxlan-bridge probes
// when it creates the VRF.
func probeFeatures() error {
	if !kernelHas("bridge") {
		return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "infra-ensure: the kernel has no Linux bridge support (CONFIG_BRIDGE): bridge is neither loaded, built in nor an available module")
	}
	if !kernelHas("vxlan") {
		fmt.Fprintln(os.Stderr, "infra-ensure: warning: the kernel shows no vxlan support (CONFIG_VXLAN); networks with vxlan will fail")
	}
	return nil
}

// kernelHas reports whether module name is loaded, built in or loadable
// (kernel.Has). Without module lists and without /sys/module there is
// nothing to look at, and the feature is assumed; with /sys/module but no
// lists, a feature absent from it is missing.
func kernelHas(name string) bool {
	switch kernel.Has(name) {
	case kernel.Loaded, kernel.Available:
		return true
	case kernel.Unknown:
		_, err := os.Stat("/sys/module")
		return err != nil
	}
	return false
}

// setting is one node sysctl the topology needs; an optional one is
// skipped where the kernel lacks it (no IPv6, no L3 master devices).
type setting struct {
	key, value string
	optional   bool
}

// ipv6Forwarding is the setting ensureSysctls guards with accept_ra.
const ipv6Forwarding = "net.ipv6.conf.all.forwarding"

// nodeSysctls lists the sysctls to hold in the node namespace.
func nodeSysctls() []setting {
	return []setting{
		{"net.ipv4.ip_forward", "1", false},
		{ipv6Forwarding, "1", true},
		// L3 master device (VRF) support: sockets bound in the default
		// VRF accept connections arriving through a VRF.
		{"net.ipv4.tcp_l3mdev_accept", "1", true},
		{"net.ipv4.udp_l3mdev_accept", "1", true},
	}
}

// openSetting opens s's sysctl; nil, nil for an optional one the kernel
// lacks.
func openSetting(o *sysctl.Opener, s setting) (*sysctl.File, error) {
	f, err := o.Open(s.key)
	if s.optional && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// ensureSysctls writes the node sysctls, skipping those already right,
// with one open of each and one walk of each directory (sysctl.Opener). Before IPv6 forwarding goes on, an
// uplink that accepts router advertisements (accept_ra=1) is switched to
// accept_ra=2, so the node keeps its SLAAC address and default route. The
// verb line lists the sysctls it set and those that were already right
// (unchanged); the values are at debug level.
func ensureSysctls(uplinkName string) error {
	vlog.Did("set")
	vlog.Did("unchanged")
	o := sysctl.NewOpener()
	defer o.Close()
	for _, s := range nodeSysctls() {
		if err := ensureSetting(o, s, uplinkName); err != nil {
			return cniutil.Errorf(types.ErrInternal, "infra-ensure: %v", err)
		}
	}
	return nil
}

func ensureSetting(o *sysctl.Opener, s setting, uplinkName string) error {
	f, err := openSetting(o, s)
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	was, err := f.Get()
	if err != nil {
		return err
	}
	if was == s.value {
		vlog.Did("unchanged", s.key)
		return nil
	}
	if s.key == ipv6Forwarding {
		if err := keepRouterAdvertisements(o, uplinkName); err != nil {
			return err
		}
	}
	if err := f.Set(s.value); err != nil {
		return err
	}
	vlog.Did("set", s.key)
	vlog.L().Debug("sysctl set", "key", s.key, "value", s.value, "was", was)
	return nil
}

// keepRouterAdvertisements switches the uplink's accept_ra from 1 to 2
// (accept them with forwarding on); absent or other values stay.
func keepRouterAdvertisements(o *sysctl.Opener, uplinkName string) error {
	key := "net/ipv6/conf/" + uplinkName + "/accept_ra"
	f, err := o.Open(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if ra, err := f.Get(); err != nil || ra != "1" {
		return err
	}
	if err := f.Set("2"); err != nil {
		return err
	}
	vlog.Did("set", "net.ipv6.conf."+uplinkName+".accept_ra")
	vlog.L().Debug("sysctl set", "key", key, "value", "2", "was", "1")
	return nil
}

// checkSysctls verifies every node sysctl holds.
func checkSysctls() error {
	var errs []error
	o := sysctl.NewOpener()
	defer o.Close()
	for _, s := range nodeSysctls() {
		f, err := openSetting(o, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f == nil {
			continue
		}
		if got, err := f.Get(); err != nil {
			errs = append(errs, err)
		} else if got != s.value {
			errs = append(errs, fmt.Errorf("sysctl %s is %q, want %q", s.key, got, s.value))
		}
		_ = f.Close()
	}
	return errors.Join(errs...)
}

func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cniutil.Errorf(types.ErrIOFailure, "infra-ensure: create stateDir: %v", err)
	}
	return nil
}

// appendUplink adds the uplink as a host interface (no sandbox) unless the
// result already lists it.
func appendUplink(result *current.Result, link netlink.Link) {
	a := link.Attrs()
	for _, i := range result.Interfaces {
		if i.Name == a.Name && i.Sandbox == "" {
			return
		}
	}
	result.Interfaces = append(result.Interfaces, &current.Interface{
		Name: a.Name,
		Mac:  a.HardwareAddr.String(),
		Mtu:  a.MTU,
	})
}
