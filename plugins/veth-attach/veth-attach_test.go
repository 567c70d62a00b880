package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// linkLine matches the start of a link in `ip -o link` output.
var linkLine = regexp.MustCompile(`(?m)^[0-9]+: `)

// TestBadInput: errors come back as CNI error JSON with the right code and
// nothing is created.
func TestBadInput(t *testing.T) {
	lab, node := newNode(t, "va-bad")
	pod := addPod(t, lab, "p1")
	st := stage(t, node)
	good := testutil.Conf("1.0.0", testNet, plugin).With("prevResult", bridgePrev("1.0.0")).Bytes()
	cases := []struct {
		name string
		inv  testutil.Invocation
		code uint
	}{
		{"long ifname", func() testutil.Invocation {
			i := st.Call("ADD", "c1", pod, good)
			i.IfName = "eth0123456789012"
			return i
		}(), types.ErrInvalidEnvironmentVariables},
		{"malformed json", st.Call("ADD", "c1", pod, []byte(`{"cniVersion":"1.0.0","name":`)), types.ErrDecodingFailure},
		{"bad mtu", st.Call("ADD", "c1", pod, testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"mtu": 10, "prevResult": bridgePrev("1.0.0")}).Bytes()), types.ErrInvalidNetworkConfig},
		{"no bridge", st.Call("ADD", "c1", pod, testutil.Conf("1.0.0", testNet, plugin).Bytes()), types.ErrInvalidNetworkConfig},
		{"missing bridge", st.Call("ADD", "c1", pod, testutil.Conf("1.0.0", testNet, plugin).With("bridge", "br-nope").Bytes()), types.ErrInvalidNetworkConfig},
		{"not a bridge", st.Call("ADD", "c1", pod, testutil.Conf("1.0.0", testNet, plugin).With("bridge", "eth0").Bytes()), types.ErrInvalidNetworkConfig},
		{"node netns", st.Call("ADD", "c1", node.NS, good), types.ErrInvalidNetNS},
		{"node netns DEL", st.Call("DEL", "c1", node.NS, good), types.ErrInvalidNetNS},
		{"CHECK at 0.3.1", st.Call("CHECK", "c1", pod, testutil.Conf("0.3.1", testNet, plugin).With("prevResult", bridgePrev("0.3.1")).Bytes()), types.ErrIncompatibleCNIVersion},
		{"netns missing", func() testutil.Invocation {
			i := st.Call("ADD", "c1", pod, good)
			i.NetNS = "/run/netns/vxvrf-no-such-netns"
			return i
		}(), types.ErrInvalidEnvironmentVariables},
	}
	for _, c := range cases {
		o := st.Exec(t, c.inv)
		cerr := o.CNIError(t)
		if cerr.Code != c.code {
			t.Errorf("%s: code %d (%s), want %d", c.name, cerr.Code, cerr.Msg, c.code)
		}
		if c.name == "netns missing" && !strings.Contains(cerr.Msg, "CNI_NETNS") {
			t.Errorf("netns missing: message does not name CNI_NETNS: %s", cerr.Msg)
		}
		if c.name == "no bridge" && !strings.Contains(cerr.Msg, `"bridge"`) {
			t.Errorf("no bridge: message does not name the key: %s", cerr.Msg)
		}
	}
	if linkExists(node.NS, hostVeth("c1")) {
		t.Errorf("a failed ADD left host veth %s", hostVeth("c1"))
	}
	if out := mustIn(t, pod, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("a failed ADD left eth0 in the pod: %s", out)
	}
	// The node netns case must not have created a pod iface in the node
	// either. Only link lines count: ip may also print "Error: Peer netns
	// reference is invalid." for a peer whose namespace another test is
	// deleting at that moment.
	if out := mustIn(t, node.NS, "ip", "-o", "link", "show", "type", "veth"); len(linkLine.FindAllString(out, -1)) != 1 {
		t.Errorf("node has unexpected veths: %s", out)
	}
}

