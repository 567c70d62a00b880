// Package integration runs the built plugin binaries through libcni exactly
// as a runtime does, with a simulated node (a network namespace) per test:
// the whole chain, every version, concurrency, DEL corner cases, a failing
// ADD, the host-local swap and GC.
package integration

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestTwoPods: two pods through the default conflist reach each other, their
// gateway and the node; CHECK passes and fails once a piece is removed; DEL
// leaves nothing of them; GC with an empty list removes the network.
func TestTwoPods(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-two", nil)
	p1, p2 := e.addPod("p1"), e.addPod("p2")
	// The gateway MAC must not move when ports join or leave: the pods'
	// neighbour caches hold it. A Linux bridge whose MAC was never set takes
	// its lowest port's, so the MAC vrf-vxlan-bridge reported before any port
	// was attached must still be the bridge's.
	br := naming.BridgeName(e.chain.List.Name)
	for _, iface := range p1.res.Interfaces {
		if iface.Name == br && iface.Sandbox == "" {
			if got := e.bridgeMAC(); !strings.EqualFold(got, iface.Mac) {
				t.Errorf("bridge %s (the gateway) has MAC %s, but pod1's ADD reported %s: it follows its ports", br, got, iface.Mac)
			}
		}
	}
	e.present(p1)
	e.present(p2)
	for i, p := range []*pod{p1, p2} {
		v4 := p.ip(true)
		if v4 == nil || !strings.HasPrefix(v4.Address.IP.String(), "10.244.1.") {
			t.Errorf("pod%d: no IPv4 address in 10.244.1.0/24: %v", i+1, p.ips)
		}
	}
	if p1.ip(true) != nil && p2.ip(true) != nil && p1.ip(true).Address.IP.Equal(p2.ip(true).Address.IP) {
		t.Fatalf("both pods got %s", p1.ip(true).Address.IP)
	}
	e.connectivity(p1, p2)

	for _, p := range []*pod{p1, p2} {
		if err := e.chain.Check(ctx(t), p.rt); err != nil {
			t.Errorf("CHECK %s on a healthy attachment: %v", p.rt.ContainerID, err)
		}
	}
	// Remove the host veth of pod1: CHECK must notice.
	veth := naming.HostVethName(e.chain.List.Name, p1.rt.ContainerID, p1.rt.IfName)
	e.in("ip", "link", "del", veth)
	if err := e.chain.Check(ctx(t), p1.rt); err == nil {
		t.Errorf("CHECK passed after the host veth %s of pod1 was deleted", veth)
	}
	// Remove pod2's IPv4 address: CHECK must notice.
	if v4 := p2.ip(true); v4 != nil {
		if _, err := p2.ns.In("ip", "addr", "del", v4.Address.String(), "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := e.chain.Check(ctx(t), p2.rt); err == nil {
			t.Errorf("CHECK passed after pod2's address %s was removed", v4.Address.String())
		}
	}

	e.teardown(p1, p2)
}

