package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
)

// NewNode is a lab (removed when the test ends) with one node, "n1".
func NewNode(t testing.TB, lab string) (*netsim.Lab, *netsim.Node) {
	t.Helper()
	l := NewLab(t, lab)
	node, err := l.AddNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	return l, node
}

// NodeWithPod is NewNode plus one empty pod namespace, "p1": what a
// one-stage test needs.
func NodeWithPod(t testing.TB, lab string) (*netsim.Node, *netsim.NS) {
	t.Helper()
	l, node := NewNode(t, lab)
	return node, AddNS(t, l, "p1")
}

// AddNS adds an empty namespace (a pod) to the lab.
func AddNS(t testing.TB, lab *netsim.Lab, role string) *netsim.NS {
	t.Helper()
	n, err := lab.AddNS(role)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// DefaultConflist is the bytes of conflist/vxvrf.conflist.
func DefaultConflist(t testing.TB) []byte {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "conflist", "vxvrf.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
