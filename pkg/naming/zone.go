package naming

// Names of sysctl-firewall's per-network conntrack zone rules (its
// conntrackZone key). They live apart from the per-attachment chains: one
// project chain per table (raw and mangle), jumped to from PREROUTING, whose
// rules are tagged per network (ZoneTag) plus one node-wide rule
// (ZoneRestoreTag). The tags do not start with NetworkTag's "vxvrf:", so a
// listing of attachment tags never mistakes them for an attachment.

// ZoneChain is the project chain holding the zone rules, in the raw table
// (CT --zone-orig) and in the mangle table (CONNMARK).
const ZoneChain = Prefix + "-ZONES"

// ZoneRestoreTag is the comment of the node-wide rule that restores the
// connection mark on reply packets.
const ZoneRestoreTag = "vxvrf-zone-restore"

// ZoneTag is the comment of a network's zone rules.
func ZoneTag(network string) string { return "vxvrf-zone:" + network }
