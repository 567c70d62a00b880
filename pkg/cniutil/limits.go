package cniutil

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/vxvrf/cni/pkg/naming"
)

// CheckAttachment refuses, before anything changes, names that no derived
// name could hold: an invalid network name (7), an invalid or too long
// CNI_CONTAINERID or CNI_IFNAME (4). ADD and CHECK call it; DEL and GC do
// not, since nothing can have been made under such names.
func CheckAttachment(args *skel.CmdArgs, network string) error {
	if err := utils.ValidateNetworkName(network); err != nil {
		return Errorf(types.ErrInvalidNetworkConfig, "network name %q: %s", network, err.Msg)
	}
	if err := utils.ValidateContainerID(args.ContainerID); err != nil {
		return Errorf(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID %q: %s", args.ContainerID, err.Msg)
	}
	if err := utils.ValidateInterfaceName(args.IfName); err != nil {
		return Errorf(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME %q: %s", args.IfName, err.Msg)
	}
	if len(network) > naming.MaxNetworkNameLen {
		return Errorf(types.ErrInvalidNetworkConfig, "network name: %v", naming.CheckAttachment(network, "", ""))
	}
	if err := naming.CheckAttachment(network, args.ContainerID, args.IfName); err != nil {
		return Errorf(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID: %v", err)
	}
	return nil
}
