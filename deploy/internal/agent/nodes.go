package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/vxvrf/cni/deploy/internal/install"
)

// AddressAnnotation on a Node overrides its VTEP address (the InternalIP of
// the underlay family otherwise). Every agent reads it, so the peers use
// the same address the node itself renders.
const AddressAnnotation = "vxvrf.io/vtep-address"

// family is "ipv4" or "ipv6".
func familyOf(ip net.IP) string {
	if ip.To4() != nil {
		return "ipv4"
	}
	return "ipv6"
}

// vtepAddress is the node's VTEP address in family fam ("" = any): the
// annotation when present, else its first InternalIP of that family.
func vtepAddress(n *corev1.Node, fam string) (net.IP, error) {
	if s, ok := n.Annotations[AddressAnnotation]; ok {
		ip := net.ParseIP(s)
		if ip == nil || !ip.IsGlobalUnicast() {
			return nil, fmt.Errorf("node %q: annotation %s=%q is not a unicast IP address", n.Name, AddressAnnotation, s)
		}
		if fam != "" && familyOf(ip) != fam {
			return nil, fmt.Errorf("node %q: annotation %s=%s is not %s, the underlay family", n.Name, AddressAnnotation, s, fam)
		}
		return ip, nil
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip := net.ParseIP(a.Address)
		if ip == nil || !ip.IsGlobalUnicast() || fam != "" && familyOf(ip) != fam {
			continue
		}
		return ip, nil
	}
	if fam == "" {
		return nil, fmt.Errorf("node %q has no InternalIP yet (and no %s annotation)", n.Name, AddressAnnotation)
	}
	return nil, fmt.Errorf("node %q has no %s InternalIP (and no %s annotation)", n.Name, fam, AddressAnnotation)
}

func podCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return slices.Clone(n.Spec.PodCIDRs)
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

// clusterFromAPI combines the cluster config (the ConfigMap, whose nodes[]
// entries may still override any value) with the Nodes the API server
// knows. self must be among them or among the config's nodes and have an
// address; peers without an address of the underlay family are left out
// (reported in skipped) until they get one. The result is validated like a
// hand-written cluster config.
func clusterFromAPI(c *install.Cluster, nodes []*corev1.Node, self, fam string) (*install.Cluster, []string, error) {
	override := map[string]install.Node{}
	for _, n := range c.Nodes {
		override[n.Name] = n
	}
	byName := map[string]*corev1.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	// The underlay family: the flag, else the family of this node's address.
	if fam == "" {
		if o, ok := override[self]; ok && o.Address != "" {
			if ip := net.ParseIP(o.Address); ip != nil {
				fam = familyOf(ip)
			}
		} else if n, ok := byName[self]; ok {
			ip, err := vtepAddress(n, "")
			if err != nil {
				return nil, nil, fmt.Errorf("this node: %w", err)
			}
			fam = familyOf(ip)
		}
	}
	if _, ok := byName[self]; !ok {
		if _, ok := override[self]; !ok {
			return nil, nil, fmt.Errorf("node %q is not known to the API server (yet)", self)
		}
	}
	var out []install.Node
	var skipped []string
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := byName[name]
		e := install.Node{Name: name, PodCIDRs: podCIDRs(n)}
		o, hasOverride := override[name]
		if !hasOverride || o.Address == "" {
			ip, err := vtepAddress(n, fam)
			if err != nil {
				if name == self {
					return nil, nil, fmt.Errorf("this node: %w", err)
				}
				skipped = append(skipped, err.Error())
				continue
			}
			e.Address = ip.String()
		}
		if hasOverride {
			if o.Address != "" {
				e.Address = o.Address
			}
			if len(o.PodCIDRs) > 0 {
				e.PodCIDRs = o.PodCIDRs
			}
			e.Uplink = o.Uplink
			delete(override, name)
		}
		out = append(out, e)
	}
	// Config-only nodes (e.g. VTEPs outside the cluster) stay, in config order.
	for _, n := range c.Nodes {
		if _, left := override[n.Name]; left {
			out = append(out, n)
		}
	}
	merged := *c
	merged.Nodes = out
	// Validate as if it were written by hand: duplicates, overlaps, bad CIDRs.
	b, err := json.Marshal(&merged)
	if err != nil {
		return nil, nil, err
	}
	v, err := install.ParseCluster(b)
	if err != nil {
		return nil, nil, fmt.Errorf("nodes from the API server: %w", err)
	}
	return v, skipped, nil
}

// nodeRelevant reports whether an update of a Node changes anything the
// agent renders (addresses, pod CIDRs, the override annotation), so
// heartbeat-only status updates cause no work.
func nodeRelevant(old, cur *corev1.Node) bool {
	if !slices.Equal(podCIDRs(old), podCIDRs(cur)) || old.Spec.PodCIDR != cur.Spec.PodCIDR {
		return true
	}
	if old.Annotations[AddressAnnotation] != cur.Annotations[AddressAnnotation] {
		return true
	}
	return !slices.Equal(old.Status.Addresses, cur.Status.Addresses)
}
