package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// hostBridgeNF is the machine's own value, read only: the tests must not change it.
func hostBridgeNF() string {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(b))
}

func TestLifecycleAllVersions(t *testing.T) {
	forBackends(t, testLifecycle)
}

func testLifecycle(t *testing.T, be string) {
	testutil.RequireRoot(t)
	before := hostBridgeNF()
	n := newNode(t, labFor("sf-life", be))
	p := n.addPod(t, "p", "sfh-life", "10.66.0.5/24")
	prev := p.prevResult(t)
	extra := map[string]any{
		"backend":      be,
		"sysctls":      map[string]string{"net.ipv4.conf.IFNAME.accept_redirects": "0", "net.ipv4.ip_unprivileged_port_start": "80"},
		"hostSysctls":  map[string]string{"net.ipv6.conf.IFNAME.accept_ra": "0"},
		"masquerade":   true,
		"antiSpoofing": true,
	}
	for _, v := range cniutil.Versions.SupportedVersions() {
		t.Run(v, func(t *testing.T) {
			cid := "sf-life-" + strings.ReplaceAll(v, ".", "")
			chain := naming.AttachmentChain(testNet, cid, "eth0")
			tag := naming.AttachmentTag(testNet, cid, "eth0")
			conf := config(t, v, extra, prev)

			// Reset what an earlier version set, so this one must set it again.
			_, _ = p.In("sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=1")
			n.sh(t, "sysctl", "-qw", "net.ipv6.conf."+p.hostVeth+".accept_ra=1")

			out := n.stage().Add(t, cid, p.NS, conf).OK(t)
			jsonEqual(t, out, asVersion(t, prev, v))

			if got := p.read(t, "/proc/sys/net/ipv4/conf/eth0/accept_redirects"); got != "0" {
				t.Fatalf("pod accept_redirects = %s", got)
			}
			if got := p.read(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "80" {
				t.Fatalf("pod ip_unprivileged_port_start = %s", got)
			}
			if got := strings.TrimSpace(n.sh(t, "cat", "/proc/sys/net/ipv6/conf/"+p.hostVeth+"/accept_ra")); got != "0" {
				t.Fatalf("host veth accept_ra = %s", got)
			}
			if be == BackendNftables {
				lifecycleNft(t, n, p, v, cid, conf)
				return
			}
			if got := strings.TrimSpace(n.sh(t, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")); got != "1" {
				t.Fatalf("node bridge-nf-call-iptables = %s", got)
			}
			save := n.save(t)
			for _, want := range []string{
				"-A FORWARD -j VXVRF-FORWARD",
				"-A POSTROUTING -j VXVRF-POSTROUTING",
				"-A PREROUTING -j VXVRF-PREROUTING",
				fmt.Sprintf(`-A VXVRF-FORWARD -m comment --comment "%s" -j %s`, tag, chain),
				fmt.Sprintf(`-A VXVRF-POSTROUTING -m comment --comment "%s" -j %s`, tag, chain),
				fmt.Sprintf(`-A VXVRF-PREROUTING -m comment --comment "%s" -j %s`, tag, chain),
				"-A " + chain + " -s 10.66.0.5/32 -j ACCEPT",
				"-A " + chain + " -d 10.66.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A " + chain + " -s 10.66.0.5/32 ! -d 10.66.0.0/24 ! -o " + bridge + " -j MASQUERADE",
				"-A " + chain + " ! -s 10.66.0.5/32 -m physdev --physdev-in " + p.hostVeth + " -j DROP",
			} {
				if !strings.Contains(save, want) {
					t.Fatalf("iptables-save lacks %q:\n%s", want, save)
				}
			}
			// No IPv6 address: nothing in ip6tables.
			if s := n.sh(t, "ip6tables-save"); strings.Contains(s, chain) {
				t.Fatalf("ip6tables has %s:\n%s", chain, s)
			}

			if v == "0.3.1" {
				if e := n.stage().Check(t, cid, p.NS, conf).CNIError(t); e.Code != types.ErrIncompatibleCNIVersion {
					t.Fatalf("CHECK at 0.3.1: %+v", e)
				}
			} else {
				n.stage().Check(t, cid, p.NS, conf).OK(t)
				// A rule removed → CHECK fails; restored → passes.
				n.sh(t, "iptables", "-t", "nat", "-D", chain, "-s", "10.66.0.5/32", "!", "-d", "10.66.0.0/24", "!", "-o", bridge, "-j", "MASQUERADE")
				n.stage().Check(t, cid, p.NS, conf).CNIError(t)
				n.sh(t, "iptables", "-t", "nat", "-A", chain, "-s", "10.66.0.5/32", "!", "-d", "10.66.0.0/24", "!", "-o", bridge, "-j", "MASQUERADE")
				n.stage().Check(t, cid, p.NS, conf).OK(t)
				// The project jump removed → fails.
				n.sh(t, "iptables", "-t", "raw", "-D", "VXVRF-PREROUTING", "-m", "comment", "--comment", tag, "-j", chain)
				n.stage().Check(t, cid, p.NS, conf).CNIError(t)
				n.sh(t, "iptables", "-t", "raw", "-A", "VXVRF-PREROUTING", "-m", "comment", "--comment", tag, "-j", chain)
				n.stage().Check(t, cid, p.NS, conf).OK(t)
				// A pod sysctl flipped → fails.
				if _, err := p.In("sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=1"); err != nil {
					t.Fatal(err)
				}
				n.stage().Check(t, cid, p.NS, conf).CNIError(t)
				if _, err := p.In("sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=0"); err != nil {
					t.Fatal(err)
				}
				// A host sysctl flipped → fails.
				n.sh(t, "sysctl", "-qw", "net.ipv6.conf."+p.hostVeth+".accept_ra=1")
				n.stage().Check(t, cid, p.NS, conf).CNIError(t)
				n.sh(t, "sysctl", "-qw", "net.ipv6.conf."+p.hostVeth+".accept_ra=0")
				n.stage().Check(t, cid, p.NS, conf).OK(t)
			}

			// A second ADD for the same attachment succeeds and changes
			// nothing; after a rule is removed behind the plugin's back it
			// puts the rule back (ADD converges, as with nftables).
			before := stripSaveComments(n.save(t))
			n.stage().Add(t, cid, p.NS, conf).OK(t)
			if after := stripSaveComments(n.save(t)); after != before {
				t.Fatalf("repeated ADD changed the rules:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			n.sh(t, "iptables", "-t", "raw", "-F", chain)
			n.stage().Add(t, cid, p.NS, conf).OK(t)
			if after := stripSaveComments(n.save(t)); after != before {
				t.Fatalf("ADD did not restore the flushed raw chain:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if v != "0.3.1" {
				n.stage().Check(t, cid, p.NS, conf).OK(t)
			}

			n.stage().Del(t, cid, p.NS, conf).OK(t)
			save = n.save(t)
			if strings.Contains(save, chain) || strings.Contains(save, tag) {
				t.Fatalf("DEL left %s / %s:\n%s", chain, tag, save)
			}
			n.stage().Del(t, cid, p.NS, conf).OK(t)
		})
	}
	if after := hostBridgeNF(); after != before {
		t.Fatalf("machine's bridge-nf-call-iptables changed: %s → %s", before, after)
	}
}

// lifecycleNft is the nftables half of TestLifecycleAllVersions after
// ADD: the attachment's elements are there, CHECK fails when one is
// removed or a base rule is gone, a repeated ADD restores a removed
// element (nftables ADD is idempotent), DEL removes all and repeats.
func lifecycleNft(t *testing.T, n *node, p *pod, v, cid string, conf []byte) {
	tag := naming.NftTag(testNet, cid, "eth0")
	dump := dumpNft(t, n)
	for _, want := range []string{
		"bridge=false fwd4 0a420005" + hexName(bridge) + " " + tag,
		"bridge=false masq4 0a420005" + hexName(bridge) + " " + tag,
		"bridge=true guard4 " + hexName(p.hostVeth) + " " + tag,
		"bridge=true allow4 " + hexName(p.hostVeth) + "0a420005 " + tag,
	} {
		if !strings.Contains(dump, "element "+want) {
			t.Fatalf("nftables lacks %q:\n%s", want, dump)
		}
	}
	if s := n.save(t); strings.Contains(s, "VXVRF-") {
		t.Fatalf("nftables backend touched iptables:\n%s", s)
	}
	if v != "0.3.1" {
		n.stage().Check(t, cid, p.NS, conf).OK(t)
		n.nftDelElements(t, "allow4", true, testNet, cid)
		n.stage().Check(t, cid, p.NS, conf).CNIError(t)
		n.stage().Add(t, cid, p.NS, conf).OK(t)
		n.stage().Check(t, cid, p.NS, conf).OK(t)
		// A pod sysctl flipped → fails.
		if _, err := p.In("sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=1"); err != nil {
			t.Fatal(err)
		}
		n.stage().Check(t, cid, p.NS, conf).CNIError(t)
		if _, err := p.In("sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=0"); err != nil {
			t.Fatal(err)
		}
		n.stage().Check(t, cid, p.NS, conf).OK(t)
		// A base rule removed → fails; the node-wide ensure puts it back.
		n.nft(t, func(c *nftables.Conn) error {
			ch := &nftables.Chain{Name: "forward", Table: nftInet}
			rules, err := c.GetRules(nftInet, ch)
			if err != nil {
				return fmt.Errorf("forward rules: %w", err)
			}
			if len(rules) == 0 {
				return errors.New("no forward rules")
			}
			return c.DelRule(rules[0])
		})
		if e := n.stage().Check(t, cid, p.NS, conf).CNIError(t); !strings.Contains(e.Msg, "forward") {
			t.Fatalf("CHECK with a forward rule removed: %s", e.Msg)
		}
		n.nft(t, func(c *nftables.Conn) error { ensureBase(c); return nil })
		n.stage().Check(t, cid, p.NS, conf).OK(t)
	}
	n.stage().Del(t, cid, p.NS, conf).OK(t)
	if s := n.attState(t, BackendNftables, testNet, cid); s != "" {
		t.Fatalf("DEL left:\n%s", s)
	}
	n.stage().Del(t, cid, p.NS, conf).OK(t)
}

// hexName is an interface name as it appears in a dumped nftables key.
func hexName(name string) string { return fmt.Sprintf("%x", ifnameBytes(name)) }

func TestBadInput(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-bad")
	p := n.addPod(t, "p", "sfh-bad", "10.66.0.6/24")
	prev := p.prevResult(t)
	wrong := p.prevResult(t)
	wrong.Interfaces[2].Name = "eth9"
	before := n.save(t)
	for name, tc := range map[string]struct {
		conf []byte
		code uint
	}{
		"no prevResult":              {config(t, "1.0.0", nil, nil), types.ErrInvalidNetworkConfig},
		"kernel key":                 {config(t, "1.0.0", map[string]any{"sysctls": map[string]string{"kernel.pid_max": "4096"}}, prev), types.ErrInvalidNetworkConfig},
		"escape":                     {config(t, "1.0.0", map[string]any{"sysctls": map[string]string{"net/../kernel/pid_max": "4096"}}, prev), types.ErrInvalidNetworkConfig},
		"unknown sysctl":             {config(t, "1.0.0", map[string]any{"sysctls": map[string]string{"net.ipv4.no_such_knob": "1"}}, prev), types.ErrInvalidNetworkConfig},
		"malformed":                  {[]byte(`{"cniVersion":"1.0.0","name":"sfnet","type":"sysctl-firewall",`), types.ErrDecodingFailure},
		"wrong ifname in prevResult": {config(t, "1.0.0", nil, wrong), types.ErrInvalidNetworkConfig},
	} {
		t.Run(name, func(t *testing.T) {
			if e := n.stage().Add(t, "sf-bad", p.NS, tc.conf).CNIError(t); e.Code != tc.code {
				t.Fatalf("code %d (%s), want %d", e.Code, e.Msg, tc.code)
			}
		})
	}
	if after := n.save(t); after != before {
		t.Fatalf("bad input changed iptables:\n%s", after)
	}
	// The plugin's own netns as CNI_NETNS is refused (code 8).
	o := n.stage().Add(t, "sf-bad", n.NS, config(t, "1.0.0", nil, prev))
	if e := o.CNIError(t); e.Code != types.ErrInvalidNetNS {
		t.Fatalf("own netns: %+v", e)
	}
}