// TestVersions runs the chain at every supported cniVersion.
func TestVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-ver", nil)
	for i, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			conf, err := chain.SetVersion(e.conf, v)
			if err != nil {
				t.Fatal(err)
			}
			c := e.chainFor(conf, e.chain.CNIPath)
			if c.List.CNIVersion != v {
				t.Fatalf("libcni picked %s, want %s", c.List.CNIVersion, v)
			}
			p := e.newPod(fmt.Sprintf("v%d", i))
			raw, err := c.Add(ctx(t), p.rt)
			if err != nil {
				t.Fatalf("ADD at %s: %v", v, err)
			}
			if raw.Version() != v {
				t.Errorf("ADD result version %s, want %s", raw.Version(), v)
			}
			if !strings.Contains(jsonOf(raw), fmt.Sprintf(`"cniVersion": "%s"`, v)) {
				t.Errorf("ADD result JSON is not at %s: %s", v, jsonOf(raw))
			}
			res, err := current.NewResultFromResult(raw)
			if err != nil {
				t.Fatal(err)
			}
			p.res, p.ips = res, chain.PodIPs(res, p.rt.NetNS, p.rt.IfName)
			if v4 := p.ip(true); v4 == nil || v4.Gateway == nil {
				t.Fatalf("no IPv4 address with a gateway on the pod at %s: %s", v, jsonOf(raw))
			} else {
				mustPing(t, "pod -> gateway", p.ns, v4.Gateway)
				mustPing(t, "node -> pod", e.node.NS, v4.Address.IP)
			}

			err = c.Check(ctx(t), p.rt)
			if v == "0.3.1" {
				if !errors.Is(err, libcni.ErrorCheckNotSupp) {
					t.Errorf("CHECK at 0.3.1: %v, want libcni's 'does not support CHECK'", err)
				}
			} else if err != nil {
				t.Errorf("CHECK at %s: %v", v, err)
			}
			if v == "1.1.0" {
				if err := c.Status(ctx(t)); err != nil {
					t.Errorf("STATUS: %v", err)
				}
				keep := []types.GCAttachment{{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName}}
				if err := c.GC(ctx(t), keep); err != nil {
					t.Errorf("GC keeping the pod: %v", err)
				}
				mustPing(t, "node -> pod after GC that keeps it", e.node.NS, p.ip(true).Address.IP)
			}
			if err := c.Del(ctx(t), p.rt); err != nil {
				t.Errorf("DEL at %s: %v", v, err)
			}
			if err := c.Del(ctx(t), p.rt); err != nil {
				t.Errorf("second DEL at %s: %v", v, err)
			}
			e.noLeftovers(p)
		})
	}
}

// TestConcurrent: 20 ADDs at once give 20 distinct addresses; 20 DELs at
// once leave nothing.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	const n = 20
	e := newEnv(t, "it-conc", nil)
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = e.newPod(fmt.Sprintf("p%d", i))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.chain.AddCurrent(ctx(t), p.rt)
			if err != nil {
				errs[i] = err
				return
			}
			p.res, p.ips = res, chain.PodIPs(res, p.rt.NetNS, p.rt.IfName)
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, p := range pods {
		if errs[i] != nil {
			t.Errorf("ADD %s: %v", p.rt.ContainerID, errs[i])
			continue
		}
		if len(p.ips) == 0 {
			t.Errorf("ADD %s: no pod address: %s", p.rt.ContainerID, jsonOf(p.res))
		}
		for _, ip := range p.ips {
			if other, dup := seen[ip.Address.IP.String()]; dup {
				t.Errorf("%s and %s both got %s", other, p.rt.ContainerID, ip.Address.IP)
			}
			seen[ip.Address.IP.String()] = p.rt.ContainerID
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Every pod is really wired: the node reaches each one.
	for _, p := range pods {
		mustPing(t, "node -> "+p.rt.ContainerID, e.node.NS, p.ip(true).Address.IP)
	}
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.chain.Del(ctx(t), p.rt)
		}()
	}
	wg.Wait()
	for i, p := range pods {
		if errs[i] != nil {
			t.Errorf("DEL %s: %v", p.rt.ContainerID, errs[i])
		}
	}
	e.noLeftovers(pods...)
}

// TestDelCorners: DEL with the pod netns deleted, with CNI_NETNS "", twice,
// and without a cached result all clean up.
func TestDelCorners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-del", nil)

	gone := e.addPod("gone")
	if err := e.lab.Remove(gone.ns); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Del(ctx(t), gone.rt); err != nil {
		t.Errorf("DEL with the netns deleted: %v", err)
	}
	if err := e.chain.Del(ctx(t), gone.rt); err != nil {
		t.Errorf("second DEL with the netns deleted: %v", err)
	}
	e.noLeftovers(gone)

	empty := e.addPod("empty")
	rt := empty.rt
	rt.NetNS = ""
	if err := e.chain.Del(ctx(t), rt); err != nil {
		t.Errorf("DEL with CNI_NETNS empty: %v", err)
	}
	if err := e.chain.Del(ctx(t), rt); err != nil {
		t.Errorf("second DEL with CNI_NETNS empty: %v", err)
	}
	e.noLeftovers(empty)

	nocache := e.addPod("nocache")
	if err := e.chain.DropCache(nocache.rt); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Del(ctx(t), nocache.rt); err != nil {
		t.Errorf("DEL without a cached result: %v", err)
	}
	e.noLeftovers(nocache)

	// And the network still works for a new pod afterwards.
	p1, p2 := e.addPod("after1"), e.addPod("after2")
	e.connectivity(p1, p2)
}

