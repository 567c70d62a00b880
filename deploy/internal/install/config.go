package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// DefaultConflistName is the file written into the conflist directory when the
// cluster config names none. Runtimes use the first file in lexical order.
const DefaultConflistName = "10-vxvrf.conflist"

// Cluster is the cluster config: the same file on every node (the ConfigMap's
// cluster.json). Unknown keys are errors, so a typo is not silently ignored.
type Cluster struct {
	// ConflistName is the file name in /etc/cni/net.d, e.g. "10-vxvrf.conflist".
	ConflistName string `json:"conflistName,omitempty"`
	// Conflist is the network's conflist, the same on every node; the
	// installer fills in the per-node keys (see Render).
	Conflist json.RawMessage `json:"conflist"`
	// Nodes lists the cluster's nodes: their VTEP addresses (the peers of
	// vxlan remotes mode) and pod CIDRs (each node's IPAM range).
	Nodes []Node `json:"nodes,omitempty"`
}

// Node is one node of the cluster config.
type Node struct {
	Name     string   `json:"name"`
	Address  string   `json:"address,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
	// Uplink, when set, becomes infra-ensure's `uplink` on that node.
	Uplink string `json:"uplink,omitempty"`
}

var conflistNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.conflist$`)

// ParseCluster decodes and validates a cluster config.
func ParseCluster(data []byte) (*Cluster, error) {
	var c Cluster
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("cluster config: trailing data after the JSON object")
	}
	if c.ConflistName == "" {
		c.ConflistName = DefaultConflistName
	}
	if !conflistNameRE.MatchString(c.ConflistName) {
		return nil, fmt.Errorf("cluster config: conflistName %q: want a plain file name ending in .conflist, e.g. %q", c.ConflistName, DefaultConflistName)
	}
	if len(bytes.TrimSpace(c.Conflist)) == 0 || bytes.Equal(bytes.TrimSpace(c.Conflist), []byte("null")) {
		return nil, fmt.Errorf("cluster config: conflist is missing")
	}
	names := map[string]bool{}
	addrs := map[string]string{}
	type cidr struct {
		node string
		n    *net.IPNet
	}
	var cidrs []cidr
	for i, n := range c.Nodes {
		where := fmt.Sprintf("cluster config: nodes[%d]", i)
		if n.Name == "" {
			return nil, fmt.Errorf("%s: name is missing", where)
		}
		where = fmt.Sprintf("cluster config: node %q", n.Name)
		if names[n.Name] {
			return nil, fmt.Errorf("%s is listed twice", where)
		}
		names[n.Name] = true
		if n.Address != "" {
			ip := net.ParseIP(n.Address)
			if ip == nil || !ip.IsGlobalUnicast() {
				return nil, fmt.Errorf("%s: address %q is not a unicast IP address", where, n.Address)
			}
			key := ip.String()
			if other, dup := addrs[key]; dup {
				return nil, fmt.Errorf("%s: address %s is also node %q's", where, key, other)
			}
			addrs[key] = n.Name
		}
		for _, s := range n.PodCIDRs {
			pn, err := parseCIDR(s)
			if err != nil {
				return nil, fmt.Errorf("%s: podCIDRs: %w", where, err)
			}
			for _, o := range cidrs {
				if o.n.Contains(pn.IP) || pn.Contains(o.n.IP) {
					return nil, fmt.Errorf("%s: podCIDR %s overlaps node %q's %s", where, pn, o.node, o.n)
				}
			}
			cidrs = append(cidrs, cidr{n.Name, pn})
		}
	}
	return &c, nil
}

// parseCIDR accepts a network address in CIDR form (no host bits).
func parseCIDR(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not a CIDR", s)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("%q has host bits set; the network is %s", s, n)
	}
	if ip.To4() != nil {
		n.IP = n.IP.To4()
	}
	return n, nil
}

// Local is what the node knows about itself, usually from the environment
// (the DaemonSet's downward API): NODE_NAME, NODE_IP, POD_CIDR.
type Local struct {
	Name    string
	Address string
	// PodCIDRs, comma-separated in POD_CIDR.
	PodCIDRs []string
}

// LocalFromEnv reads NODE_NAME, NODE_IP and POD_CIDR through getenv.
func LocalFromEnv(getenv func(string) string) Local {
	l := Local{Name: strings.TrimSpace(getenv("NODE_NAME")), Address: strings.TrimSpace(getenv("NODE_IP"))}
	for _, s := range strings.Split(getenv("POD_CIDR"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.PodCIDRs = append(l.PodCIDRs, s)
		}
	}
	return l
}
