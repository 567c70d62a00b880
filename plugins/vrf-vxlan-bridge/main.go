// Command vrf-vxlan-bridge is the second stage of the vxvrf chain: it ensures
// the shared devices of one network on the node: a VRF (optional), a bridge
// and a VXLAN device (optional), and appends them to the result.
package main

import (
	"io"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	// DEL releases nothing: the VRF, bridge and VXLAN are shared by every
	// attachment of the network and stay until GC says the network is
	// empty. So DEL succeeds before skel looks at the config: a pod
	// sandbox stays removable whatever the config has become (invalid,
	// changed, an unsupported cniVersion such as 0.2.0).
	if os.Getenv("CNI_COMMAND") == "DEL" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	cniutil.PluginMain("vrf-vxlan-bridge", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Status: cmdStatus, GC: cmdGC})
}
