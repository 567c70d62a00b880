package doctor

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/kernel"
	"github.com/vxvrf/cni/pkg/sysctl"
	"github.com/vxvrf/cni/pkg/uplink"
)

// VXLAN overhead on the uplink (outer Ethernet + IPv4/IPv6 + UDP + VXLAN),
// as vrf-vxlan-bridge computes the bridge MTU.
const (
	overheadIPv4 = 50
	overheadIPv6 = 70
)

// topology is what doctor reads of a conflist.
type topology struct {
	uplink     string
	vrf        bool
	vxlan      bool
	vxlanPort  int
	remotes    []string
	bridgeMTU  int
	firewall   bool
	masquerade bool
}

func readTopology(list *libcni.NetworkConfigList) topology {
	var t topology
	for _, p := range list.Plugins {
		var c struct {
			Uplink string          `json:"uplink"`
			VRF    json.RawMessage `json:"vrf"`
			Bridge struct {
				MTU int `json:"mtu"`
			} `json:"bridge"`
			VXLAN *struct {
				Port    int      `json:"port"`
				Remotes []string `json:"remotes"`
				Dev     string   `json:"dev"`
			} `json:"vxlan"`
			Masquerade bool `json:"masquerade"`
		}
		_ = json.Unmarshal(p.Bytes, &c)
		switch p.Network.Type {
		case "infra-ensure":
			t.uplink = c.Uplink
		case "vrf-vxlan-bridge":
			t.vrf = len(c.VRF) > 0 && string(c.VRF) != "null"
			t.bridgeMTU = c.Bridge.MTU
			if c.VXLAN != nil {
				t.vxlan, t.vxlanPort, t.remotes = true, c.VXLAN.Port, c.VXLAN.Remotes
				if t.vxlanPort == 0 {
					t.vxlanPort = 4789
				}
				if t.uplink == "" {
					t.uplink = c.VXLAN.Dev
				}
			}
		case "sysctl-firewall":
			t.firewall, t.masquerade = true, c.Masquerade
		}
	}
	return t
}

// Doctor checks the node (the current network namespace) for the conflist:
// kernel features, uplink and MTU, the conflist stage by stage (Validate,
// then each stage's STATUS), remotes, and the sysctls.
func Doctor(file string, binDirs []string) Findings {
	var f Findings
	var list *libcni.NetworkConfigList
	if file != "" {
		var err error
		if list, err = libcni.ConfListFromFile(file); err != nil {
			f.add(Error, "conflist", err.Error(), "fix the file's JSON: it must be a conflist (name, cniVersion, plugins)")
			return f
		}
	}
	var t topology
	if list != nil {
		t = readTopology(list)
	} else {
		t = topology{vxlan: true, vrf: true, firewall: true}
	}
	f = append(f, kernelFeatures(t)...)
	f = append(f, uplinkCheck(t)...)
	if list != nil {
		v := Validate(file, binDirs)
		f = append(f, v...)
		if !v.Failed() {
			f = append(f, status(list, binDirs)...)
		}
		f = append(f, remotes(t)...)
	}
	f = append(f, sysctls(t)...)
	return f
}

func kernelFeatures(t topology) Findings {
	var f Findings
	for _, k := range []struct {
		module, what string
		needed       bool
		fix          string
	}{
		{"bridge", "Linux bridge (every network)", true, "a kernel with CONFIG_BRIDGE (modprobe bridge)"},
		{"vxlan", "VXLAN (networks spanning nodes)", t.vxlan, "a kernel with CONFIG_VXLAN (modprobe vxlan)"},
		{"vrf", "VRF (networks with vrf)", t.vrf, "a kernel with CONFIG_NET_VRF (modprobe vrf; on Debian/Ubuntu cloud kernels: install linux-modules-extra-$(uname -r)), or drop vrf from the conflist"},
		{"br_netfilter", "bridge netfilter (kube-proxy/NetworkPolicy on bridged traffic)", false, "modprobe br_netfilter, if the cluster filters bridged pod traffic"},
		{"nf_tables", "nftables", t.firewall, "a kernel with CONFIG_NF_TABLES (modprobe nf_tables), or the iptables legacy backend"},
	} {
		s := kernel.Has(k.module)
		if s != kernel.Loaded && k.module == "nf_tables" && exec.Command("nft", "list", "tables").Run() == nil {
			s = kernel.Loaded // nft works: built in
		}
		switch {
		case s == kernel.Loaded || s == kernel.Available:
			f.add(OK, "kernel "+k.module, k.what+": "+s.String(), "")
		case s == kernel.Unknown:
			f.add(Info, "kernel "+k.module, k.what+": not loaded; cannot tell whether built in (no module lists in "+kernel.ModulesDir+")", "")
		case k.needed:
			f.add(Error, "kernel "+k.module, k.what+": missing", k.fix)
		default:
			f.add(Warn, "kernel "+k.module, k.what+": missing", k.fix)
		}
	}
	return f
}

