package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestDelegateLockfileIPAM: veth-attach delegates ADD, CHECK, STATUS, GC and
// DEL to the project's lockfile-ipam.
func TestDelegateLockfileIPAM(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.PluginDir(t, "lockfile-ipam")
	lab, node := newNode(t, "va-lf")
	st := stage(t, node)
	data := t.TempDir()
	ipam := hostLocal(data, "", "")
	ipam["type"] = "lockfile-ipam"
	conf := attach("1.1.0", ipam).Bytes()
	p1, p2 := addPod(t, lab, "p1"), addPod(t, lab, "p2")
	out1 := st.Add(t, "c1", p1, conf).OK(t)
	r1 := parseResult(t, out1)
	r2 := st.Add(t, "c2", p2, conf).Result(t)
	mustIn(t, p1, "ping", "-c1", "-W2", podIP(t, r2))
	mustIn(t, p2, "ping", "-c1", "-W2", gateway)
	if a := mustIn(t, p1, "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(a, podIP(t, r1)) {
		t.Errorf("pod address: %s", a)
	}
	st.Check(t, "c1", p1, testutil.WithPrev(t, conf, out1)).OK(t)
	st.Status(t, conf).OK(t)
	// GC keeping only c2: c1's host veth goes (and its lease, lockfile-ipam's part).
	gcConf := testutil.Conf("1.1.0", testNet, plugin).Keys(map[string]any{"ipam": ipam, "cni.dev/valid-attachments": []map[string]string{{"containerID": "c2", "ifname": "eth0"}}}).Bytes()
	st.GC(t, gcConf).OK(t)
	if linkExists(node.NS, hostVeth("c1")) || !linkExists(node.NS, hostVeth("c2")) {
		t.Error("GC [c2]: wrong host veths removed")
	}
	state := func() string {
		b, _ := os.ReadFile(filepath.Join(data, naming.LeaseFile(testNet)))
		return string(b)
	}
	if s := state(); strings.Contains(s, `"c1"`) || !strings.Contains(s, `"c2"`) {
		t.Errorf("lease state after GC [c2]: %s", s)
	}
	for _, cid := range []string{"c1", "c2"} {
		st.Del(t, cid, nil, conf).OK(t)
		st.Del(t, cid, nil, conf).OK(t)
	}
	if linkExists(node.NS, hostVeth("c2")) {
		t.Error("DEL left c2's host veth")
	}
	if s := state(); strings.Contains(s, `"c2"`) {
		t.Errorf("lease state after DEL: %s", s)
	}
}