// TestFailedAdd: the last stage fails, the runtime DELs (with no cached
// result, as libcni caches only successes) and nothing is left.
func TestFailedAdd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-fail", nil, func(_ map[string]any, plugins []map[string]any) error {
		sf := chain.Plugin(plugins, "sysctl-firewall")
		if sf == nil {
			return errors.New("no sysctl-firewall in the default conflist")
		}
		sf["sysctls"] = map[string]any{"net.ipv4.conf.IFNAME.nonexistent": "1"}
		return nil
	})
	p := e.newPod("p1")
	res, err := e.chain.Add(ctx(t), p.rt)
	if err == nil {
		t.Fatalf("ADD with a nonexistent pod sysctl succeeded: %s", jsonOf(res))
	}
	t.Logf("ADD failed as expected: %v", err)
	if _, err := os.Stat(e.chain.CacheFile(p.rt)); err == nil {
		t.Errorf("libcni cached a failed ADD")
	}
	// The stages before the failing one did their work: the runtime's DEL
	// is what must remove it.
	veth := naming.HostVethName(e.chain.List.Name, p.rt.ContainerID, p.rt.IfName)
	if _, ok := e.links()[veth]; !ok {
		t.Errorf("after the failed ADD there is no host veth %s: did veth-attach run?", veth)
	}
	if !strings.Contains(fmt.Sprint(e.stateFiles()), p.rt.ContainerID) {
		t.Errorf("after the failed ADD no lease names %s: did lockfile-ipam run?", p.rt.ContainerID)
	}
	if err := e.chain.Del(ctx(t), p.rt); err != nil {
		t.Errorf("DEL after the failed ADD: %v", err)
	}
	// The address the failed ADD had is unknown here: look for any route or
	// lease of the pod by its container ID and host veth instead.
	e.noLeftovers(p)
	for path, content := range e.stateFiles() {
		if strings.Contains(content, "10.244.1.") && strings.Contains(content, p.rt.ContainerID) {
			t.Errorf("lease left in %s: %s", path, content)
		}
	}
}

// TestSwapHostLocal: veth-attach delegating to the reference host-local in
// place of the lockfile-ipam stage passes the same connectivity test.
func TestSwapHostLocal(t *testing.T) {
	t.Parallel()
	ref := testutil.ReferencePlugins(t, "host-local")
	e := newEnv(t, "it-swap", []string{ref}, func(conf map[string]any, plugins []map[string]any) error {
		lf := chain.Plugin(plugins, "lockfile-ipam")
		va := chain.Plugin(plugins, "veth-attach")
		if lf == nil || va == nil {
			return errors.New("default conflist lacks lockfile-ipam or veth-attach")
		}
		ipam, _ := lf["ipam"].(map[string]any)
		if ipam == nil {
			return errors.New("lockfile-ipam stage has no ipam block")
		}
		ipam["type"] = "host-local" // the same block, unchanged otherwise
		va["ipam"] = ipam
		chain.Without(conf, plugins, "lockfile-ipam")
		return nil
	})
	for _, p := range e.chain.List.Plugins {
		if p.Network.Type == "lockfile-ipam" {
			t.Fatal("lockfile-ipam still in the chain")
		}
	}
	p1, p2 := e.addPod("p1"), e.addPod("p2")
	e.connectivity(p1, p2)
	for _, p := range []*pod{p1, p2} {
		if err := e.chain.Check(ctx(t), p.rt); err != nil {
			t.Errorf("CHECK %s: %v", p.rt.ContainerID, err)
		}
	}
	// host-local keeps one file per address, holding the container ID.
	if files := e.stateFiles(); !strings.Contains(fmt.Sprint(files), p1.rt.ContainerID) {
		t.Errorf("host-local did not record pod1's lease: %v", files)
	}
	for _, p := range []*pod{p1, p2} {
		if err := e.chain.Del(ctx(t), p.rt); err != nil {
			t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
		}
	}
	e.noLeftovers(p1, p2)
}

