// Command vrf-vxlan-bridge is the second stage of the vxvrf chain: it ensures
// the shared devices of one network on the node: a VRF (optional), a bridge
// and a VXLAN device (optional), and appends them to the result.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	// DEL reads no config (see cmdDel): nothing about it, not even JSON
	// that does not parse or an unsupported cniVersion, blocks a teardown.
	cniutil.PluginMain("vrf-vxlan-bridge", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC},
		cniutil.DelReadsNoConfig())
}
