// Package k8s runs vxvrf's Kubernetes pieces against real Kubernetes
// components built from source at one pinned version (scripts/k8s-setup.sh,
// cached under /opt/vxvrf-e2e/k8s), with etcd (Debian's etcd-server) and the
// control plane inside the lab's router namespace:
//
//   - TestDaemonSetCluster applies the manifests of deploy/kubernetes with
//     kubectl (only the image overridden) on one shared cluster of kubelet
//     nodes on containerd 1.6, each node a netsim namespace with its own
//     mount namespace, and runs the DaemonSet's pods from the `make image`
//     archive: rollout, pods, Services, a node joining and leaving, agent
//     kills, a rolling upgrade, dual-stack and the uninstall;
//   - TestAgentFollowsNodes runs the agent binary directly on lab nodes,
//     authenticated as the manifest's service account.
//
// The tests carry the build tag k8s, so `go test ./...` leaves them to
// `make e2e-k8s`. A missing component skips, unless VXVRF_K8S_REQUIRE=1
// (make e2e-k8s), where it fails. See README.md.
package k8s
