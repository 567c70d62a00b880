package naming

// Stages are the project's plugins (CNI stages), in chain order: each is a
// folder plugins/<stage> whose binary is named <stage>. This is the one
// list in Go; the test harness (testutil.Plugins), vxvrf doctor
// (doctor.Stages) and the demos use it, and TestStagesArePluginFolders
// keeps it equal to the folders under plugins/. Shell scripts list
// plugins/ themselves.
func Stages() []string {
	return []string{"infra-ensure", "vrf-vxlan-bridge", IPAMStage, "veth-attach", "sysctl-firewall"}
}

// IPAMStage is the one stage that is also an IPAM plugin (veth-attach's
// ipam.type); every other stage named as an IPAM is refused.
const IPAMStage = "lockfile-ipam"
