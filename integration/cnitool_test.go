package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// cnitoolCache is libcni's default cache directory, which cnitool always
// uses (it has no option to move it).
const cnitoolCache = "/var/lib/cni"

// cnitoolBin finds cnitool: on PATH (make test puts .tools/bin there), in
// the repo's .tools/bin (scripts/install-deps.sh), else built into a temp
// dir with `go install github.com/containernetworking/cni/cnitool@v1.3.0`.
// It skips the test only when none of that works.
func cnitoolBin(t *testing.T) string {
	t.Helper()
	if p := testutil.FindTool("cnitool"); p != "" {
		return p
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/containernetworking/cni/cnitool@v1.3.0")
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cnitool is not on PATH nor in .tools/bin, and building it failed (run scripts/install-deps.sh): %v: %s", err, out)
	}
	return filepath.Join(dir, "cnitool")
}

// cnitoolID is the container ID cnitool derives from a netns path.
func cnitoolID(netns string) string {
	s := sha512.Sum512([]byte(netns))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// TestCnitool drives the default conflist at cniVersion 1.1.0 with the real
// cnitool, run inside the node namespace: status, add, check, del, gc. Its
// gc DELs every attachment it has cached for the network, then sends GC
// with no cni.dev/valid-attachments key, with which our plugins release
// nothing: an attachment cnitool has no cache entry for stays, and so do
// the network's bridge and rules.
func TestCnitool(t *testing.T) {
	t.Parallel()
	tool := cnitoolBin(t)
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	network := "sw-cnitool-" + hex.EncodeToString(rnd)
	e := newEnv(t, "sw-ct", nil, func(conf map[string]any, _ []map[string]any) error {
		conf["name"] = network
		conf["cniVersion"] = "1.1.0"
		delete(conf, "cniVersions")
		return nil
	})
	t.Cleanup(func() {
		left, _ := filepath.Glob(filepath.Join(cnitoolCache, "results", network+"-*"))
		for _, f := range left {
			if err := os.Remove(f); err != nil {
				t.Errorf("remove cnitool cache entry: %v", err)
			}
		}
	})
	netdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(netdir, network+".conflist"), e.conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// The chain as cnitool sees it (same conflist, its cache): used only to
	// look for leftovers, never to run the plugins.
	seen, err := e.chain.WithCacheDir(cnitoolCache)
	if err != nil {
		t.Fatal(err)
	}
	leftovers := func(pods ...*pod) []string {
		var atts []chain.Attachment
		for _, p := range pods {
			a := chain.Attachment{RT: p.rt, Pod: p.ns}
			for _, ip := range p.ips {
				a.IPs = append(a.IPs, ip.Address.IP)
			}
			atts = append(atts, a)
		}
		return seen.Leftovers(e.node.NS, atts, filepath.Join(e.root, "state"), filepath.Join(e.root, "ipam"))
	}
	noLeftovers := func(what string, pods ...*pod) {
		t.Helper()
		for _, l := range leftovers(pods...) {
			t.Errorf("%s: left behind: %s", what, l)
		}
	}

	// cnitool runs in the node namespace, with a clean CNI environment.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_") && !strings.HasPrefix(kv, "CAP_ARGS=") && !strings.HasPrefix(kv, "NETCONFPATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "NETCONFPATH="+netdir, "CNI_PATH="+strings.Join(e.chain.CNIPath, string(os.PathListSeparator)))
	cnitool := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", e.node.Name, tool}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			t.Logf("cnitool %s: stderr:\n%s", strings.Join(args, " "), s)
		}
		if err != nil {
			return stdout.String(), fmt.Errorf("cnitool %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), nil
	}
	add := func(role string) *pod {
		t.Helper()
		p := e.newPod(role)
		p.rt.ContainerID = cnitoolID(p.ns.Path)
		out, err := cnitool("add", network, p.ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `"cniVersion": "1.1.0"`) {
			t.Errorf("cnitool add: result not at 1.1.0:\n%s", out)
		}
		raw, err := current.NewResult([]byte(out))
		if err != nil {
			t.Fatalf("cnitool add: result does not decode: %v\n%s", err, out)
		}
		res, err := current.NewResultFromResult(raw)
		if err != nil {
			t.Fatal(err)
		}
		p.res, p.ips = res, chain.PodIPs(res, p.rt.NetNS, p.rt.IfName)
		if len(p.ips) == 0 {
			t.Fatalf("cnitool add: no address on the pod's eth0:\n%s", out)
		}
		if _, err := os.Stat(seen.CacheFile(p.rt)); err != nil {
			t.Errorf("cnitool add: no cache entry where expected: %v", err)
		}
		return p
	}
	// gc and status take a netns argument too, and ignore it.
	const unused = "/nonexistent"

	if _, err := cnitool("status", network, unused); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	p1, p2 := add("p1"), add("p2")
	e.connectivity(p1, p2)
	for _, p := range []*pod{p1, p2} {
		if _, err := cnitool("check", network, p.ns.Path); err != nil {
			t.Errorf("CHECK %s: %v", p.rt.ContainerID, err)
		}
	}
	if _, err := cnitool("del", network, p1.ns.Path); err != nil {
		t.Errorf("DEL pod1: %v", err)
	}
	noLeftovers("after cnitool del", p1)
	if _, err := cnitool("del", network, p1.ns.Path); err != nil {
		t.Errorf("second DEL pod1 (no cache entry left): %v", err)
	}

	// pod3 is attached, but cnitool has no record of it (as if its cache
	// were lost): gc must leave it alone, as our plugins release nothing
	// without cni.dev/valid-attachments.
	p3 := add("p3")
	if err := os.Remove(seen.CacheFile(p3.rt)); err != nil {
		t.Fatal(err)
	}
	if _, err := cnitool("gc", network, unused); err != nil {
		t.Errorf("GC: %v", err)
	}
	// pod2 was cached: libcni DELed it before the GC.
	noLeftovers("pod2 (cached) after cnitool gc", p2)
	// pod3 was not: the plugins' GC (no key) kept everything of it.
	left := strings.Join(leftovers(p3), "\n")
	for _, want := range []string{"host veth", "state file"} {
		if !strings.Contains(left, want) {
			t.Errorf("cnitool gc released pod3's %s although it sent no valid-attachments:\n%s", want, left)
		}
	}
	if !strings.Contains(left, "iptables") && !strings.Contains(left, "nftables element") {
		t.Errorf("cnitool gc released pod3's firewall state although it sent no valid-attachments:\n%s", left)
	}
	mustPing(t, "node -> pod3 after cnitool gc", e.node.NS, p3.ip(true).Address.IP)
	mustPing(t, "pod3 -> gateway after cnitool gc", p3.ns, p3.ip(true).Gateway)
	if _, ok := e.links()[naming.BridgeName(network)]; !ok {
		t.Errorf("cnitool gc (no valid-attachments) removed the bridge %s", naming.BridgeName(network))
	}

	if _, err := cnitool("del", network, p3.ns.Path); err != nil {
		t.Errorf("DEL pod3 without a cache entry: %v", err)
	}
	noLeftovers("pod3 after cnitool del", p3)
	if _, err := cnitool("del", network, p2.ns.Path); err != nil {
		t.Errorf("DEL pod2 after gc already removed it: %v", err)
	}
	if cached, err := seen.CachedAttachments(); err != nil || len(cached) > 0 {
		t.Errorf("cnitool cache still holds %v (%v)", cached, err)
	}
	// What cnitool cannot do: drop the network's shared devices. A runtime's
	// GC with an empty list does.
	if err := e.chain.GC(ctx(t), []types.GCAttachment{}); err != nil {
		t.Errorf("GC with an empty list: %v", err)
	}
	e.networkGone()
}
