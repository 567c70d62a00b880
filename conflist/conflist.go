// Package conflist holds the shipped conflists, so that code and tests
// start from the files users install rather than from copies: the default
// chain (vxvrf.conflist) and the VRF + VXLAN example (vrf-vxlan.conflist).
// The DaemonSet's ConfigMap and the test lab's cluster fixture are checked
// against, or built from, Default.
package conflist

import _ "embed"

// Default is conflist/vxvrf.conflist, the default five-stage chain.
//
//go:embed vxvrf.conflist
var Default []byte

// VRFVXLAN is conflist/vrf-vxlan.conflist: two tenants' worth of chain
// with a VRF and VXLAN (make demo runs it).
//
//go:embed vrf-vxlan.conflist
var VRFVXLAN []byte
