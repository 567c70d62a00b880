package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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

// Spec is the config's spec keys (cniutil.Preamble).
func (c *NetConf) Spec() *types.PluginConf { return &c.PluginConf }

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

// parseBase decodes stdin and resolves network, dataDir and lockTimeout
// for ADD, CHECK and STATUS. Malformed JSON is a decoding failure (6);
// well-formed JSON with bad values (a CIDR that does not parse, a string
// where a list belongs) is an invalid configuration (7).
func parseBase(stdin []byte) (*NetConf, error) {
	var raw map[string]json.RawMessage
	if err := cniutil.Decode(stdin, &raw); err != nil {
		return nil, err
	}
	// A prevResult that is not an object does not decode as a result (6);
	// one that decodes but is malformed is cniutil.PrevResult's 7.
	if p, ok := raw["prevResult"]; ok && string(p) != "null" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p, &obj); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "failed to parse prevResult", err.Error())
		}
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
	dataDir, err := resolveDataDir(conf.IPAM.DataDir)
	if err != nil {
		return nil, cniutil.InvalidConfig(err)
	}
	conf.DataDir = dataDir
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

func resolveDataDir(dir string) (string, error) {
	if dir == "" {
		return defaultDataDir, nil
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("ipam.dataDir %q must be an absolute path", dir)
	}
	return filepath.Clean(dir), nil
}

// teardownConf is all DEL and GC read: the network name and where its
// state lives. Ranges, routes, resolvConf, cniVersion-specific keys — all
// that may be invalid or changed since ADD — are not looked at.
type teardownConf struct {
	Name    string
	DataDir string // "" when ipam.dataDir is unusable: nothing can be there
	Timeout time.Duration
}

// parseTeardown reads stdin leniently: only JSON that does not parse at
// all fails (6). An unusable ipam block or dataDir leaves DataDir empty
// (ADD never used it, so nothing was leased there) and a bad lockTimeout
// falls back to the default; stderr says so.
func parseTeardown(stdin []byte) (*teardownConf, error) {
	raw, err := cniutil.DecodeTeardown(stdin)
	if err != nil {
		return nil, err
	}
	tc := &teardownConf{Name: raw.Name, Timeout: defaultLockTimeout}
	var ipamConf struct {
		DataDir     string `json:"dataDir"`
		LockTimeout string `json:"lockTimeout"`
	}
	if err := raw.DecodeIPAM(&ipamConf); err != nil {
		fmt.Fprintf(os.Stderr, "%s: no usable ipam block (%v): nothing to release\n", pluginName, err)
		return tc, nil
	}
	dir, err := resolveDataDir(ipamConf.DataDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v: nothing to release\n", pluginName, err)
		return tc, nil
	}
	tc.DataDir = dir
	if d, err := time.ParseDuration(ipamConf.LockTimeout); err == nil && d > 0 {
		tc.Timeout = d
	}
	return tc, nil
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

// maxResolvConf bounds what parseResolvConf reads (glibc's resolv.conf is
// a few hundred bytes).
const maxResolvConf = 64 << 10

// Values parseResolvConf passes on: an IP address for nameserver; a domain
// name for domain and search; an option token such as "ndots:5",
// "rotate", "timeout:2".
var (
	domainSyntax = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$`)
	optionSyntax = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(:[0-9]{1,5})?$`)
)

// parseResolvConf reads the DNS settings of a resolv.conf(5) file. It runs
// as root on a path from the config, so it reads only what resolv.conf
// syntax allows into the result: the path must be absolute and name (a
// symlink is followed, /etc/resolv.conf usually is one) a regular file of
// at most 64 KiB; only nameserver lines with an IP address, domain and
// search lines with domain names and options lines with option tokens are
// taken, other lines and invalid values are skipped. A file that yields
// nothing is an error: it is not a resolv.conf.
func parseResolvConf(path string) (*types.DNS, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%q must be an absolute path", path)
	}
	// O_NONBLOCK: a FIFO in its place must not block the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > maxResolvConf {
		return nil, fmt.Errorf("%s is larger than %d bytes; not a resolv.conf", path, maxResolvConf)
	}
	dns := &types.DNS{}
	found := false
	sc := bufio.NewScanner(io.LimitReader(f, maxResolvConf))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0][0] == '#' || fields[0][0] == ';' {
			continue
		}
		switch vals := fields[1:]; fields[0] {
		case "nameserver":
			if addr, _, _ := strings.Cut(vals[0], "%"); net.ParseIP(addr) != nil { // fe80::1%eth0
				dns.Nameservers = append(dns.Nameservers, vals[0])
				found = true
			}
		case "domain":
			if domainSyntax.MatchString(vals[0]) {
				dns.Domain, found = vals[0], true
			}
		case "search":
			for _, v := range vals {
				if domainSyntax.MatchString(v) {
					dns.Search, found = append(dns.Search, v), true
				}
			}
		case "options":
			for _, v := range vals {
				if optionSyntax.MatchString(v) {
					dns.Options, found = append(dns.Options, v), true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !found {
		return nil, fmt.Errorf("%s has no nameserver, domain, search or options line: not a resolv.conf", path)
	}
	return dns, nil
}
