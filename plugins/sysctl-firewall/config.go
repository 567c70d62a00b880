package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/sysctl"
)

// ifNamePlaceholder in a sysctl key stands for the interface the key is
// applied to: CNI_IFNAME in the pod, the host veth on the node.
const ifNamePlaceholder = "IFNAME"

// NetConf is the sysctl-firewall configuration.
type NetConf struct {
	types.PluginConf
	// Sysctls are written in the pod netns.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// HostSysctls are written on the node, for the host veth.
	HostSysctls map[string]string `json:"hostSysctls,omitempty"`
	// Masquerade NATs pod traffic leaving for outside the pod subnet.
	Masquerade bool `json:"masquerade,omitempty"`
	// AntiSpoofing drops pod packets whose source is not a pod address.
	AntiSpoofing bool `json:"antiSpoofing,omitempty"`
	// Uplink limits masquerade to traffic leaving by this interface;
	// empty means any interface but the pod's bridge.
	Uplink string `json:"uplink,omitempty"`
	// ConntrackZone puts the network's connections (entering from its
	// bridge) in this conntrack zone, 1..65535. nil (absent): the table of
	// the bridge's VRF when there is one and it fits, else off; 0: off.
	ConntrackZone *int `json:"conntrackZone,omitempty"`
}

// maxZone is the largest conntrack zone (a 16-bit id).
const maxZone = 65535

// kv is one resolved sysctl: a key in slash form and its value.
type kv struct {
	Key   string
	Value string
}

// parseConfig decodes stdin and validates it. Sysctl keys are checked
// against the net.* tree with a placeholder interface name; duplicates
// after substitution are caught by resolveSysctls.
func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cniutil.DecodeStrict("sysctl-firewall", stdin, conf); err != nil {
		return nil, err
	}
	for what, m := range map[string]map[string]string{"sysctls": conf.Sysctls, "hostSysctls": conf.HostSysctls} {
		if _, err := resolveSysctls(m, "eth0"); err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("%s: %w", what, err))
		}
	}
	if conf.Uplink != "" && utils.ValidateInterfaceName(conf.Uplink) != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("uplink %q is not a valid interface name", conf.Uplink))
	}
	if z := conf.ConntrackZone; z != nil && (*z < 0 || *z > maxZone) {
		return nil, cniutil.InvalidConfig(fmt.Errorf("conntrackZone %d is outside 0..%d", *z, maxZone))
	}
	return conf, nil
}

// resolveSysctls substitutes ifName for IFNAME in every key, converts keys
// to slash form (so interface names with dots survive) and validates them.
// The result is sorted by key. Two keys naming the same sysctl are refused.
func resolveSysctls(m map[string]string, ifName string) ([]kv, error) {
	out := make([]kv, 0, len(m))
	seen := map[string]string{}
	for key, value := range m {
		k := key
		if !strings.Contains(k, "/") {
			k = strings.ReplaceAll(k, ".", "/")
		}
		k = strings.ReplaceAll(k, ifNamePlaceholder, ifName)
		p, err := sysctl.Path(k)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[p]; dup {
			return nil, fmt.Errorf("sysctl keys %q and %q name the same sysctl %s", prev, key, p)
		}
		seen[p] = key
		out = append(out, kv{Key: k, Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
