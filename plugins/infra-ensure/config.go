package main

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/vxvrf/cni/pkg/cniutil"
)

// DefaultStateDir is where the chain keeps node-local state.
const DefaultStateDir = "/run/vxvrf"

// NetConf is the infra-ensure configuration.
type NetConf struct {
	types.PluginConf
	// Uplink is the interface VXLAN rides on and egress leaves by; empty
	// means the interface of the default route.
	Uplink string `json:"uplink,omitempty"`
	// LocalAddress is the VTEP address; it must be on the uplink. Empty
	// means the uplink's first global address.
	LocalAddress string `json:"localAddress,omitempty"`
	// StateDir is created (0755) for the stages' node-local state.
	StateDir string `json:"stateDir,omitempty"`

	localIP net.IP
}

// Spec is the config's spec keys (cniutil.Preamble).
func (c *NetConf) Spec() *types.PluginConf { return &c.PluginConf }

// parseConfig decodes stdin, sets the defaults and validates.
func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cniutil.DecodeStrict("infra-ensure", stdin, conf); err != nil {
		return nil, err
	}
	if conf.Uplink != "" && utils.ValidateInterfaceName(conf.Uplink) != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("uplink %q is not a valid interface name", conf.Uplink))
	}
	if conf.LocalAddress != "" {
		conf.localIP = net.ParseIP(conf.LocalAddress)
		if conf.localIP == nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("localAddress %q is not an IP address", conf.LocalAddress))
		}
		if !conf.localIP.IsGlobalUnicast() {
			return nil, cniutil.InvalidConfig(fmt.Errorf("localAddress %s is not a global unicast address", conf.LocalAddress))
		}
	}
	if conf.StateDir == "" {
		conf.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(conf.StateDir) {
		return nil, cniutil.InvalidConfig(fmt.Errorf("stateDir %q must be an absolute path", conf.StateDir))
	}
	conf.StateDir = filepath.Clean(conf.StateDir)
	return conf, nil
}
