package testutil

import (
	"encoding/json"
	"fmt"
	"maps"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/netsim"
)

// Stage drives one stage binary the way a runtime does: every command is
// an exec of the binary inside In (a lab node), with the CNI_* variables
// and the config on stdin. Tests of every package use it:
//
//	st := testutil.Stage{Plugin: "infra-ensure", In: node.NetNS}
//	conf := st.Conf("1.1.0", "net").With("stateDir", dir).Bytes()
//	res := st.Add(t, "c1", pod, conf).OK(t)
//	st.Check(t, "c1", pod, conf).OK(t)
//	e := st.Del(t, "c1", pod, bad).CNIError(t)
type Stage struct {
	Plugin string   // binary name
	In     ns.NetNS // where the binary runs (a node); nil: the test's own namespace (IPAM touches none)
	Dir    string   // where the binary is, and CNI_PATH: PluginDir(t, Plugin) when empty
	Env    []string // extra environment of every exec (a CNI_PATH with a delegate's directory, ...)
	IfName string   // CNI_IFNAME: "eth0" when empty
}

// Conf starts a network config of this stage: Conf(cniVersion, network, s.Plugin).
func (s Stage) Conf(cniVersion, network string) Config {
	return Conf(cniVersion, network, s.Plugin)
}

// Run runs command (ADD, CHECK, DEL) for container cid in pod (nil: an
// empty CNI_NETNS); Add, Check and Del name it.
func (s Stage) Run(t testing.TB, command, cid string, pod *netsim.NS, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, s.Call(command, cid, pod, conf))
}

// Add runs ADD for container cid in pod (nil: an empty CNI_NETNS).
func (s Stage) Add(t testing.TB, cid string, pod *netsim.NS, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, s.Call("ADD", cid, pod, conf))
}

// Check runs CHECK for container cid in pod.
func (s Stage) Check(t testing.TB, cid string, pod *netsim.NS, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, s.Call("CHECK", cid, pod, conf))
}

// Del runs DEL for container cid in pod (nil: the runtime's DEL after the
// sandbox is gone, with an empty CNI_NETNS).
func (s Stage) Del(t testing.TB, cid string, pod *netsim.NS, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, s.Call("DEL", cid, pod, conf))
}

// GC runs GC (no container, netns or ifname, as libcni sends it).
func (s Stage) GC(t testing.TB, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, Invocation{Command: "GC", Config: conf})
}

// Status runs STATUS (no container, netns or ifname).
func (s Stage) Status(t testing.TB, conf []byte) Outcome {
	t.Helper()
	return s.Exec(t, Invocation{Command: "STATUS", Config: conf})
}

// Call is the invocation Run would exec, for a test that changes a field
// first (an ifname too long, a netns that does not exist) or runs it
// again: st.Exec(t, inv).
func (s Stage) Call(cmd, cid string, pod *netsim.NS, conf []byte) Invocation {
	inv := Invocation{Command: cmd, ContainerID: cid, IfName: s.IfName, Config: conf}
	if inv.IfName == "" {
		inv.IfName = "eth0"
	}
	if pod != nil {
		inv.NetNS = pod.Path
	}
	return inv
}

// Exec runs any invocation of the stage (another ifname, CNI_ARGS, a
// CNI_NETNS that is no lab namespace): inv's Plugin and Dir default to the
// stage's, the stage's Env comes before inv's.
func (s Stage) Exec(t testing.TB, inv Invocation) Outcome {
	t.Helper()
	if inv.Plugin == "" {
		inv.Plugin = s.Plugin
	}
	if inv.Dir == "" {
		inv.Dir = s.Dir
	}
	if len(s.Env) > 0 {
		inv.Env = append(append([]string(nil), s.Env...), inv.Env...)
	}
	return Run(t, s.In, inv)
}

// OK fails the test unless the plugin exited 0, and returns its stdout.
func (o Outcome) OK(t testing.TB) []byte {
	t.Helper()
	if o.Err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", o.what, o.Err, o.Stdout, o.Stderr)
	}
	return o.Stdout
}

// Result is OK's stdout decoded as a result (any version: the fields of
// 0.3.1 to 1.1.0 all decode into current.Result); it fails the test when
// the plugin failed or printed no result.
func (o Outcome) Result(t testing.TB) *current.Result {
	t.Helper()
	out := o.OK(t)
	var r current.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s: result %s: %v", o.what, out, err)
	}
	return &r
}

// Config is a network config under construction:
//
//	testutil.Conf("1.1.0", "net", "veth-attach").With("ipam", ipam).Prev(out).Bytes()
//
// With, Keys and Prev return a copy; the receiver is not changed, so one
// base config can be varied per case.
type Config map[string]any

// Conf is a config with cniVersion, name and type.
func Conf(cniVersion, network, typ string) Config {
	return Config{"cniVersion": cniVersion, "name": network, "type": typ}
}

// With sets key to v.
func (c Config) With(key string, v any) Config {
	d := maps.Clone(c)
	d[key] = v
	return d
}

// Keys sets every key of keys.
func (c Config) Keys(keys map[string]any) Config {
	d := maps.Clone(c)
	maps.Copy(d, keys)
	return d
}

// Prev sets prevResult: raw JSON ([]byte, a plugin's stdout) as decoded,
// a types.Result converted to the config's cniVersion, anything else as is.
// It panics on JSON that does not decode or a result that does not
// convert: a mistake in the test, not in the plugin.
func (c Config) Prev(result any) Config {
	switch r := result.(type) {
	case []byte:
		var v any
		if err := json.Unmarshal(r, &v); err != nil {
			panic(fmt.Sprintf("testutil.Config.Prev: %q: %v", r, err))
		}
		result = v
	case types.Result:
		ver, _ := c["cniVersion"].(string)
		conv, err := r.GetAsVersion(ver)
		if err != nil {
			panic(fmt.Sprintf("testutil.Config.Prev: result as %s: %v", ver, err))
		}
		b, err := json.Marshal(conv)
		if err != nil {
			panic(fmt.Sprintf("testutil.Config.Prev: %v", err))
		}
		return c.Prev(b)
	}
	return c.With("prevResult", result)
}

// WithPrev is conf (JSON) with prevResult set as Config.Prev sets it: raw
// JSON (a plugin's stdout) as is, a types.Result converted to conf's
// cniVersion.
func WithPrev(t testing.TB, conf []byte, result any) []byte {
	t.Helper()
	var c Config
	if err := json.Unmarshal(conf, &c); err != nil {
		t.Fatalf("config %s: %v", conf, err)
	}
	return c.Prev(result).Bytes()
}

// Bytes is the config's JSON. It panics on a value JSON cannot encode.
func (c Config) Bytes() []byte {
	b, err := json.Marshal(map[string]any(c))
	if err != nil {
		panic(fmt.Sprintf("testutil.Config: %v", err))
	}
	return b
}
