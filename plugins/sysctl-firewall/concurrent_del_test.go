package main

import (
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/pkg/naming"
)

// TestNftDelRaceWithConcurrentDelete: an element the DEL dumped is deleted
// by someone else (a concurrent DEL or GC) before the DEL's transaction
// commits. The transaction then fails whole with ENOENT; retryGone dumps
// again and the DEL succeeds with nothing of the attachment left (the chaos
// suite saw "netlink receive: no such file or directory" there under load).
func TestNftDelRaceWithConcurrentDelete(t *testing.T) {
	n := newNode(t, "sf-delrace")
	p := n.addPod(t, "p", "vethrace", "10.66.0.40/24")
	extra := with(BackendNftables, map[string]any{"antiSpoofing": true, "masquerade": true})
	n.stage().Add(t, "race", p.NS, config(t, "1.1.0", extra, p.prevResult(t))).OK(t)
	if n.attState(t, BackendNftables, testNet, "race") == "" {
		t.Fatal("ADD left no element to race on")
	}
	tag := naming.NftTag(testNet, "race", "eth0")
	attempts := 0
	err := n.NS.NetNS.Do(func(ns.NetNS) error {
		return retryGone(func(c *nftables.Conn) error {
			attempts++
			els, err := elementsOf(c, func(s string) bool { return naming.NftTagOf(s) == tag })
			if err != nil || len(els) == 0 {
				return err
			}
			if attempts == 1 {
				// The concurrent deleter wins the race on one element.
				other, err := nftables.New()
				if err != nil {
					return err
				}
				if err := deleteElems(other, els[:1]); err != nil {
					return err
				}
				if err := other.Flush(); err != nil {
					return err
				}
			}
			return deleteElems(c, els)
		})
	})
	if err != nil {
		t.Fatalf("DEL racing a concurrent delete: %v (after %d attempts)", err, attempts)
	}
	if attempts < 2 {
		t.Fatalf("the race did not happen (%d attempt)", attempts)
	}
	if left := n.attState(t, BackendNftables, testNet, "race"); strings.TrimSpace(left) != "" {
		t.Fatalf("left behind:\n%s", left)
	}
}
