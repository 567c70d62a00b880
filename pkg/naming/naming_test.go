package naming

import (
	"strings"
	"testing"
)

func TestLinkNamesFitIFNAMSIZ(t *testing.T) {
	long := strings.Repeat("tenant-network-", 5)
	names := []string{
		BridgeName("blue"), BridgeName(long), BridgeName("has/slash"),
		VRFName("blue"), VRFName(long),
		VXLANName(16777215),
		HostVethName(long, strings.Repeat("c", 64), "eth0"),
	}
	for _, n := range names {
		if len(n) == 0 || len(n) > MaxIfNameLen {
			t.Errorf("%q: length %d, want 1..%d", n, len(n), MaxIfNameLen)
		}
		if !ifNameSafe.MatchString(n) {
			t.Errorf("%q has characters unsafe in an interface name", n)
		}
	}
	if got := BridgeName("blue"); got != "br-blue" {
		t.Errorf("BridgeName(blue) = %q", got)
	}
	if got := VXLANName(42); got != "vxlan-42" {
		t.Errorf("VXLANName(42) = %q", got)
	}
}

func TestDerivedNamesAreDeterministicAndDistinct(t *testing.T) {
	a := HostVethName("net", "ctr1", "eth0")
	if a != HostVethName("net", "ctr1", "eth0") {
		t.Fatal("HostVethName is not deterministic")
	}
	seen := map[string]bool{}
	for _, in := range [][3]string{{"net", "ctr1", "eth0"}, {"net", "ctr1", "eth1"}, {"net", "ctr2", "eth0"}, {"net2", "ctr1", "eth0"}, {"ne", "tctr1", "eth0"}} {
		for _, n := range []string{HostVethName(in[0], in[1], in[2]), AttachmentChain(in[0], in[1], in[2])} {
			if seen[n] {
				t.Errorf("collision: %q", n)
			}
			seen[n] = true
		}
	}
	if c := AttachmentChain("n", "c", "i"); len(c) > 28 {
		t.Errorf("chain %q longer than 28 bytes", c)
	}
	if !strings.HasPrefix(AttachmentTag("n", "c", "i"), NetworkTag("n")) {
		t.Error("AttachmentTag does not start with NetworkTag")
	}
}

func TestCheckAttachmentLimits(t *testing.T) {
	cid64 := strings.Repeat("a", 64)
	if err := CheckAttachment("vxvrf", cid64, "eth0"); err != nil {
		t.Errorf("a 64-byte container ID must fit: %v", err)
	}
	if err := CheckAttachment(strings.Repeat("n", MaxNetworkNameLen), cid64, "eth0"); err != nil {
		t.Errorf("the longest network name with a 64-byte ID must fit: %v", err)
	}
	if err := CheckAttachment(strings.Repeat("n", MaxNetworkNameLen+1), "c", "eth0"); err == nil {
		t.Error("a network name over the limit was accepted")
	}
	long := strings.Repeat("c", MaxTagLen)
	if err := CheckAttachment("vxvrf", long, "eth0"); err == nil {
		t.Error("a container ID overflowing the tag was accepted")
	}
	// Right at the limit the tag fits exactly.
	fit := strings.Repeat("c", MaxTagLen-len(AttachmentTag("vxvrf", "", "eth0")))
	if err := CheckAttachment("vxvrf", fit, "eth0"); err != nil || len(AttachmentTag("vxvrf", fit, "eth0")) != MaxTagLen {
		t.Errorf("tag of exactly %d bytes: %v", MaxTagLen, err)
	}
	if err := CheckAttachment("vxvrf", fit+"c", "eth0"); err == nil {
		t.Error("tag of 256 bytes accepted")
	}
}

func TestNetworkMark(t *testing.T) {
	if got := NetworkMark("red"); got != "vxvrf:red" {
		t.Errorf("NetworkMark(red) = %q", got)
	}
	// A network's mark is not an attachment tag of it, nor of another network.
	if strings.HasPrefix(NetworkMark("red"), NetworkTag("red")) || strings.HasPrefix(NetworkMark("red-1"), NetworkTag("red")) {
		t.Error("a network mark looks like an attachment tag")
	}
	if n := len(NetworkMark(strings.Repeat("n", MaxNetworkNameLen))); n > MaxTagLen {
		t.Errorf("the longest network's mark is %d bytes, more than an alias holds", n)
	}
}

func TestNftNames(t *testing.T) {
	a, b := NftTag("net", "c1", "eth0"), NftTag("net", "c2", "eth0")
	if a == b || !strings.HasPrefix(a, NftNetworkTag("net")) || NftNetworkTag("net") == NftNetworkTag("net2") {
		t.Fatalf("tags %q %q", a, b)
	}
	long := strings.Repeat("n", 128)
	if n := len(NftTag(long, strings.Repeat("c", 200), "eth0")); n > 64 {
		t.Fatalf("tag of a long attachment is %d bytes", n)
	}
	if NftTagOf(a) != a || NftTagOf(a+" veth=v1 10.0.0.2") != a || NftTagOf(a+" x") == b {
		t.Fatalf("NftTagOf does not read the tag of %q or of its index comment", a)
	}
	if k := NftAttachmentKey("net", "c1", "eth0"); len(k) != 15 || !strings.Contains(a, k) {
		t.Fatalf("attachment key %q is not 15 digits of the tag %q", k, a)
	}
	m := NftMasqChain("net", "ipv4 10.0.0.0/24 !br0")
	if !strings.HasPrefix(m, NftMasqPrefix("net")) || m == NftMasqChain("net", "ipv4 10.0.1.0/24 !br0") {
		t.Fatalf("masq chain %q", m)
	}
}
