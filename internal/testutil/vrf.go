package testutil

import (
	"os"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
)

// RequireVRFEnv, when "1", turns a missing VRF into a test failure instead
// of a skip. The VM harness sets it: there the VRF tests must run.
const RequireVRFEnv = "VXVRF_REQUIRE_VRF"

// RequireVRF skips the test, saying why, when the kernel cannot create a
// VRF device; it probes inside n (a lab namespace), never in the host.
func RequireVRF(t testing.TB, n *netsim.NS) {
	t.Helper()
	if !n.HasVRF() {
		msg := "kernel has no VRF support (CONFIG_NET_VRF); the VRF tests run in the VM (make test-vrf)"
		if os.Getenv(RequireVRFEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}