// TestGC: the plugins' own GC (no cached attachments, so libcni DELs
// nothing itself): no key releases nothing; a list naming pod1 releases
// pod2 and keeps pod1 working; an empty list after pod1's DEL removes the
// network's shared devices and rules.
func TestGC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-gc", nil)
	p1, p2 := e.addPod("p1"), e.addPod("p2")
	// A runtime with no cache of these attachments: only the plugins' GC acts.
	gc, err := e.chain.WithCacheDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if gc.List.CNIVersion != "1.1.0" {
		t.Fatalf("GC needs 1.1.0, the conflist resolves to %s", gc.List.CNIVersion)
	}

	if err := gc.GC(ctx(t), nil); err != nil {
		t.Errorf("GC without valid-attachments: %v", err)
	}
	links, files := e.links(), fmt.Sprint(e.stateFiles())
	for _, p := range []*pod{p1, p2} {
		if _, ok := links[naming.HostVethName(e.chain.List.Name, p.rt.ContainerID, p.rt.IfName)]; !ok {
			t.Errorf("GC without the key removed the host veth of %s", p.rt.ContainerID)
		}
		if !strings.Contains(files, p.rt.ContainerID) {
			t.Errorf("GC without the key released the lease of %s: %s", p.rt.ContainerID, files)
		}
	}
	e.connectivity(p1, p2)

	keep := []types.GCAttachment{{ContainerID: p1.rt.ContainerID, IfName: p1.rt.IfName}}
	if err := gc.GC(ctx(t), keep); err != nil {
		t.Errorf("GC keeping pod1: %v", err)
	}
	// pod2's host side is released (its netns still exists: that is the
	// runtime's; the veth pair dies with the host end). Its cache entry is
	// the runtime's too, so drop it before looking.
	if err := e.chain.DropCache(p2.rt); err != nil {
		t.Fatal(err)
	}
	e.noLeftovers(p2)
	if v4 := p1.ip(true); v4 != nil {
		if err := ping(p1.ns, v4.Gateway); err != nil {
			neigh, _ := p1.ns.In("ip", "neigh")
			t.Errorf("pod1 -> gateway after GC released pod2: %v\npod1's neighbours:\n%sbridge MAC now %s", err, neigh, e.bridgeMAC())
		}
		mustPing(t, "node -> pod1 after GC", e.node.NS, v4.Address.IP)
	}
	if err := e.chain.Check(ctx(t), p1.rt); err != nil {
		t.Errorf("CHECK pod1 after GC: %v", err)
	}

	if err := e.chain.Del(ctx(t), p1.rt); err != nil {
		t.Errorf("DEL pod1: %v", err)
	}
	e.noLeftovers(p1)
	if err := gc.GC(ctx(t), []types.GCAttachment{}); err != nil {
		t.Errorf("GC with an empty list: %v", err)
	}
	e.networkGone()
}

// TestDuplicateAdd: a second ADD of the same (containerID, ifname) fails and
// leaves the first attachment working.
func TestDuplicateAdd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "it-dup", nil)
	p := e.addPod("p1")
	if res, err := e.chain.Add(ctx(t), p.rt); err == nil {
		t.Errorf("a second ADD of the same attachment succeeded: %s", jsonOf(res))
	} else {
		t.Logf("second ADD failed as expected: %v", err)
	}
	v4 := p.ip(true)
	if v4 == nil {
		t.Fatal("no IPv4 address")
	}
	mustPing(t, "pod -> gateway after the duplicate ADD", p.ns, v4.Gateway)
	mustPing(t, "node -> pod after the duplicate ADD", e.node.NS, v4.Address.IP)
	if err := e.chain.Check(ctx(t), p.rt); err != nil {
		t.Errorf("CHECK after the duplicate ADD: %v", err)
	}
	if err := e.chain.Del(ctx(t), p.rt); err != nil {
		t.Errorf("DEL: %v", err)
	}
	e.noLeftovers(p)
}
