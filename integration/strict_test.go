package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
)

// snapshot is what a refused ADD must not change: the node's links,
// firewall and state files, and the pod's links.
func (e *env) snapshot(p *pod) string {
	e.t.Helper()
	var b strings.Builder
	// ip -d prints "Error: Peer netns reference is invalid." for veths
	// whose peer namespace it cannot name, a varying number of times.
	for _, l := range strings.Split(e.in("ip", "-d", "-o", "link", "show"), "\n") {
		if !strings.HasPrefix(l, "Error:") {
			b.WriteString(l + "\n")
		}
	}
	for _, l := range strings.Split(e.ruleset(), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	files, _ := json.Marshal(e.stateFiles())
	b.Write(files)
	out, err := p.ns.In("ip", "-o", "link", "show")
	if err != nil {
		e.t.Fatal(err)
	}
	b.Write(out)
	return b.String()
}

// stageConfig is plugin i of the env's conflist as libcni hands it to the
// plugin (name and cniVersion injected), edited by f.
func (e *env) stageConfig(typ string, f func(map[string]any)) []byte {
	e.t.Helper()
	var out []byte
	_, err := chain.Edit(e.conf, func(conf map[string]any, plugins []map[string]any) error {
		p := chain.Plugin(plugins, typ)
		if p == nil {
			return fmt.Errorf("no %s in the conflist", typ)
		}
		p["name"], p["cniVersion"] = conf["name"], "1.1.0"
		f(p)
		var err error
		out, err = json.Marshal(p)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestStrictConfig: a typo or a wrongly typed value in any stage's own
// config is refused by the binary with code 7, a message naming the
// plugin, the key path and the fix, before anything changes.
func TestStrictConfig(t *testing.T) {
	e := newEnv(t, "strict", nil)
	p := e.newPod("pod")
	for _, c := range []struct {
		plugin string
		edit   func(map[string]any)
		msg    string
	}{
		{"infra-ensure", func(m map[string]any) { m["statedir"] = m["stateDir"] },
			`infra-ensure: unknown key "statedir" (did you mean "stateDir"?)`},
		{"vrf-vxlan-bridge", func(m map[string]any) { m["vxlan"] = map[string]any{"vni": 100, "remote": []string{"192.0.2.11"}} },
			`vrf-vxlan-bridge: unknown key "vxlan.remote" (did you mean "vxlan.remotes"?)`},
		{"vrf-vxlan-bridge", func(m map[string]any) { m["vxlan"] = map[string]any{"vni": "100"} },
			`vrf-vxlan-bridge: "vxlan.vni" must be a whole number, got "100"`},
		{"lockfile-ipam", func(m map[string]any) { m["ipam"].(map[string]any)["dataDirectory"] = "/x" },
			`lockfile-ipam: unknown key "ipam.dataDirectory" (did you mean "ipam.dataDir"?)`},
		{"lockfile-ipam", func(m map[string]any) {
			m["ipam"].(map[string]any)["ranges"] = []any{[]any{map[string]any{"subnet": "10.1.0.0/24", "gatway": "10.1.0.1"}}}
		}, `lockfile-ipam: unknown key "ipam.ranges[0][0].gatway" (did you mean "ipam.ranges[0][0].gateway"?)`},
		{"lockfile-ipam", func(m map[string]any) { m["isGatway"] = true },
			`lockfile-ipam: unknown key "isGatway"`},
		{"veth-attach", func(m map[string]any) { m["hairpn"] = true },
			`veth-attach: unknown key "hairpn" (did you mean "hairpin"?)`},
		{"sysctl-firewall", func(m map[string]any) { m["masquerade"] = "yes" },
			`sysctl-firewall: "masquerade" must be true or false, got "yes"`},
		{"sysctl-firewall", func(m map[string]any) { m["log"] = map[string]any{"file": "/tmp/x.log", "levl": "debug"} },
			`sysctl-firewall: unknown key "log.levl" (did you mean "log.level"?)`},
	} {
		t.Run(c.plugin, func(t *testing.T) {
			before := e.snapshot(p)
			o := testutil.Run(t, e.node.NetNS, testutil.Invocation{
				Plugin: c.plugin, Command: "ADD", ContainerID: p.rt.ContainerID, NetNS: p.rt.NetNS, IfName: "eth0",
				Config: e.stageConfig(c.plugin, c.edit),
			})
			ce := o.CNIError(t)
			if ce.Code != types.ErrInvalidNetworkConfig || !strings.HasPrefix(ce.Msg, c.msg) {
				t.Errorf("got code %d %q, want 7 %q", ce.Code, ce.Msg, c.msg)
			}
			if after := e.snapshot(p); after != before {
				t.Errorf("a refused ADD changed the node:\nbefore %s\nafter %s", before, after)
			}
		})
	}

	// What the runtime sees through libcni: the same code and message.
	e.conf, _ = chain.Edit(e.conf, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "veth-attach")["hairpn"] = true
		return nil
	})
	c := e.chainFor(e.conf, e.chain.CNIPath)
	_, err := c.Add(ctx(t), p.rt)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrInvalidNetworkConfig || !strings.Contains(ce.Msg, `unknown key "hairpn" (did you mean "hairpin"?)`) {
		t.Fatalf("libcni ADD: %v", err)
	}
	_ = c.Del(ctx(t), p.rt)
}

// TestShippedConflistsStrict: the default chain still runs under the strict
// decoder, with spec keys libcni adds (runtimeConfig, prevResult, ...).
func TestShippedConflistsStrict(t *testing.T) {
	e := newEnv(t, "strictok", nil, func(_ map[string]any, plugins []map[string]any) error {
		for _, p := range plugins {
			p["log"] = map[string]any{"level": "debug"}
		}
		return nil
	})
	p := e.addPod("pod")
	if err := e.chain.Check(ctx(t), p.rt); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Del(ctx(t), p.rt); err != nil {
		t.Fatal(err)
	}
}
