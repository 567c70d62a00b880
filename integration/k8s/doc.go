// Package k8s runs vxvrf's Kubernetes pieces against real Kubernetes
// components built from source at one pinned version (scripts/k8s-setup.sh,
// cached under /opt/vxvrf-e2e/k8s): vxvrf-agent on netsim lab nodes
// against etcd (Debian's etcd-server) and kube-apiserver running inside the
// lab's router namespace, authenticated as the manifest's service account;
// and real kubelets on containerd 1.6 in the lab nodes, with
// kube-controller-manager allocating pod CIDRs, whose pods use the conflists
// the agents render.
//
// The tests carry the build tag k8s, so `go test ./...` leaves them to
// `make e2e-k8s`. A missing component skips, unless VXVRF_K8S_REQUIRE=1
// (make e2e-k8s), where it fails. See README.md.
package k8s
