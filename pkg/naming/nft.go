package naming

import (
	"strconv"
	"strings"
)

// NftTable is the name of sysctl-firewall's nftables tables (one in the
// inet family, one in the bridge family).
const NftTable = "vxvrf"

// NftNetworkTag prefixes the comment of every nftables element of a
// network: "vxvrf:" and 8 hex digits of a hash of the network name (the
// comment must fit 128 bytes whatever the name's length).
func NftNetworkTag(network string) string { return "vxvrf:" + hash(network)[:8] + ":" }

// NftTag is the comment of one attachment's nftables elements: the
// network tag and the 16 hex digits of AttachmentChain's hash, so DEL and
// GC find the elements from (network, containerID, ifname) alone.
func NftTag(network, containerID, ifName string) string {
	return NftNetworkTag(network) + hash(network, containerID, ifName)[:16]
}

// NftTagOf is the attachment tag an element's comment starts with: the
// whole comment, or, for an attachment's index element (sysctl-firewall's
// set "attachments"), what comes before the first space.
func NftTagOf(comment string) string {
	tag, _, _ := strings.Cut(comment, " ")
	return tag
}

// NftMasqChain is a network's masquerade chain for one (family, subnet,
// outgoing-interface rule): "masq-", 8 hex digits of the network's hash,
// "-" and 8 of the rule's, so GC finds a network's chains by prefix.
func NftMasqChain(network, rule string) string {
	return NftMasqPrefix(network) + hash(network, rule)[:8]
}

// NftMasqPrefix starts every NftMasqChain of network.
func NftMasqPrefix(network string) string { return "masq-" + hash(network)[:8] + "-" }

// NftZonePrefix starts every per-network conntrack-zone chain of network
// ("zone-", "zmark-", "zrest-" and 8 hex digits of the network's hash).
func NftZonePrefix(network string) string { return "z-" + hash(network)[:8] + "-" }

// NftZoneChain is the chain that sets the network's conntrack zone; its
// name changes with the zone, so a changed zone is a new chain.
func NftZoneChain(network string, zone int) string {
	return NftZonePrefix(network) + "zone-" + hash(network, strconv.Itoa(zone))[:6]
}

// NftZoneMarkChain sets the network's connection mark (original direction).
func NftZoneMarkChain(network string) string { return NftZonePrefix(network) + "mark" }

// NftZoneRestoreChain restores the packet mark of the network's replies.
func NftZoneRestoreChain(network string) string { return NftZonePrefix(network) + "restore" }

// NftZoneTag is the comment of a network's zone map elements.
func NftZoneTag(network string) string { return "vxvrf-zone:" + hash(network)[:8] }

// NftAttachmentKey is the key of an attachment's element in the nftables
// set "attachments": 15 hex digits of the hash NftTag ends with (an
// ifname-typed key, shown as a string by nft).
func NftAttachmentKey(network, containerID, ifName string) string {
	return hash(network, containerID, ifName)[:15]
}
