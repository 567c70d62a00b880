package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

// The IPAM curve: each IPAM plugin exec'd alone (delegated form, as a main
// plugin calls it) for one ADD and one DEL, its data dir already holding n
// leases of a dual-stack /16 + /64, written directly in the plugin's own
// format (as n ADDs would have left it; 64-character container IDs like a
// runtime's).
const ipamNetwork = "bnipam"

var ipamSubnets = []string{"10.128.0.0/16", "fd00:128::/64"}

// ipamCurve measures lockfile-ipam and host-local, iteration by iteration
// in turn, at each lease count.
func ipamCurve(ctx context.Context, lab *netsim.Lab, node *netsim.Node, bin, ref, root string, counts []int, iterations int) ([]IPAMResult, error) {
	pod, err := lab.AddNS("ipam-pod")
	if err != nil {
		return nil, err
	}
	plugins := []struct{ name, dir string }{{"lockfile-ipam", bin}, {"host-local", ref}}
	var out []IPAMResult
	for _, n := range counts {
		adds := make([][]time.Duration, len(plugins))
		dels := make([][]time.Duration, len(plugins))
		dirs := make([]string, len(plugins))
		for pi, p := range plugins {
			dirs[pi] = filepath.Join(root, fmt.Sprintf("%s-%d", p.name, n))
			if err := fillLeases(p.name, dirs[pi], n); err != nil {
				return nil, fmt.Errorf("%s: fill %d leases: %w", p.name, n, err)
			}
		}
		for i := 0; i < iterations; i++ {
			for k := range plugins {
				pi := (i + k) % len(plugins)
				p := plugins[pi]
				conf := ipamConf(p.name, dirs[pi])
				id := fmt.Sprintf("%064x", 1<<40+i)
				a, err := execIPAM(ctx, node, filepath.Join(p.dir, p.name), "ADD", id, pod.Path, conf)
				if err != nil {
					return nil, fmt.Errorf("%s ADD with %d leases: %w", p.name, n, err)
				}
				d, err := execIPAM(ctx, node, filepath.Join(p.dir, p.name), "DEL", id, pod.Path, conf)
				if err != nil {
					return nil, fmt.Errorf("%s DEL with %d leases: %w", p.name, n, err)
				}
				adds[pi] = append(adds[pi], a)
				dels[pi] = append(dels[pi], d)
			}
		}
		for pi, p := range plugins {
			out = append(out, IPAMResult{Plugin: p.name, Leases: n, Add: stats(adds[pi]), Del: stats(dels[pi])})
			if err := os.RemoveAll(dirs[pi]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ipamConf is the network config a main plugin passes its IPAM.
func ipamConf(plugin, dataDir string) []byte {
	var ranges []any
	for _, s := range ipamSubnets {
		ranges = append(ranges, []any{map[string]any{"subnet": s}})
	}
	b, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": ipamNetwork, "type": "bench",
		"ipam": map[string]any{"type": plugin, "ranges": ranges, "dataDir": dataDir},
	})
	return b
}

// execIPAM runs the plugin once inside the node namespace and times it.
func execIPAM(ctx context.Context, node *netsim.Node, path, cmd, id, netns string, conf []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	env := []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(path), "PATH=" + os.Getenv("PATH")}
	var d time.Duration
	var runErr error
	err := node.Do(func(ns.NetNS) error {
		start := time.Now()
		_, runErr = (&invoke.RawExec{Stderr: os.Stderr}).ExecPlugin(ctx, path, conf, env)
		d = time.Since(start)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return d, runErr
}

// leaseAddrs are the addresses of n leases, one per subnet each: lease i
// holds the subnet's address + 2 + i (+1 is the gateway).
func leaseAddrs(n int) ([][]net.IP, error) {
	out := make([][]net.IP, n)
	for _, s := range ipamSubnets {
		_, sub, err := net.ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		a := ip.NextIP(sub.IP)
		for i := range out {
			a = ip.NextIP(a)
			out[i] = append(out[i], a)
		}
	}
	return out, nil
}

// fillLeases writes n leases into dir in the plugin's own format.
func fillLeases(plugin, dir string, n int) error {
	ips, err := leaseAddrs(n)
	if err != nil {
		return err
	}
	id := func(i int) string { return fmt.Sprintf("%064x", i) }
	switch plugin {
	case "lockfile-ipam":
		// The state lockfile-ipam itself would have saved.
		var sets []allocator.RangeSet
		for _, s := range ipamSubnets {
			_, sub, err := net.ParseCIDR(s)
			if err != nil {
				return err
			}
			sets = append(sets, allocator.RangeSet{{Subnet: types.IPNet(*sub)}})
		}
		if err := allocator.Canonicalize(sets); err != nil {
			return err
		}
		st := allocator.NewState(ipamNetwork)
		for i := 0; i < n; i++ {
			st.Leases = append(st.Leases, allocator.Lease{ContainerID: id(i), IfName: "eth0", IPs: ips[i]})
		}
		if n > 0 {
			for si, set := range sets {
				st.LastReserved[set.String()] = ips[n-1][si]
			}
		}
		data, err := store.Encode(st)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, naming.LeaseFile(ipamNetwork)), data, 0o600)
	case "host-local":
		// host-local v1.9.1's disk backend: <dataDir>/<network>/<ip> holding
		// "<containerID>\r\n<ifname>", and last_reserved_ip.<range set index>.
		d := filepath.Join(dir, ipamNetwork)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			for _, a := range ips[i] {
				if err := os.WriteFile(filepath.Join(d, a.String()), []byte(id(i)+"\r\neth0"), 0o600); err != nil {
					return err
				}
			}
		}
		if n > 0 {
			for si, a := range ips[n-1] {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("last_reserved_ip.%d", si)), []byte(a.String()), 0o600); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fmt.Errorf("unknown IPAM plugin %q", plugin)
}
