package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vxvrf/cni/internal/chain"
)

// demoVNI is the VNI the demo gives a conflist that has no vxlan object.
const demoVNI = 4242

// prepare adapts the conflist to the lab before it is rendered per node and
// returns one line per change, for the user to read:
//   - no vxlan object on vrf-vxlan-bridge: one is added (the conflist alone
//     would build a single-node bridge, and the demo shows two nodes);
//   - a vrf object on a kernel without VRF: it is removed, so the rest of
//     the chain still runs (with it, the ADD would fail with code 7).
func prepare(raw []byte, vrfKernel bool) ([]byte, []string, error) {
	var notes []string
	out, err := chain.Edit(raw, func(_ map[string]any, plugins []map[string]any) error {
		p := chain.Plugin(plugins, "vrf-vxlan-bridge")
		if p == nil {
			return fmt.Errorf("the conflist has no vrf-vxlan-bridge stage: nothing would connect the two nodes")
		}
		if _, ok := p["vxlan"].(map[string]any); !ok {
			p["vxlan"] = map[string]any{"vni": demoVNI}
			notes = append(notes, fmt.Sprintf("the conflist has no vxlan: added \"vxlan\": {\"vni\": %d} so the network spans both nodes", demoVNI))
		}
		if v, ok := p["vrf"]; ok && !vrfKernel {
			b, _ := json.Marshal(v)
			delete(p, "vrf")
			notes = append(notes, fmt.Sprintf("this kernel has NO VRF support (CONFIG_NET_VRF is not set): removed \"vrf\": %s and running the rest of the chain without it; "+
				"on such a kernel a real ADD with this conflist fails with code 7 (make test-vrf runs the VRF suite in a VM)", b))
		}
		return nil
	})
	return out, notes, err
}

// podCIDRs gives node i (of n) its part of every range set's subnet: the
// subnet split into n equal CIDRs (n a power of two), as Kubernetes hands
// each node a podCIDR of the cluster CIDR.
func podCIDRs(conflist []byte, i, n int) ([]string, error) {
	var subnets []string
	if err := eachRange(conflist, func(r map[string]any) {
		if sub, ok := r["subnet"].(string); ok {
			subnets = append(subnets, sub)
		}
	}); err != nil {
		return nil, err
	}
	if len(subnets) == 0 {
		return nil, fmt.Errorf("no ipam.ranges subnet in the conflist: the demo splits it between the nodes")
	}
	extra := 0
	for 1<<extra < n {
		extra++
	}
	var out []string
	for _, s := range subnets {
		_, ipn, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("subnet %q: %w", s, err)
		}
		ones, bits := ipn.Mask.Size()
		if bits-ones-extra < 3 {
			return nil, fmt.Errorf("subnet %s is too small to split between %d nodes", s, n)
		}
		base := new(big.Int).SetBytes(ipn.IP)
		step := new(big.Int).Lsh(big.NewInt(int64(i)), uint(bits-ones-extra))
		b := new(big.Int).Add(base, step).Bytes()
		ip := make(net.IP, len(ipn.IP))
		copy(ip[len(ip)-len(b):], b)
		out = append(out, fmt.Sprintf("%s/%d", ip, ones+extra))
	}
	return out, nil
}

// renderNodes renders the conflist for every node of the lab with
// vxvrf-installer --dry-run, the renderer the DaemonSet and make install
// use: each node gets its localAddress / vxlan.local, the other nodes as
// vxlan.remotes, and its own range of the shared subnet. State directories
// are then moved under each node's own temp directory.
func (d *demo) renderNodes(conflist []byte) ([][]byte, error) {
	type node struct {
		Name     string   `json:"name"`
		Address  string   `json:"address"`
		PodCIDRs []string `json:"podCIDRs"`
	}
	var nodes []node
	for i, n := range d.C.Nodes {
		cidrs, err := podCIDRs(conflist, i, len(d.C.Nodes))
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, node{Name: nodeName(i), Address: n.Addr.String(), PodCIDRs: cidrs})
	}
	cfg, err := json.MarshalIndent(map[string]any{"nodes": nodes, "conflist": json.RawMessage(conflist)}, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(d.Tmp, "cluster.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return nil, err
	}
	var out [][]byte
	for i, n := range nodes {
		cmd := exec.Command(d.installer, "--dry-run", "--config", path, "--node-name", n.Name)
		cmd.Env = append(os.Environ(), "NODE_IP=", "POD_CIDR=")
		b, err := cmd.Output()
		if err != nil {
			msg := ""
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				msg = strings.TrimSpace(string(ee.Stderr))
			}
			return nil, fmt.Errorf("%s --dry-run for %s: %w: %s", d.installer, n.Name, err, msg)
		}
		if b, err = chain.SetStateDirs(b, d.C.NodeRoot(i)); err != nil {
			return nil, err
		}
		fmt.Printf("  %s: localAddress %s, %s, podCIDRs %s\n", n.Name, n.Address, summary(b), strings.Join(n.PodCIDRs, " "))
		out = append(out, b)
	}
	return out, nil
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// summary is the per-node part of a rendered conflist, in one line.
func summary(conflist []byte) string {
	var parts []string
	_, _ = chain.Edit(conflist, func(_ map[string]any, plugins []map[string]any) error {
		if p := chain.Plugin(plugins, "vrf-vxlan-bridge"); p != nil {
			if vx, ok := p["vxlan"].(map[string]any); ok {
				parts = append(parts, fmt.Sprintf("vxlan.remotes %v", vx["remotes"]))
			}
		}
		return nil
	})
	_ = eachRange(conflist, func(r map[string]any) {
		parts = append(parts, fmt.Sprintf("range %v-%v", r["rangeStart"], r["rangeEnd"]))
	})
	return strings.Join(parts, ", ")
}

// eachRange calls f with every range object of every plugin's ipam.ranges.
func eachRange(conflist []byte, f func(r map[string]any)) error {
	_, err := chain.Edit(conflist, func(_ map[string]any, plugins []map[string]any) error {
		for _, p := range plugins {
			ipam, _ := p["ipam"].(map[string]any)
			sets, _ := ipam["ranges"].([]any)
			for _, s := range sets {
				set, _ := s.([]any)
				for _, r := range set {
					if m, ok := r.(map[string]any); ok {
						f(m)
					}
				}
			}
		}
		return nil
	})
	return err
}
