package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

const (
	pluginName         = "lockfile-ipam"
	defaultDataDir     = "/var/lib/cni/vxvrf-ipam"
	defaultLockTimeout = 10 * time.Second
)

// IPAMConfig is the `ipam` block. Its keys are host-local's, plus
// lockTimeout. The legacy single-range keys (subnet, rangeStart, rangeEnd,
// gateway) sit directly in the block through the embedded *Range.
type IPAMConfig struct {
	*allocator.Range
	Type        string               `json:"type"`
	Ranges      []allocator.RangeSet `json:"ranges"`
	Routes      []*types.Route       `json:"routes"`
	DataDir     string               `json:"dataDir"`
	ResolvConf  string               `json:"resolvConf"`
	LockTimeout string               `json:"lockTimeout"`
}

// NetConf is the whole network configuration. IPAM plugins get the
// calling plugin's complete config, so only the keys below matter here.
type NetConf struct {
	types.PluginConf
	IPAM          *IPAMConfig `json:"ipam"`
	RuntimeConfig struct {
		IPRanges []allocator.RangeSet `json:"ipRanges,omitempty"`
		IPs      []string             `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args,omitempty"`

	// Derived by parseConfig.
	Stage     bool                 `json:"-"` // run as a chain stage, not as delegated IPAM
	Sets      []allocator.RangeSet `json:"-"` // runtimeConfig.ipRanges, legacy range, ranges
	Requested []net.IP             `json:"-"` // requested addresses, in order
	Timeout   time.Duration        `json:"-"`
	DataDir   string               `json:"-"`
	DNS       types.DNS            `json:"-"`
}

// envArgs is CNI_ARGS. Unknown keys (K8S_POD_*, ...) are always accepted.
type envArgs struct {
	types.CommonArgs
	IP ipList `json:"ip,omitempty"`
}

// ipList is a comma separated list of addresses (CNI_ARGS IP=a,b).
type ipList []net.IP

func (l *ipList) UnmarshalText(b []byte) error {
	for _, s := range strings.Split(string(b), ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := parseIP(s)
		if err != nil {
			return err
		}
		*l = append(*l, a)
	}
	return nil
}

// parseIP accepts "a.b.c.d" or "a.b.c.d/len" (the prefix is ignored).
func parseIP(s string) (net.IP, error) {
	if a, _, err := net.ParseCIDR(s); err == nil {
		return a, nil
	}
	a := net.ParseIP(s)
	if a == nil {
		return nil, fmt.Errorf("invalid IP address %q", s)
	}
	if v4 := a.To4(); v4 != nil {
		a = v4
	}
	return a, nil
}

// parseBase decodes stdin and resolves what DEL and GC need (network,
// dataDir, lockTimeout), without validating ranges: releasing a lease must
// not depend on ADD-only preconditions.
func parseBase(stdin []byte) (*NetConf, error) {
	// Malformed JSON is a decoding failure (6); well-formed JSON with bad
	// values (a CIDR that does not parse, a string where a list belongs) is
	// an invalid configuration (7).
	var raw map[string]json.RawMessage
	if err := cniutil.Decode(stdin, &raw); err != nil {
		return nil, err
	}
	conf := &NetConf{}
	if err := cniutil.CheckKeys(pluginName, stdin, conf, "ipam"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("%s: %w", pluginName, err))
	}
	if conf.IPAM == nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("%s: missing the \"ipam\" block", pluginName))
	}
	conf.Stage = conf.IPAM.Type == "" || conf.IPAM.Type == conf.Type
	if err := cniutil.CheckStageKeys(pluginName, stdin, conf, conf.Stage); err != nil {
		return nil, err
	}
	conf.DataDir = conf.IPAM.DataDir
	if conf.DataDir == "" {
		conf.DataDir = defaultDataDir
	}
	if !filepath.IsAbs(conf.DataDir) {
		return nil, cniutil.InvalidConfig(fmt.Errorf("ipam.dataDir %q must be an absolute path", conf.DataDir))
	}
	conf.DataDir = filepath.Clean(conf.DataDir)
	conf.Timeout = defaultLockTimeout
	if conf.IPAM.LockTimeout != "" {
		d, err := time.ParseDuration(conf.IPAM.LockTimeout)
		if err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("ipam.lockTimeout %q: %w", conf.IPAM.LockTimeout, err))
		}
		if d <= 0 {
			return nil, cniutil.InvalidConfig(fmt.Errorf("ipam.lockTimeout %q must be positive", conf.IPAM.LockTimeout))
		}
		conf.Timeout = d
	}
	return conf, nil
}

