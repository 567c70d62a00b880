// Command sysctl-firewall is the last stage of the vxvrf chain: per
// attachment it applies sysctls in the pod netns and on the host veth, and
// installs tagged iptables rules (forwarding, masquerade, anti-spoofing) in
// the project's own chains. It passes prevResult through unchanged.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/pkg/cniutil"
)

func init() { runtime.LockOSThread() }

func main() {
	cniutil.PluginMain("sysctl-firewall", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
