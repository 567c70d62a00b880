package install

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// threeNodes is a cluster config like the ConfigMap's: one shared subnet,
// each node's range from its podCIDR, VXLAN in remotes mode, dual stack.
const threeNodes = `{
  "conflistName": "10-vxvrf.conflist",
  "nodes": [
    {"name": "node-a", "address": "192.0.2.11", "podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"]},
    {"name": "node-b", "address": "192.0.2.12", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"], "uplink": "ens3"},
    {"name": "node-c", "address": "192.0.2.13", "podCIDRs": ["10.244.2.0/24", "fd00:10:244:2::/64"]}
  ],
  "conflist": {
    "cniVersion": "1.0.0",
    "cniVersions": ["1.0.0", "1.1.0"],
    "name": "vxvrf",
    "plugins": [
      {"type": "infra-ensure", "stateDir": "/run/vxvrf"},
      {"type": "vrf-vxlan-bridge", "vrf": {"table": 100}, "bridge": {"mac": "02:00:0a:f4:00:01"}, "vxlan": {"vni": 4244, "port": 4789}},
      {"type": "lockfile-ipam", "capabilities": {"ips": true}, "ipam": {
        "ranges": [[{"subnet": "10.244.0.0/16", "gateway": "10.244.255.254"}], [{"subnet": "fd00:10:244::/48", "gateway": "fd00:10:244:ffff::1"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dataDir": "/run/vxvrf/ipam"}},
      {"type": "veth-attach", "capabilities": {"mac": true}},
      {"type": "sysctl-firewall", "masquerade": true, "antiSpoofing": true}
    ]
  }
}`

type rendered struct {
	CNIVersion  string   `json:"cniVersion"`
	CNIVersions []string `json:"cniVersions"`
	Name        string   `json:"name"`
	Plugins     []struct {
		Type         string `json:"type"`
		LocalAddress string `json:"localAddress"`
		Uplink       string `json:"uplink"`
		StateDir     string `json:"stateDir"`
		VRF          *struct {
			Table uint32 `json:"table"`
		} `json:"vrf"`
		VXLAN *struct {
			VNI     int      `json:"vni"`
			Local   string   `json:"local"`
			Remotes []string `json:"remotes"`
			Group   string   `json:"group"`
		} `json:"vxlan"`
		IPAM *struct {
			Ranges [][]struct {
				Subnet, RangeStart, RangeEnd, Gateway string
			} `json:"ranges"`
		} `json:"ipam"`
	} `json:"plugins"`
}

func render(t *testing.T, cluster string, l Local) (*rendered, []byte) {
	t.Helper()
	c, err := ParseCluster([]byte(cluster))
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Resolve(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(c, v)
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("rendered conflist is not JSON: %v\n%s", err, out)
	}
	return &r, out
}