// parseConfig decodes stdin and CNI_ARGS, sets defaults and validates
// everything ADD, CHECK and STATUS need.
func parseConfig(stdin []byte, cniArgs string) (*NetConf, error) {
	conf, err := parseBase(stdin)
	if err != nil {
		return nil, err
	}

	// Range sets: runtimeConfig.ipRanges, then the legacy single range,
	// then ranges (host-local's order).
	var sets []allocator.RangeSet
	sets = append(sets, conf.RuntimeConfig.IPRanges...)
	if r := conf.IPAM.Range; r != nil {
		if r.Subnet.IP == nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("ipam: rangeStart, rangeEnd or gateway given without subnet"))
		}
		sets = append(sets, allocator.RangeSet{*r})
	}
	sets = append(sets, conf.IPAM.Ranges...)
	if err := allocator.Canonicalize(sets); err != nil {
		return nil, cniutil.InvalidConfig(fmt.Errorf("ipam: %w", err))
	}
	conf.Sets = sets

	for i, r := range conf.IPAM.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("ipam.routes[%d]: missing dst", i))
		}
	}

	// Requested addresses: args.cni.ips wins over CNI_ARGS IP (CNI
	// conventions); runtimeConfig.ips (capability "ips") are added.
	var req []net.IP
	if conf.Args != nil && conf.Args.CNI != nil && len(conf.Args.CNI.IPs) > 0 {
		for _, s := range conf.Args.CNI.IPs {
			a, err := parseIP(s)
			if err != nil {
				return nil, cniutil.InvalidConfig(fmt.Errorf("args.cni.ips: %w", err))
			}
			req = append(req, a)
		}
	} else if cniArgs != "" {
		e := envArgs{}
		// Runtimes send K8S_POD_* and other keys: never fail on unknown ones.
		if err := types.LoadArgs(cniArgs+";IgnoreUnknown=1", &e); err != nil {
			return nil, cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: %v", err)
		}
		req = append(req, e.IP...)
	}
	for _, s := range conf.RuntimeConfig.IPs {
		a, err := parseIP(s)
		if err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("runtimeConfig.ips: %w", err))
		}
		req = append(req, a)
	}
	conf.Requested = dedupIPs(req)

	if conf.IPAM.ResolvConf != "" {
		dns, err := parseResolvConf(conf.IPAM.ResolvConf)
		if err != nil {
			return nil, cniutil.InvalidConfig(fmt.Errorf("ipam.resolvConf: %w", err))
		}
		conf.DNS = *dns
	}
	return conf, nil
}

func dedupIPs(in []net.IP) []net.IP {
	seen := map[string]bool{}
	var out []net.IP
	for _, a := range in {
		if !seen[a.String()] {
			seen[a.String()] = true
			out = append(out, a)
		}
	}
	return out
}

// parseResolvConf reads nameserver, domain, search and options lines.
func parseResolvConf(path string) (*types.DNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dns := &types.DNS{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			dns.Nameservers = append(dns.Nameservers, fields[1])
		case "domain":
			dns.Domain = fields[1]
		case "search":
			dns.Search = append(dns.Search, fields[1:]...)
		case "options":
			dns.Options = append(dns.Options, fields[1:]...)
		}
	}
	return dns, sc.Err()
}
