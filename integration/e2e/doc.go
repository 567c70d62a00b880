// Package e2e drives the project's chain with real runtimes: containerd 1.6
// (CRI) through crictl, podman 4.3 with its CNI backend, and a standalone
// kubelet v1.35 with static pods. Every runtime runs inside a node network
// namespace of a netsim lab (through netns-exec, see scripts/e2e-setup.sh),
// so the machine's own network is never touched; every daemon is a private
// instance with its own config, root, state and socket in a temp directory.
//
// scripts/e2e-setup.sh installs the runtimes, scripts/k8s-setup.sh the
// kubelet (the same build integration/k8s uses). A test whose runtime is
// missing skips, unless VXVRF_E2E_REQUIRE=1 (make e2e), where it fails.
//
// The tests carry the build tag e2e, so `go test ./...` leaves them to
// `make e2e` (go test -tags e2e ./integration/e2e/). See README.md.
package e2e
