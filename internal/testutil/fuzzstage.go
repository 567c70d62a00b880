package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/gofrs/flock"
	"github.com/vishvananda/netlink"
)

// The command-level fuzz targets run a stage's ADD, CHECK, DEL, GC and
// STATUS in-process, so the fuzzer sees the plugin's coverage. They change
// the network namespace they run in, so they run only when the whole test
// process is in a throwaway network and mount namespace of its own:
// scripts/fuzz.sh starts the fuzz test binaries under
// `unshare --net --mount` with a tmpfs on /run and sets
// VXVRF_FUZZ_ISOLATED=1. Anywhere else (a plain `go test ./...`) they check
// only what needs no kernel and skip the rest.

// FuzzIsolated reports whether this process may change its network
// namespace: VXVRF_FUZZ_ISOLATED=1, and its network and mount namespaces
// are neither those scripts/fuzz.sh started in (VXVRF_FUZZ_OUTER_NET,
// VXVRF_FUZZ_OUTER_MNT, both required) nor, where readable, PID 1's.
func FuzzIsolated() bool {
	if os.Getenv("VXVRF_FUZZ_ISOLATED") != "1" {
		return false
	}
	for _, k := range []string{"net", "mnt"} {
		self, err := os.Readlink("/proc/self/ns/" + k)
		outer := os.Getenv("VXVRF_FUZZ_OUTER_" + strings.ToUpper(k))
		if err != nil || outer == "" || self == outer {
			return false
		}
		if init, err := os.Readlink("/proc/1/ns/" + k); err == nil && init == self {
			return false
		}
	}
	return true
}

// fuzzNode is the throwaway node of an isolated fuzz process: uplink eth0
// (198.18.0.11/24, default route), bridge fzbr0, a pod netns /run/netns/fzpod
// and a host veth fzveth0 whose peer is eth0 in the pod, matching
// PrevResults.
type fuzzNode struct {
	root  string // state root forced into every config
	podNS string // CNI_NETNS of configs whose prevResult names SANDBOX: the fixture pod
	empty string // CNI_NETNS of the others: an empty pod of this process
	n     atomic.Int64
}

var (
	fuzzOnce sync.Once
	fuzzN    *fuzzNode
	fuzzErr  error
)

const fuzzPod = "/run/netns/fzpod"

func getFuzzNode() (*fuzzNode, error) {
	fuzzOnce.Do(func() {
		root, err := os.MkdirTemp("", "vxvrf-fuzz-")
		if err != nil {
			fuzzErr = err
			return
		}
		if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
			fuzzErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(root, "resolv.conf"), []byte("nameserver 10.96.0.10\nsearch svc.cluster.local\n"), 0o644); err != nil {
			fuzzErr = err
			return
		}
		// A dead worker of an earlier target may have had this pid.
		empty := fmt.Sprintf("fzempty-%d", os.Getpid())
		_ = exec.Command("ip", "netns", "del", empty).Run()
		if out, err := exec.Command("ip", "netns", "add", empty).CombinedOutput(); err != nil {
			fuzzErr = fmt.Errorf("ip netns add: %w: %s", err, out)
			return
		}
		fuzzN = &fuzzNode{root: root, podNS: fuzzPod, empty: filepath.Join("/run/netns", empty)}
	})
	if fuzzErr != nil {
		return nil, fuzzErr
	}
	// Re-made before every input: a GC or DEL may have removed parts.
	if err := emptyPod(fuzzN.empty); err != nil {
		return nil, err
	}
	return fuzzN, ensureFuzzNode()
}

// emptyPod deletes every link but lo in the pod netns at path.
func emptyPod(path string) error {
	pod, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer pod.Close()
	return pod.Do(func(ns.NetNS) error {
		links, err := netlinksafe.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				_ = netlink.LinkDel(l)
			}
		}
		return nil
	})
}

