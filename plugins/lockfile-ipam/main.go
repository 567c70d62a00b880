// Command lockfile-ipam is vxvrf's IPAM: host-local compatible ranges, one
// JSON state file per network guarded by a flock. It runs as delegated IPAM
// (ipam.type) or as its own stage of the chain; see README.md.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	cniutil.PluginMain(pluginName, skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
