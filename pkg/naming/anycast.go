package naming

import (
	"crypto/sha256"
	"net"
)

// AnycastGatewayMAC is the gateway MAC every node's bridge of a network
// carries with vrf-vxlan-bridge's anycastGateway (and no bridge.mac): a
// locally administered unicast address derived from the network name, so
// every node computes the same one without coordination.
func AnycastGatewayMAC(network string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("vxvrf-anycast-gateway\x00" + network))
	mac := net.HardwareAddr(append([]byte(nil), sum[:6]...))
	mac[0] = mac[0]&0xfc | 0x02 // unicast, locally administered
	return mac
}