// ensureFuzzNode (re)creates the fixture; the fuzz workers share the
// namespace, so it runs under a lock on the private /run.
func ensureFuzzNode() error {
	l := flock.New("/run/vxvrf-fuzz-node.lock")
	if err := l.Lock(); err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Stat(fuzzPod); err != nil {
		if out, err := exec.Command("ip", "netns", "add", filepath.Base(fuzzPod)).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add: %w: %s", err, out)
		}
	}
	if lo, err := netlinksafe.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if _, err := netlinksafe.LinkByName("eth0"); err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = "eth0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "fzpeer0"}); err != nil {
			return fmt.Errorf("fuzz node eth0: %w", err)
		}
		eth0, err := netlinksafe.LinkByName("eth0")
		if err != nil {
			return err
		}
		peer, _ := netlinksafe.LinkByName("fzpeer0")
		addr, _ := netlink.ParseAddr("198.18.0.11/24")
		_ = netlink.AddrAdd(eth0, addr)
		_ = netlink.LinkSetUp(eth0)
		if peer != nil {
			_ = netlink.LinkSetUp(peer)
		}
		_ = netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("198.18.0.1"), Flags: int(netlink.FLAG_ONLINK)})
	}
	if _, err := netlinksafe.LinkByName("fzbr0"); err != nil {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = "fzbr0", 1450
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("fuzz node fzbr0: %w", err)
		}
		if br, err := netlinksafe.LinkByName("fzbr0"); err == nil {
			_ = netlink.LinkSetUp(br)
		}
	}
	if _, err := netlinksafe.LinkByName("fzveth0"); err != nil {
		pod, err := ns.GetNS(fuzzPod)
		if err != nil {
			return err
		}
		defer pod.Close()
		_ = pod.Do(func(ns.NetNS) error {
			if l, err := netlinksafe.LinkByName("eth0"); err == nil {
				_ = netlink.LinkDel(l)
			}
			return nil
		})
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = "fzveth0", 1450
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "fzpodif0"}); err != nil {
			return fmt.Errorf("fuzz node fzveth0: %w", err)
		}
		peer, err := netlinksafe.LinkByName("fzpodif0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(pod.Fd())); err != nil {
			return err
		}
		if veth, err := netlinksafe.LinkByName("fzveth0"); err == nil {
			if br, err := netlinksafe.LinkByName("fzbr0"); err == nil {
				_ = netlink.LinkSetMaster(veth, br)
			}
			_ = netlink.LinkSetUp(veth)
		}
		_ = pod.Do(func(ns.NetNS) error {
			l, err := netlinksafe.LinkByName("fzpodif0")
			if err != nil {
				return err
			}
			_ = netlink.LinkSetName(l, "eth0")
			_ = netlink.LinkSetUp(l)
			a, _ := netlink.ParseAddr("10.244.1.5/24")
			return netlink.AddrAdd(l, a)
		})
	}
	return nil
}

// sanitize points every path of a fuzzed JSON object config into the fuzz
// root (state dirs, IPAM data dir, resolv.conf) and puts the pod netns path
// in place of SANDBOX. A non-object input is returned as it is.
func (n *fuzzNode) sanitize(stdin []byte) []byte {
	stdin = bytes.ReplaceAll(stdin, []byte("SANDBOX"), []byte(n.podNS))
	var m map[string]json.RawMessage
	if json.Unmarshal(stdin, &m) != nil || m == nil {
		return stdin
	}
	state, _ := json.Marshal(filepath.Join(n.root, "state"))
	if _, ok := m["stateDir"]; ok {
		m["stateDir"] = state
	}
	if _, ok := m["dataDir"]; ok {
		m["dataDir"] = state
	}
	var typ string
	_ = json.Unmarshal(m["type"], &typ)
	if typ == "infra-ensure" {
		m["stateDir"] = state
	}
	var ipam map[string]json.RawMessage
	if json.Unmarshal(m["ipam"], &ipam) == nil && ipam != nil {
		ipam["dataDir"], _ = json.Marshal(filepath.Join(n.root, "ipam"))
		if _, ok := ipam["resolvConf"]; ok {
			ipam["resolvConf"], _ = json.Marshal(filepath.Join(n.root, "resolv.conf"))
		}
		m["ipam"], _ = json.Marshal(ipam)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return stdin
	}
	return out
}

// CmdOutcome is what one in-process command printed and returned.
type CmdOutcome struct {
	Stdout []byte
	Err    *types.Error
}

