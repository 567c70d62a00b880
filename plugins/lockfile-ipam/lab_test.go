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
	lab := testutil.NewLab(t, "li-node")
	node, err := lab.AddNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := lab.AddNS("p1")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	inv := testutil.Invocation{Plugin: pluginName, ContainerID: "li-c1", NetNS: pod.Path, IfName: "eth0", Config: stdin}

	add := inv
	add.Command = "ADD"
	testutil.MustRun(t, node.NetNS, add)
	chk := inv
	chk.Command = "CHECK"
	testutil.MustRun(t, node.NetNS, chk)
	del := inv
	del.Command = "DEL"
	testutil.MustRun(t, node.NetNS, del)
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("leases after DEL: %v", l)
	}

	// ADD again, then the pod netns disappears: DEL still releases.
	testutil.MustRun(t, node.NetNS, add)
	if err := lab.Remove(pod); err != nil {
		t.Fatal(err)
	}
	testutil.MustRun(t, node.NetNS, del)
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("leases after DEL with the netns gone: %v", l)
	}
	empty := del
	empty.NetNS = ""
	testutil.MustRun(t, node.NetNS, empty)

	// The node's own netns as CNI_NETNS: refused (8), nothing leased.
	host := add
	host.ContainerID = "li-c2"
	host.NetNS = node.Path
	if e := testutil.Run(t, node.NetNS, host).CNIError(t); e.Code != types.ErrInvalidNetNS {
		t.Fatalf("own netns: code %d (%s)", e.Code, e.Msg)
	}
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("refused ADD leased: %v", l)
	}
}
