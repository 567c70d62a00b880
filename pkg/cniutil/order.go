package cniutil

import (
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// BeforePod refuses a stage that must run before the pod interface exists
// (it prepares what the stage creating the pod interface consumes) but
// finds one in prevResult: an interface with a sandbox. It names the order
// to use; next is the stage that creates the pod interface in the default
// chain (veth-attach).
func BeforePod(prev *current.Result, plugin, next string) error {
	if prev == nil {
		return nil
	}
	for _, i := range prev.Interfaces {
		if i != nil && i.Sandbox != "" {
			return Errorf(types.ErrInvalidNetworkConfig,
				"%s must come before %s: prevResult already has the pod interface %q (sandbox %s), so the chain runs %s too late; move %s above %s in the conflist's \"plugins\" list",
				plugin, next, i.Name, i.Sandbox, plugin, plugin, next)
		}
	}
	return nil
}
