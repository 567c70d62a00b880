package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
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
	// HostSysctls are written on the node, for the host veth: only its own
	// keys, net.ipv4|ipv6.conf|neigh.IFNAME.<knob>.
	HostSysctls map[string]string `json:"hostSysctls,omitempty"`
	// NodeSysctls are node-wide keys written on the node (the opt-in for
	// keys such as net.ipv4.conf.all.rp_filter); IFNAME is refused.
	NodeSysctls map[string]string `json:"nodeSysctls,omitempty"`
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
	// Backend is the packet filter: "auto" (default), "nftables" or
	// "iptables"; see autoBackend.
	Backend string `json:"backend,omitempty"`
}

// Spec is the config's spec keys (cniutil.Preamble).
func (c *NetConf) Spec() *types.PluginConf { return &c.PluginConf }

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
	for what, m := range map[string]map[string]string{"sysctls": conf.Sysctls, "hostSysctls": conf.HostSysctls, "nodeSysctls": conf.NodeSysctls} {
		if _, err := resolveSysctls(m, "eth0"); err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("%s: %w", what, err))
		}
	}
	for key := range conf.HostSysctls {
		if !hostVethKey(key) {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"hostSysctls key %q is not one of the host veth's own keys (net.ipv4|ipv6.conf|neigh.IFNAME.<knob>); give a node-wide key in nodeSysctls", key)
		}
	}
	for key := range conf.NodeSysctls {
		if strings.Contains(key, ifNamePlaceholder) {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"nodeSysctls key %q: IFNAME has no meaning in a node-wide key (use hostSysctls for the host veth's keys)", key)
		}
	}
	if conf.Uplink != "" && utils.ValidateInterfaceName(conf.Uplink) != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("uplink %q is not a valid interface name", conf.Uplink))
	}
	if !validBackend(conf.Backend) {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "backend %q: want auto, nftables or iptables", conf.Backend)
	}
	if z := conf.ConntrackZone; z != nil && (*z < 0 || *z > maxZone) {
		return nil, cniutil.InvalidConfig(fmt.Errorf("conntrackZone %d is outside 0..%d", *z, maxZone))
	}
	return conf, nil
}

// hostVethKey: key (dotted or slashed) is net/ipv4|ipv6/conf|neigh/IFNAME/<knob>,
// a sysctl of the host veth alone.
func hostVethKey(key string) bool {
	parts := strings.Split(slashed(key), "/")
	return len(parts) == 5 && parts[0] == "net" && (parts[1] == "ipv4" || parts[1] == "ipv6") &&
		(parts[2] == "conf" || parts[2] == "neigh") && parts[3] == ifNamePlaceholder && parts[4] != ""
}

// slashed is key in slash form: dots become slashes unless it has a slash.
func slashed(key string) string {
	if strings.Contains(key, "/") {
		return key
	}
	return strings.ReplaceAll(key, ".", "/")
}

// merge is the union of two key sets (for the duplicate check across them).
func merge(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// resolveSysctls substitutes ifName for IFNAME in every key, converts keys
// to slash form (so interface names with dots survive) and validates them.
// The result is sorted by key. Two keys naming the same sysctl are refused.
func resolveSysctls(m map[string]string, ifName string) ([]kv, error) {
	out := make([]kv, 0, len(m))
	seen := map[string]string{}
	for key, value := range m {
		k := strings.ReplaceAll(slashed(key), ifNamePlaceholder, ifName)
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

// teardownConf is all DEL and GC take from the config: the network name,
// from which every name they delete is derived, and hints that only save
// work. Nothing else is validated, so a config that changed since ADD, or
// never was valid, cannot block a pod's removal.
type teardownConf struct {
	Name string
	// Tables the config gives rules in: filter, nat with masquerade, raw
	// with antiSpoofing; every table when a flag does not decode.
	Tables []string
	// Prev is prevResult when it decodes and is well formed, else nil.
	Prev *current.Result
}

// parseTeardown reads a teardownConf. It fails only when there is no
// network name to derive names from (skel refuses that earlier).
func parseTeardown(stdin []byte) (*teardownConf, error) {
	var raw map[string]json.RawMessage
	if err := cniutil.Decode(stdin, &raw); err != nil {
		return nil, err
	}
	tc := &teardownConf{}
	if err := json.Unmarshal(raw["name"], &tc.Name); err != nil || tc.Name == "" {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "missing network name")
	}
	tc.Tables = []string{"filter"}
	for key, table := range map[string]string{"masquerade": "nat", "antiSpoofing": "raw"} {
		var on bool
		if v, ok := raw[key]; ok && json.Unmarshal(v, &on) != nil {
			on = true // unreadable: look there too
		}
		if on {
			tc.Tables = append(tc.Tables, table)
		}
	}
	tc.Tables = sortTables(tc.Tables)
	var pc types.PluginConf
	if json.Unmarshal(stdin, &pc) == nil {
		if prev, err := cniutil.PrevResult(&pc); err == nil && wellFormed(prev) {
			tc.Prev = prev
		}
	}
	return tc, nil
}

// wellFormed: prev has no null entries in interfaces and ips and every ip
// has an address (what the teardown hints read).
func wellFormed(prev *current.Result) bool {
	if prev == nil {
		return false
	}
	for _, i := range prev.Interfaces {
		if i == nil {
			return false
		}
	}
	for _, ipc := range prev.IPs {
		if ipc == nil || ipc.Address.IP == nil {
			return false
		}
	}
	return true
}
