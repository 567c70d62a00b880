package naming

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

// NftMasqChain is a network's masquerade chain for one (family, subnet,
// outgoing-interface rule): "masq-", 8 hex digits of the network's hash,
// "-" and 8 of the rule's, so GC finds a network's chains by prefix.
func NftMasqChain(network, rule string) string {
	return NftMasqPrefix(network) + hash(network, rule)[:8]
}

// NftMasqPrefix starts every NftMasqChain of network.
func NftMasqPrefix(network string) string { return "masq-" + hash(network)[:8] + "-" }
