// Command veth-attach is the vxvrf stage that attaches one pod to the
// network's bridge with a veth pair and configures its addresses.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	cniutil.PluginMain("veth-attach", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
