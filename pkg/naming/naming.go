// Package naming computes every name the plugins derive: link names, iptables
// chains and comment tags, state files. Nothing else in the project builds
// such a name, so a change here is a change everywhere.
//
// Link names must fit the kernel's IFNAMSIZ (15 bytes plus NUL); iptables
// chain names must fit 28 bytes. Every function here respects those limits
// and is deterministic in its inputs, so DEL can find what ADD made without
// prevResult or netns.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
)

// MaxIfNameLen is the longest interface name the kernel accepts.
const MaxIfNameLen = 15

// Prefix starts every iptables chain and comment tag this project creates.
const Prefix = "VXVRF"

var ifNameSafe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// short returns prefix+s when that is a valid interface name, else
// prefix+hash(s) cut to fit.
func short(prefix, s string) string {
	if len(prefix)+len(s) <= MaxIfNameLen && ifNameSafe.MatchString(s) {
		return prefix + s
	}
	return prefix + hash(s)[:MaxIfNameLen-len(prefix)]
}

// BridgeName is the default bridge for a network ("br-<network>", hashed when long).
func BridgeName(network string) string { return short("br-", network) }

// VRFName is the default VRF device for a network.
func VRFName(network string) string { return short("vrf-", network) }

// VXLANName is the VXLAN device of a VNI: "vxlan-<vni>" (at most 14 bytes).
func VXLANName(vni uint32) string { return "vxlan-" + strconv.FormatUint(uint64(vni), 10) }

// HostVethName is the host end of an attachment's veth: "vx" and 13 hex
// digits of a hash of (network, containerID, ifname).
func HostVethName(network, containerID, ifName string) string {
	return "vx" + hash(network, containerID, ifName)[:13]
}

// AttachmentTag identifies one attachment in iptables comments and link
// aliases. It is readable so an operator can tell whose rule it is.
func AttachmentTag(network, containerID, ifName string) string {
	return fmt.Sprintf("vxvrf:%s:%s:%s", network, containerID, ifName)
}

// NetworkTag prefixes every AttachmentTag of a network.
func NetworkTag(network string) string { return fmt.Sprintf("vxvrf:%s:", network) }

// AttachmentChain is the per-attachment iptables chain ("VXVRF-" and 16 hex digits).
func AttachmentChain(network, containerID, ifName string) string {
	return Prefix + "-" + hash(network, containerID, ifName)[:16]
}

// LeaseFile is the lockfile-ipam state file of a network, relative to its dataDir.
func LeaseFile(network string) string { return network + ".json" }

// LockFile is the lock guarding LeaseFile.
func LockFile(network string) string { return network + ".lock" }

// Limits of the names a network and an attachment may have, so that every
// name derived from them fits where the kernel or a file system puts it:
// AttachmentTag in a link alias (IFALIASZ) and an iptables comment (256
// bytes with NUL), LeaseFile and LockFile in a directory entry (255 bytes).
const (
	MaxTagLen         = 255
	MaxNetworkNameLen = 128
)

// CheckAttachment reports whether names derived from (network,
// containerID, ifName) all fit. Callers check this before they change
// anything, so a name that does not fit is refused, never truncated.
func CheckAttachment(network, containerID, ifName string) error {
	if len(network) > MaxNetworkNameLen {
		return fmt.Errorf("network name is %d bytes; at most %d are supported", len(network), MaxNetworkNameLen)
	}
	if n := len(AttachmentTag(network, containerID, ifName)); n > MaxTagLen {
		return fmt.Errorf("container ID is %d bytes; with network %q and ifname %q it must be at most %d",
			len(containerID), network, ifName, len(containerID)-(n-MaxTagLen))
	}
	return nil
}
