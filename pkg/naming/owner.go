package naming

// Ownership marks. Every object the chain shares between the attachments
// of a network carries a mark naming the project and the network, so that
// DEL and GC remove only what this project made for that network, and ADD
// refuses to adopt a device someone else made under the configured name.
//
//   - links (VRF, bridge, VXLAN): the interface alias NetworkMark(network);
//     per-attachment host veths carry AttachmentTag instead, which starts
//     with NetworkTag(network) (NetworkMark plus ":").
//   - routes (the VRF table's egress defaults, veth-attach's main-table
//     route into the VRF) and ip rules (the VRF egress reply rule): the
//     route protocol RouteProtocol; the network is the VRF table (or, for
//     veth-attach's route, the VRF device) they belong to.

// MarkPrefix starts every link alias this project sets.
const MarkPrefix = "vxvrf:"

// RouteProtocol is the route and rule protocol (rtm_protocol, FRA_PROTOCOL)
// of every route and ip rule this project installs; `ip route` shows it as
// "proto 118". It is unassigned in the kernel's rtnetlink.h and in
// iproute2's rt_protos (0-18, 42, 99, 186-192 are taken); add
// "118 vxvrf" to /etc/iproute2/rt_protos.d/vxvrf.conf to see the name.
const RouteProtocol = 118

// NetworkMark is the alias of a network's shared links: "vxvrf:<network>".
func NetworkMark(network string) string { return MarkPrefix + network }