func TestRenderThreeNodes(t *testing.T) {
	want := map[string]struct {
		addr, uplink string
		v4s, v4e     string
		v6s, v6e     string
		remotes      []string
	}{
		"node-a": {"192.0.2.11", "", "10.244.0.1", "10.244.0.254", "fd00:10:244::1", "fd00:10:244:0:ffff:ffff:ffff:ffff", []string{"192.0.2.12", "192.0.2.13"}},
		"node-b": {"192.0.2.12", "ens3", "10.244.1.1", "10.244.1.254", "fd00:10:244:1::1", "fd00:10:244:1:ffff:ffff:ffff:ffff", []string{"192.0.2.11", "192.0.2.13"}},
		"node-c": {"192.0.2.13", "", "10.244.2.1", "10.244.2.254", "fd00:10:244:2::1", "fd00:10:244:2:ffff:ffff:ffff:ffff", []string{"192.0.2.11", "192.0.2.12"}},
	}
	seen := map[string]string{}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			r, out := render(t, threeNodes, Local{Name: name})
			list, err := libcni.ConfListFromBytes(out)
			if err != nil {
				t.Fatalf("libcni: %v", err)
			}
			if list.Name != "vxvrf" || len(list.Plugins) != 5 || list.CNIVersion != "1.1.0" {
				t.Errorf("libcni sees name %q, %d plugins, version %s", list.Name, len(list.Plugins), list.CNIVersion)
			}
			if r.CNIVersion != "1.0.0" || !slices.Equal(r.CNIVersions, []string{"1.0.0", "1.1.0"}) {
				t.Errorf("versions changed: %q %v", r.CNIVersion, r.CNIVersions)
			}
			ie, vb, ipam := r.Plugins[0], r.Plugins[1], r.Plugins[2]
			if ie.LocalAddress != w.addr || ie.Uplink != w.uplink || ie.StateDir != "/run/vxvrf" {
				t.Errorf("infra-ensure: localAddress %q uplink %q stateDir %q", ie.LocalAddress, ie.Uplink, ie.StateDir)
			}
			if vb.VRF == nil || vb.VRF.Table != 100 || vb.VXLAN == nil || vb.VXLAN.VNI != 4244 {
				t.Fatalf("vrf-vxlan-bridge: cluster-wide keys lost: %+v", vb)
			}
			if vb.VXLAN.Local != w.addr {
				t.Errorf("vxlan.local %q, want %s", vb.VXLAN.Local, w.addr)
			}
			if !slices.Equal(vb.VXLAN.Remotes, w.remotes) {
				t.Errorf("vxlan.remotes %v, want %v (every other node, not itself)", vb.VXLAN.Remotes, w.remotes)
			}
			rs := ipam.IPAM.Ranges
			if len(rs) != 2 || len(rs[0]) != 1 || len(rs[1]) != 1 {
				t.Fatalf("ranges %+v", rs)
			}
			if g := rs[0][0]; g.Subnet != "10.244.0.0/16" || g.Gateway != "10.244.255.254" || g.RangeStart != w.v4s || g.RangeEnd != w.v4e {
				t.Errorf("IPv4 range %+v, want %s-%s in the shared subnet", g, w.v4s, w.v4e)
			}
			if g := rs[1][0]; g.Subnet != "fd00:10:244::/48" || g.RangeStart != w.v6s || g.RangeEnd != w.v6e {
				t.Errorf("IPv6 range %+v, want %s-%s", g, w.v6s, w.v6e)
			}
			if other, dup := seen[rs[0][0].RangeStart]; dup {
				t.Errorf("range start %s also %s's", rs[0][0].RangeStart, other)
			}
			seen[rs[0][0].RangeStart] = name
			if strings.Contains(string(out), `\u00`) {
				t.Errorf("HTML-escaped output: %s", out)
			}
		})
	}
}

// The node's own values may come from the environment (downward API) when
// the cluster config leaves them out; remotes then still come from the list.
func TestRenderFromEnvironment(t *testing.T) {
	cluster := strings.Replace(threeNodes, `{"name": "node-a", "address": "192.0.2.11", "podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"]}`, `{"name": "node-a", "address": "192.0.2.11"}`, 1)
	r, _ := render(t, cluster, LocalFromEnv(env{
		"NODE_NAME": "node-a", "NODE_IP": "192.0.2.11", "POD_CIDR": "10.244.7.0/24, fd00:10:244:7::/64",
	}.get))
	if g := r.Plugins[2].IPAM.Ranges[0][0]; g.RangeStart != "10.244.7.1" || g.RangeEnd != "10.244.7.254" {
		t.Errorf("range from POD_CIDR: %+v", g)
	}
	// A group-mode network gets no remotes; an unlisted node is fine there.
	group := strings.Replace(threeNodes, `"port": 4789}`, `"port": 4789, "group": "239.1.1.1"}`, 1)
	r, _ = render(t, group, Local{Name: "node-x", Address: "192.0.2.99", PodCIDRs: []string{"10.244.9.0/24", "fd00:10:244:9::/64"}})
	if vx := r.Plugins[1].VXLAN; vx.Group != "239.1.1.1" || vx.Remotes != nil || vx.Local != "192.0.2.99" {
		t.Errorf("group mode: %+v", vx)
	}
	// A /30 pod CIDR has two host addresses.
	v, err := hostRangeString("10.0.0.4/30")
	if err != nil || v != "10.0.0.5-10.0.0.6" {
		t.Errorf("/30: %q %v", v, err)
	}
}

type env map[string]string

func (e env) get(k string) string { return e[k] }

func hostRangeString(s string) (string, error) {
	_, n, _ := net.ParseCIDR(s)
	a, b, err := hostRange(n)
	if err != nil {
		return "", err
	}
	return a.String() + "-" + b.String(), nil
}

