package main

import (
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/testutil"
)

// TestLabNode runs the binary the way a runtime does, inside a node
// namespace with a real pod namespace: ADD, CHECK, DEL with the netns
// present, DEL after the pod netns is gone, DEL with an empty netns. A
// CNI_NETNS that is the plugin's own (node) namespace is refused before
// anything is leased.
func TestLabNode(t *testing.T) {
	lab, node := testutil.NewNode(t, "li-node")
	pod := testutil.AddNS(t, lab, "p1")
	dataDir := t.TempDir()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	st := testutil.Stage{Plugin: pluginName, In: node.NetNS}

	st.Add(t, "li-c1", pod, stdin).OK(t)
	st.Check(t, "li-c1", pod, stdin).OK(t)
	st.Del(t, "li-c1", pod, stdin).OK(t)
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("leases after DEL: %v", l)
	}

	// ADD again, then the pod netns disappears: DEL still releases.
	st.Add(t, "li-c1", pod, stdin).OK(t)
	if err := lab.Remove(pod); err != nil {
		t.Fatal(err)
	}
	st.Del(t, "li-c1", pod, stdin).OK(t)
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("leases after DEL with the netns gone: %v", l)
	}
	st.Del(t, "li-c1", nil, stdin).OK(t)

	// The node's own netns as CNI_NETNS: refused (8), nothing leased.
	if e := st.Add(t, "li-c2", node.NS, stdin).CNIError(t); e.Code != types.ErrInvalidNetNS {
		t.Fatalf("own netns: code %d (%s)", e.Code, e.Msg)
	}
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("refused ADD leased: %v", l)
	}
}
