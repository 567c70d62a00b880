package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxvrf/cni/internal/testutil"
)

// FuzzParseConfig: any stdin and CNI_ARGS either parse into a config that
// re-marshals and parses again, or are refused with a CNI configuration
// error (4 for CNI_ARGS). parseBase (what DEL and GC use) must accept
// everything parseConfig accepts.
func FuzzParseConfig(f *testing.F) {
	for _, s := range testutil.StageSeeds(f, "lockfile-ipam", true) {
		f.Add(s, "")
	}
	for _, a := range []string{"IP=10.244.1.9", "IP=10.244.1.9,fd00:10:244:1::9", "IP=", "IP=x", "IP=10.244.1.9/24;K8S_POD_NAME=a", "IP=;;;=", "=", ";IgnoreUnknown=0;X=1"} {
		f.Add(testutil.StageSeeds(f, "lockfile-ipam", false)[0], a)
	}
	resolv := filepath.Join(f.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.96.0.10\nsearch svc.cluster.local\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		stdin = testutil.PinResolvConf(stdin, resolv)
		conf, err := parseConfig(stdin, cniArgs)
		if err != nil {
			testutil.CheckCNIError(t, err, testutil.ConfigCodes...)
			return
		}
		if _, err := parseBase(stdin); err != nil {
			t.Fatalf("parseConfig accepts what parseBase refuses: %v", err)
		}
		testutil.CheckRemarshal(t, conf, func(b []byte) (*NetConf, error) { return parseConfig(b, "") })
	})
}

// FuzzCommands: fuzzed configs and prevResults through every verb, in a
// throwaway network namespace; see testutil.FuzzCommands.
func FuzzCommands(f *testing.F) {
	testutil.FuzzCommands(f, "lockfile-ipam", skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC})
}
