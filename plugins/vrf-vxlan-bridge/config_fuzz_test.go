package main

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/internal/testutil"
)

// FuzzParseConfig: see testutil.FuzzParse.
func FuzzParseConfig(f *testing.F) { testutil.FuzzParse(f, "vrf-vxlan-bridge", parseConfig) }

// FuzzCommands: fuzzed configs and prevResults through every verb, in a
// throwaway network namespace; see testutil.FuzzCommands.
func FuzzCommands(f *testing.F) {
	testutil.FuzzCommands(f, "vrf-vxlan-bridge", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: func(*skel.CmdArgs) error { return nil }, Status: cmdStatus, GC: cmdGC})
}