func TestBadConfigs(t *testing.T) {
	nodeA := Local{Name: "node-a"}
	cases := []struct {
		name, cluster string
		local         Local
		want          string
	}{
		{"not JSON", `{"nodes": [`, nodeA, "cluster config: unexpected EOF"},
		{"unknown key", strings.Replace(threeNodes, `"conflistName"`, `"conflistFile"`, 1), nodeA, `unknown field "conflistFile"`},
		{"bad file name", strings.Replace(threeNodes, `10-vxvrf.conflist`, `../10-vxvrf.conflist`, 1), nodeA, "conflistName"},
		{"no conflist", `{"nodes": []}`, nodeA, "conflist is missing"},
		{"duplicate node", strings.Replace(threeNodes, `"node-c"`, `"node-b"`, 1), nodeA, `node "node-b" is listed twice`},
		{"duplicate address", strings.Replace(threeNodes, `192.0.2.13`, `192.0.2.12`, 1), nodeA, "address 192.0.2.12 is also node"},
		{"overlapping pod CIDRs", strings.Replace(threeNodes, `10.244.2.0/24`, `10.244.0.0/23`, 1), nodeA, "overlaps node"},
		{"host bits", strings.Replace(threeNodes, `10.244.2.0/24`, `10.244.2.1/24`, 1), nodeA, "has host bits set"},
		{"NODE_IP disagrees", threeNodes, Local{Name: "node-a", Address: "192.0.2.99"}, "NODE_IP 192.0.2.99 differs from the cluster config's address 192.0.2.11"},
		{"POD_CIDR disagrees", threeNodes, Local{Name: "node-a", PodCIDRs: []string{"10.244.9.0/24"}}, "POD_CIDR [10.244.9.0/24] differs"},
		{"no node name", threeNodes, Local{}, "set NODE_NAME"},
		{"unlisted node in remotes mode", threeNodes, Local{Name: "node-x", Address: "192.0.2.99", PodCIDRs: []string{"10.244.9.0/24", "fd00:10:244:9::/64"}}, `node "node-x" is not in the cluster config's nodes`},
		{"no address", threeNodes, Local{Name: "node-x"}, "address unknown: set NODE_IP"},
		{"no pod CIDR", strings.Replace(threeNodes, `"podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"]`, `"podCIDRs": ["10.244.0.0/24"]`, 1), nodeA, `ipam.ranges[1]: node "node-a" has no pod CIDR inside subnet fd00:10:244::/48`},
		{"pod CIDR outside the subnet", strings.Replace(threeNodes, `10.244.0.0/24`, `10.99.0.0/24`, 1), nodeA, "has no pod CIDR inside subnet 10.244.0.0/16"},
		{"pod CIDR too small", strings.Replace(threeNodes, `10.244.0.0/24`, `10.244.0.0/31`, 1), nodeA, "too small"},
		{"legacy subnet", strings.Replace(threeNodes, `"ranges": [[{"subnet": "10.244.0.0/16", "gateway": "10.244.255.254"}], [{"subnet": "fd00:10:244::/48", "gateway": "fd00:10:244:ffff::1"}]]`, `"subnet": "10.244.0.0/16"`, 1), nodeA, "legacy single-range form"},
		{"two ranges in a set", strings.Replace(threeNodes, `"gateway": "10.244.255.254"}]`, `"gateway": "10.244.255.254"}, {"subnet": "10.245.0.0/16"}]`, 1), nodeA, "exactly one range"},
		{"no plugins", `{"conflist": {"cniVersion": "1.0.0", "name": "x"}}`, Local{Name: "n", Address: "192.0.2.1"}, "no plugins list"},
		{"libcni refuses", `{"conflist": {"cniVersion": "1.0.0", "plugins": [{"type": "veth-attach"}]}}`, Local{Name: "n", Address: "192.0.2.1"}, "does not load with libcni"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCluster([]byte(tc.cluster))
			if err == nil {
				var v *NodeView
				v, err = c.Resolve(tc.local, nil)
				if err == nil {
					var out []byte
					out, err = Render(c, v)
					if err == nil {
						t.Fatalf("accepted:\n%s", out)
					}
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// The bare-host example renders with the environment make install passes.
func TestSingleNodeExample(t *testing.T) {
	b, err := os.ReadFile("../../examples/single-node.json")
	if err != nil {
		t.Fatal(err)
	}
	r, out := render(t, string(b), LocalFromEnv(env{"NODE_NAME": "node1", "NODE_IP": "192.0.2.10"}.get))
	if _, err := libcni.ConfListFromBytes(out); err != nil {
		t.Fatal(err)
	}
	if r.Plugins[0].LocalAddress != "192.0.2.10" || r.Plugins[1].VXLAN != nil {
		t.Errorf("single node: %s", out)
	}
	if g := r.Plugins[2].IPAM.Ranges[0][0]; g.RangeStart != "10.244.1.1" || g.RangeEnd != "10.244.1.254" {
		t.Errorf("range %+v", g)
	}
}

// bridge.nodeAddresses: filled per node from its pod CIDR (the first host
// address, or the next one when that is the range's gateway) with the
// subnet's prefix, the range starting after it; not with an anycast bridge
// MAC, nor without VXLAN, nor with nodeAddresses: [] in the cluster
// config; a non-empty list there is refused.
func TestRenderNodeAddresses(t *testing.T) {
	perNodeMAC := strings.Replace(threeNodes, `"bridge": {"mac": "02:00:0a:f4:00:01"}, `, ``, 1)
	bridge := func(out []byte) map[string]any {
		var l struct {
			Plugins []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatal(err)
		}
		b, _ := l.Plugins[1]["bridge"].(map[string]any)
		return b
	}
	for _, tc := range []struct {
		name, cluster, node string
		addrs               []any
		v4s, v6s            string
	}{
		{"per-node MAC", perNodeMAC, "node-b", []any{"10.244.1.1/16", "fd00:10:244:1::1/48"}, "10.244.1.2", "fd00:10:244:1::2"},
		{"default gateway is the first host", strings.Replace(perNodeMAC, `, "gateway": "10.244.255.254"`, ``, 1), "node-a",
			[]any{"10.244.0.2/16", "fd00:10:244::1/48"}, "10.244.0.3", "fd00:10:244::2"},
		{"anycast bridge.mac", threeNodes, "node-b", nil, "10.244.1.1", "fd00:10:244:1::1"},
		{"anycastGateway", strings.Replace(perNodeMAC, `"type": "vrf-vxlan-bridge", `, `"type": "vrf-vxlan-bridge", "anycastGateway": true, `, 1), "node-b", nil, "10.244.1.1", "fd00:10:244:1::1"},
		{"turned off", strings.Replace(perNodeMAC, `"vrf": {"table": 100}, `, `"vrf": {"table": 100}, "bridge": {"nodeAddresses": []}, `, 1), "node-b", []any{}, "10.244.1.1", "fd00:10:244:1::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, out := render(t, tc.cluster, Local{Name: tc.node})
			got, _ := bridge(out)["nodeAddresses"].([]any)
			if tc.addrs == nil && got != nil || tc.addrs != nil && !slices.Equal(got, tc.addrs) {
				t.Errorf("nodeAddresses %v, want %v", got, tc.addrs)
			}
			rs := r.Plugins[2].IPAM.Ranges
			if rs[0][0].RangeStart != tc.v4s || rs[1][0].RangeStart != tc.v6s {
				t.Errorf("rangeStart %s, %s, want %s, %s", rs[0][0].RangeStart, rs[1][0].RangeStart, tc.v4s, tc.v6s)
			}
		})
	}
	// Without VXLAN (one node) the bridge gets no node address.
	single := strings.Replace(perNodeMAC, `, "vxlan": {"vni": 4244, "port": 4789}`, ``, 1)
	if _, out := render(t, single, Local{Name: "node-a"}); bridge(out)["nodeAddresses"] != nil {
		t.Errorf("no VXLAN, but node addresses: %s", out)
	}
	// A list in the cluster config would be the same on every node.
	c, err := ParseCluster([]byte(strings.Replace(perNodeMAC, `"vrf": {"table": 100}, `, `"vrf": {"table": 100}, "bridge": {"nodeAddresses": ["10.244.0.1/16"]}, `, 1)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Resolve(Local{Name: "node-a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(c, v); err == nil || !strings.Contains(err.Error(), "per-node value") {
		t.Errorf("a shared nodeAddresses list: %v, want refused as a per-node value", err)
	}
	// A /30 pod CIDR holds the node address and one pod; a /30 whose
	// first host is the gateway has no room left.
	tiny := strings.NewReplacer(`10.244.1.0/24`, `10.244.1.0/30`, `"gateway": "10.244.255.254"`, `"gateway": "10.244.1.1"`).Replace(perNodeMAC)
	c, err = ParseCluster([]byte(tiny))
	if err != nil {
		t.Fatal(err)
	}
	if v, err = c.Resolve(Local{Name: "node-b"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(c, v); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("/30 with the gateway inside: %v, want no room", err)
	}
}
