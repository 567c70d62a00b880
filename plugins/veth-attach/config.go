package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// NetConf is veth-attach's configuration.
type NetConf struct {
	types.PluginConf
	// Bridge is the bridge to attach to; default: the last bridge in prevResult.
	Bridge string `json:"bridge,omitempty"`
	// MTU of both veth ends; 0 means the bridge's MTU.
	MTU int `json:"mtu,omitempty"`
	// Hairpin turns on hairpin mode on the bridge port.
	Hairpin bool `json:"hairpin,omitempty"`
	// EnableDAD keeps IPv6 duplicate address detection on the pod
	// interface. Off by default, as in the reference bridge plugin: the
	// IPAM hands out unique addresses, and DAD makes every dual-stack ADD
	// wait about two seconds for the address to leave the tentative state.
	EnableDAD bool `json:"enableDad,omitempty"`

	RuntimeConfig struct {
		MAC string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	Args struct {
		CNI struct {
			MAC string `json:"mac,omitempty"`
		} `json:"cni,omitempty"`
	} `json:"args,omitempty"`
}

// Spec is the CNI part of the config (cniutil.Preamble).
func (c *NetConf) Spec() *types.PluginConf { return &c.PluginConf }

// macArgs is the CNI_ARGS form of the requested pod MAC.
type macArgs struct {
	types.CommonArgs
	MAC types.UnmarshallableString `json:"mac,omitempty"`
}

const (
	minMTU = 68
	maxMTU = 65535
)

// parseConfig decodes stdin, sets defaults and validates.
func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cniutil.DecodeStrict("veth-attach", stdin, conf); err != nil {
		return nil, err
	}
	if conf.Bridge != "" && len(conf.Bridge) > naming.MaxIfNameLen {
		return nil, cniutil.InvalidConfig(fmt.Errorf("bridge %q: longer than %d bytes", conf.Bridge, naming.MaxIfNameLen))
	}
	if conf.MTU != 0 && (conf.MTU < minMTU || conf.MTU > maxMTU) {
		return nil, cniutil.InvalidConfig(fmt.Errorf("mtu %d: must be between %d and %d (or 0 for the bridge's)", conf.MTU, minMTU, maxMTU))
	}
	for key, mac := range map[string]string{"runtimeConfig.mac": conf.RuntimeConfig.MAC, "args.cni.mac": conf.Args.CNI.MAC} {
		if err := validMAC(mac); err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("%s: %w", key, err))
		}
	}
	return conf, nil
}

func validMAC(mac string) error {
	if mac == "" {
		return nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("invalid MAC %q: %w", mac, err)
	}
	if len(hw) != 6 {
		return fmt.Errorf("invalid MAC %q: not an Ethernet address", mac)
	}
	if hw[0]&1 == 1 {
		return fmt.Errorf("invalid MAC %q: multicast", mac)
	}
	if bytes.Equal(hw, make(net.HardwareAddr, 6)) {
		return fmt.Errorf("invalid MAC %q: all zero", mac)
	}
	return nil
}

// podMAC is the MAC requested for the pod interface: runtimeConfig.mac wins
// over args.cni.mac, which wins over CNI_ARGS MAC. "" means kernel-chosen.
func (c *NetConf) podMAC(cniArgs string) (string, error) {
	if c.RuntimeConfig.MAC != "" {
		return c.RuntimeConfig.MAC, nil
	}
	if c.Args.CNI.MAC != "" {
		return c.Args.CNI.MAC, nil
	}
	if cniArgs == "" {
		return "", nil
	}
	a := macArgs{}
	a.IgnoreUnknown = true
	if err := types.LoadArgs(cniArgs, &a); err != nil {
		return "", cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: %v", err)
	}
	mac := string(a.MAC)
	if err := validMAC(mac); err != nil {
		return "", cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_ARGS MAC: %v", err)
	}
	return mac, nil
}

// teardownConf is all DEL and GC read: the network name (the host veth
// name and the GC tag derive from it) and ipam.type. Nothing else in the
// config — an mtu, mac or bridge that is invalid or changed since ADD, a
// malformed prevResult — can block a teardown.
type teardownConf struct {
	Name     string
	IPAMType string
}

// parseTeardown reads stdin leniently: an ipam block that does not decode
// names no IPAM (ADD could not have used it either); stderr says so.
func parseTeardown(stdin []byte) (*teardownConf, error) {
	raw, err := cniutil.DecodeTeardown(stdin)
	if err != nil {
		return nil, err
	}
	var ipamConf struct {
		Type string `json:"type"`
	}
	if err := raw.DecodeIPAM(&ipamConf); err != nil && !errors.Is(err, cniutil.ErrNoIPAM) {
		fmt.Fprintf(os.Stderr, "veth-attach: ignoring an ipam block that does not decode: %v\n", err)
	}
	return &teardownConf{Name: raw.Name, IPAMType: ipamConf.Type}, nil
}