// TestLifecycle runs ADD (delegated IPAM) → traffic → CHECK → broken CHECK →
// DEL → DEL for every supported version.
func TestLifecycle(t *testing.T) {
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			lab, node := newNode(t, "va-l"+strings.ReplaceAll(ver, ".", ""))
			st := stage(t, node)
			data := t.TempDir()
			conf := testutil.Conf(ver, testNet, plugin).Keys(map[string]any{"ipam": hostLocal(data, "", ""), "prevResult": bridgePrev(ver)}).Bytes()

			pods := []string{"p1", "p2"}
			results := map[string][]byte{}
			ips := map[string]string{}
			podNS := map[string]*netsim.NS{}
			for _, p := range pods {
				pod := addPod(t, lab, p)
				podNS[p] = pod
				out := st.Add(t, "cid-"+p, pod, conf).OK(t)
				results[p] = out
				var raw map[string]any
				_ = json.Unmarshal(out, &raw)
				if raw["cniVersion"] != ver {
					t.Fatalf("result version %v, want %s", raw["cniVersion"], ver)
				}
				ip0, _ := raw["ips"].([]any)[0].(map[string]any)
				if _, has := ip0["version"]; has != (ver == "0.3.1" || ver == "0.4.0") {
					t.Errorf("ips[].version present=%v at %s: %s", has, ver, out)
				}
				r := parseResult(t, out)
				if len(r.Interfaces) != 4 {
					t.Fatalf("want uplink, bridge, host veth, pod iface; got %s", out)
				}
				hv, pi := r.Interfaces[2], r.Interfaces[3]
				if hv.Name != hostVeth("cid-"+p) || hv.Sandbox != "" || pi.Name != "eth0" || pi.Sandbox != pod.Path || pi.Mac == "" {
					t.Fatalf("interfaces: %s", out)
				}
				if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 3 {
					t.Fatalf("ips must point at the pod iface: %s", out)
				}
				ips[p] = podIP(t, r)

				addrs := mustIn(t, pod, "ip", "-o", "-4", "addr", "show", "eth0")
				if !strings.Contains(addrs, ips[p]+"/24") {
					t.Errorf("pod %s lacks %s: %s", p, ips[p], addrs)
				}
				if rt := mustIn(t, pod, "ip", "route", "show", "default"); !strings.Contains(rt, "via "+gateway) {
					t.Errorf("pod %s default route: %q", p, rt)
				}
				if l := mustIn(t, node.NS, "ip", "-o", "link", "show", hv.Name); !strings.Contains(l, "master "+testBridge) {
					t.Errorf("host veth not on the bridge: %s", l)
				}
				if a := mustIn(t, node.NS, "ip", "-d", "link", "show", hv.Name); !strings.Contains(a, "alias vxvrf:"+testNet+":cid-"+p+":eth0") {
					t.Errorf("host veth alias: %s", a)
				}
			}
			if a := mustIn(t, node.NS, "ip", "-o", "-4", "addr", "show", testBridge); strings.Count(a, gateway+"/24") != 1 {
				t.Errorf("bridge gateway address: %q", a)
			}
			p1 := podNS["p1"]
			mustIn(t, p1, "ping", "-c1", "-W2", ips["p2"])
			mustIn(t, p1, "ping", "-c1", "-W2", gateway)

			if ver != "0.3.1" {
				check := st.Call("CHECK", "cid-p1", p1, testutil.WithPrev(t, conf, results["p1"]))
				st.Exec(t, check).OK(t)
				mustIn(t, p1, "ip", "addr", "del", ips["p1"]+"/24", "dev", "eth0")
				if o := st.Exec(t, check); o.Err == nil {
					t.Errorf("CHECK passed with the pod address removed")
				} else if !strings.Contains(string(o.Stdout), ips["p1"]) {
					t.Errorf("CHECK error should name the missing address: %s", o.Stdout)
				}
			}
			for _, p := range pods {
				pod := podNS[p]
				del := testutil.WithPrev(t, conf, results[p])
				st.Del(t, "cid-"+p, pod, del).OK(t)
				st.Del(t, "cid-"+p, pod, del).OK(t)
				if linkExists(node.NS, hostVeth("cid-"+p)) || linkExists(pod, "eth0") {
					t.Errorf("DEL left links of %s", p)
				}
			}
			if l := leases(t, data); len(l) != 0 {
				t.Errorf("DEL left leases %v", l)
			}
		})
	}
}