func uplinkCheck(t topology) Findings {
	var f Findings
	l, err := uplink.Find(t.uplink)
	if err != nil {
		f.add(Error, "uplink", err.Error(), `set "uplink" in infra-ensure's config to the interface VXLAN rides on`)
		return f
	}
	name, mtu := l.Attrs().Name, l.Attrs().MTU
	if err := uplink.Ready(l); err != nil {
		f.add(Error, "uplink", err.Error(), "ip link set "+name+" up, and check its cable/carrier")
		return f
	}
	addr, err := uplink.Address(l, nil)
	if err != nil {
		f.add(Error, "uplink", err.Error(), "give "+name+" the node's address")
		return f
	}
	over := overheadIPv4
	if addr.To4() == nil {
		over = overheadIPv6
	}
	f.add(OK, "uplink", fmt.Sprintf("%s mtu %d address %s: overlay MTU %d", name, mtu, addr, mtu-over), "")
	if t.vxlan && t.bridgeMTU > mtu-over {
		f.add(Error, "mtu", fmt.Sprintf("bridge.mtu %d exceeds the uplink's %d minus the VXLAN overhead %d", t.bridgeMTU, mtu, over),
			fmt.Sprintf("set bridge.mtu to at most %d, or leave it out (derived from the uplink)", mtu-over))
	}
	return f
}

// status runs every vxvrf stage's STATUS with the conflist's config: what
// the stage itself probes before an ADD.
func status(list *libcni.NetworkConfigList, binDirs []string) Findings {
	var f Findings
	for i, p := range list.Plugins {
		check := fmt.Sprintf("plugins[%d] %s", i, p.Network.Type)
		bin, err := Binary(binDirs, p.Network.Type)
		if err != nil {
			continue // reported by Validate
		}
		conf, err := stageConfig(list, i, "1.1.0")
		if err != nil {
			continue
		}
		out, err := run(bin, nil, []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + strings.Join(binDirs, ":")}, conf)
		if err != nil {
			e := cniError(out, err)
			f.add(Error, check, fmt.Sprintf("STATUS: %s (code %d)", e.Msg, e.Code), "ADD would fail the same way: fix what the message names")
			continue
		}
		f.add(OK, check, "STATUS ok", "")
	}
	return f
}

// remotes checks each configured VXLAN remote has a route and answers ICMP.
func remotes(t topology) Findings {
	var f Findings
	for _, r := range t.remotes {
		ip := net.ParseIP(r)
		if ip == nil {
			continue // reported by Validate
		}
		check := "remote " + r
		routes, err := netlink.RouteGet(ip)
		if err != nil || len(routes) == 0 {
			f.add(Error, check, fmt.Sprintf("no route: %v", err), "route the node network so that "+r+" is reachable from the uplink")
			continue
		}
		if routes[0].Type == 2 { // RTN_LOCAL
			f.add(Warn, check, "this node's own address is in vxlan.remotes", "render the conflist per node without the node itself (deploy's installer does)")
			continue
		}
		ping := "ping"
		if ip.To4() == nil {
			ping = "ping6"
		}
		if out, err := exec.Command(ping, "-c1", "-W1", r).CombinedOutput(); err != nil {
			f.add(Warn, check, "no ICMP echo reply: "+lastLine(out), fmt.Sprintf("check the node reaches %s and that UDP port %d is open between the nodes", r, t.vxlanPort))
			continue
		}
		f.add(OK, check, fmt.Sprintf("reachable (VXLAN needs UDP %d open to it)", t.vxlanPort), "")
	}
	return f
}

func lastLine(b []byte) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return l[len(l)-1]
}

// sysctls checks the node sysctls the topology needs (infra-ensure sets
// them on every ADD; before the first ADD they may still be off).
func sysctls(t topology) Findings {
	var f Findings
	want := [][2]string{{"net.ipv4.ip_forward", "1"}}
	if sysctl.Exists("net.ipv6.conf.all.forwarding") {
		want = append(want, [2]string{"net.ipv6.conf.all.forwarding", "1"})
	}
	for _, w := range want {
		if err := sysctl.Check(w[0], w[1]); err != nil {
			f.add(Warn, "sysctl "+w[0], err.Error(), fmt.Sprintf("infra-ensure sets it on the next ADD; to set it now: sysctl -w %s=%s", w[0], w[1]))
			continue
		}
		f.add(OK, "sysctl "+w[0], "= "+w[1], "")
	}
	if kernel.Has("br_netfilter") == kernel.Loaded && t.firewall {
		if v, err := sysctl.Get("net.bridge.bridge-nf-call-iptables"); err == nil {
			f.add(Info, "sysctl net.bridge.bridge-nf-call-iptables", "= "+v+" (1: bridged pod-to-pod traffic also passes the iptables FORWARD chain)", "")
		}
	}
	return f
}