// RunInProcess runs one CNI command of the stage in this process through
// skel, exactly as the binary's main would (env, stdin, version checks),
// and captures stdout. A panic in the stage is not recovered.
func RunInProcess(funcs skel.CNIFuncs, env map[string]string, stdin []byte) (CmdOutcome, error) {
	for k, v := range env {
		os.Setenv(k, v)
	}
	in, err := os.CreateTemp("", "vxvrf-fuzz-stdin-")
	if err != nil {
		return CmdOutcome{}, err
	}
	defer os.Remove(in.Name())
	defer in.Close()
	if _, err := in.Write(stdin); err != nil {
		return CmdOutcome{}, err
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return CmdOutcome{}, err
	}
	out, err := os.CreateTemp("", "vxvrf-fuzz-stdout-")
	if err != nil {
		return CmdOutcome{}, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = in, out
	e := skel.PluginMainFuncsWithError(funcs, version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0"), "fuzz")
	os.Stdin, os.Stdout = oldIn, oldOut
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return CmdOutcome{}, err
	}
	return CmdOutcome{Stdout: b, Err: e}, nil
}

// FuzzStage runs stdin through the stage's ADD, CHECK, DEL, GC and STATUS,
// in-process, in the throwaway node of an isolated fuzz process, and checks:
// no panic (the fuzzer reports one as a crash), every error is a CNI error
// with a non-zero code and a message, ADD prints a well-formed result, and
// a DEL after a successful ADD of the same config succeeds. Outside an
// isolated process it skips.
func FuzzStage(t *testing.T, funcs skel.CNIFuncs, stdin []byte) {
	t.Helper()
	if !FuzzIsolated() {
		t.Skip("command-level fuzzing changes the network namespace: run through scripts/fuzz.sh (make fuzz)")
	}
	node, err := getFuzzNode()
	if err != nil {
		t.Fatalf("fuzz node: %v", err)
	}
	podNS := node.empty
	if bytes.Contains(stdin, []byte("SANDBOX")) {
		podNS = node.podNS
	}
	stdin = node.sanitize(stdin)
	cid := fmt.Sprintf("fz%d-%d", os.Getpid(), node.n.Add(1))
	env := map[string]string{
		"CNI_CONTAINERID": cid,
		"CNI_NETNS":       podNS,
		"CNI_IFNAME":      "eth0",
		"CNI_ARGS":        "IgnoreUnknown=1;K8S_POD_NAME=fz",
		"CNI_PATH":        filepath.Join(node.root, "bin"),
	}
	run := func(cmd string) CmdOutcome {
		env["CNI_COMMAND"] = cmd
		defer func() {
			if r := recover(); r != nil {
				// Name the verb and input; the fuzzer prints the stack.
				t.Logf("%s panicked on %s", cmd, Printable(stdin))
				panic(r)
			}
		}()
		start := time.Now()
		o, err := RunInProcess(funcs, env, stdin)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if o.Err != nil {
			if o.Err.Code == 0 || o.Err.Msg == "" {
				t.Fatalf("%s answered a CNI error with code %d and message %q on %s", cmd, o.Err.Code, o.Err.Msg, Printable(stdin))
			}
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("%s took %s on %s", cmd, d, Printable(stdin))
		}
		return o
	}
	add := run("ADD")
	if add.Err == nil {
		CheckResultJSON(t, add.Stdout)
	}
	run("CHECK")
	del := run("DEL")
	if add.Err == nil && del.Err != nil {
		t.Fatalf("DEL after a successful ADD of the same config failed: %v\nconfig %s", del.Err, Printable(stdin))
	}
	run("GC")
	run("STATUS")
}

// FuzzParse is the body of a stage's FuzzParseConfig: seeded with the
// stage's shipped and hostile configs, any stdin either parses into a
// config that re-marshals and parses again (CheckRemarshal), or is refused
// with a CNI configuration error (ConfigCodes).
func FuzzParse[T any](f *testing.F, stage string, parse func([]byte) (T, error)) {
	for _, s := range StageSeeds(f, stage, true) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		conf, err := parse(stdin)
		if err != nil {
			CheckCNIError(t, err, ConfigCodes...)
			return
		}
		CheckRemarshal(t, conf, parse)
	})
}

// FuzzCommands is the body of a stage's FuzzCommands: seeded with the
// stage's shipped configs (the hostile ones are corpus files under the
// package's testdata/fuzz/FuzzCommands), every input goes through FuzzStage.
func FuzzCommands(f *testing.F, stage string, funcs skel.CNIFuncs) {
	if !FuzzIsolated() {
		// One skip for the target, not one per corpus file: its seeds run
		// in `make fuzz` (part of `make test`), inside the sandbox.
		f.Skip("command-level fuzzing changes the network namespace: its seeds and fuzzing run through scripts/fuzz.sh (make fuzz, part of make test)")
	}
	for _, s := range StageSeeds(f, stage, false) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		FuzzStage(t, funcs, stdin)
	})
}
