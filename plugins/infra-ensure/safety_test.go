package main

// Hostile and broken input (issue 7), through the real binary.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/testutil"
)

// TestRefusedAddLeavesSysctls: an ADD refused for its config (an unusable
// stateDir: 5; a malformed prevResult: 6/7) leaves the node sysctls as
// they were, and DEL/GC of such a config succeed.
func TestRefusedAddLeavesSysctls(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "ie-refuse")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		extra map[string]any
		code  uint
	}{
		{"stateDir is a file", map[string]any{"stateDir": file}, types.ErrIOFailure},
		{"stateDir under a file", map[string]any{"stateDir": filepath.Join(file, "sub")}, types.ErrIOFailure},
		{"null interface in prevResult", map[string]any{"stateDir": t.TempDir(), "prevResult": map[string]any{"cniVersion": "1.1.0", "interfaces": []any{nil}}}, types.ErrInvalidNetworkConfig},
		{"prevResult not an object", map[string]any{"stateDir": t.TempDir(), "prevResult": []any{}}, types.ErrDecodingFailure},
	} {
		for _, k := range keys {
			if _, err := node.In("sysctl", "-qw", k+"=0"); err != nil {
				t.Fatal(err)
			}
		}
		conf := st.Conf("1.1.0", "ie").Keys(c.extra).Bytes()
		e := st.Add(t, "c1", pod, conf).CNIError(t)
		if e.Code != c.code {
			t.Errorf("%s: code %d %s, want %d", c.name, e.Code, e.Msg, c.code)
		}
		for _, k := range keys {
			if got := nodeSysctl(t, node, k); got != "0" {
				t.Errorf("%s: the refused ADD set node %s to %s", c.name, k, got)
			}
		}
		st.Del(t, "c1", pod, conf).OK(t)
	}
}

// TestDelAnyConfig: DEL succeeds whatever the config says beyond its name:
// a cniVersion ADD refuses, a relative stateDir, a bad uplink, a malformed
// prevResult.
func TestDelAnyConfig(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "ie-del")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	for _, extra := range []map[string]any{
		{"cniVersion": "0.2.0"},
		{"cniVersion": "0.1.0", "stateDir": "relative"},
		{"uplink": "a/b"},
		{"prevResult": map[string]any{"interfaces": []any{nil}}},
	} {
		st.Del(t, "c1", pod, st.Conf("1.0.0", "ie").Keys(extra).Bytes()).OK(t) // extra's cniVersion wins
	}
}
