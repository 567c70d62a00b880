package main

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/internal/testutil"
)

// FuzzParseConfig: see testutil.FuzzParse.
func FuzzParseConfig(f *testing.F) { testutil.FuzzParse(f, "veth-attach", parseConfig) }

// FuzzCommands: fuzzed configs and prevResults through every verb, in a
// throwaway network namespace; see testutil.FuzzCommands.
func FuzzCommands(f *testing.F) {
	testutil.FuzzCommands(f, "veth-attach", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
