package kernel

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpAttempts is how often an interrupted netlink dump is retried, as in
// containernetworking/plugins/pkg/netlinksafe.
const dumpAttempts = 5

// NeighList is netlink.NeighList retried while the kernel reports the dump
// interrupted (the table changed under it, e.g. other pods being set up),
// as netlinksafe does for the dumps it wraps; it has no NeighList. After
// the last attempt the error is returned, not a partial list.
func NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	var list []netlink.Neigh
	var err error
	for range dumpAttempts {
		list, err = netlink.NeighList(linkIndex, family) //nolint:forbidigo // the one wrapped call
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return list, err
}
