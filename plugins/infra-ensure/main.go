// Command infra-ensure is the first stage of the vxvrf chain: it checks the
// node's uplink and kernel features, sets the node sysctls the overlay needs
// and reports the uplink as the first host interface of the result.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	cniutil.PluginMain("infra-ensure", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
