package inspect

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
)

func ifname(s string) []byte { b := make([]byte, 16); copy(b, s); return b }

// TestNftOwner: each kind of object of sysctl-firewall's tables is
// attributed to its network (and attachment), base chains to nobody.
func TestNftOwner(t *testing.T) {
	h := nftNetHash("net1")
	if "vxvrf:"+h+":" != naming.NftNetworkTag("net1") {
		t.Fatalf("nftNetHash %q does not match %q", h, naming.NftNetworkTag("net1"))
	}
	tag := naming.NftTag("net1", "c1", "eth0")
	for _, c := range []struct {
		o         NftObject
		hash, att string
	}{
		{NftObject{Family: "inet", Chain: naming.NftMasqChain("net1", "r")}, h, ""},
		{NftObject{Family: "inet", Chain: naming.NftZoneMarkChain("net1")}, h, ""},
		{NftObject{Family: "inet", Chain: naming.NftZoneChain("net1", 7)}, h, ""},
		{NftObject{Family: "inet", Chain: "forward"}, "", ""},
		{NftObject{Family: "inet", Chain: "zonemark"}, "", ""},
		{NftObject{Family: "inet", Set: "zonejump", Comment: naming.NftZoneTag("net1")}, h, ""},
		{NftObject{Family: "inet", Set: "fwd4", Comment: tag}, h, tag},
		{NftObject{Family: "inet", Set: "fwd4", Comment: "someone else"}, "", ""},
	} {
		if gh, ga := nftOwner(c.o); gh != c.hash || ga != c.att {
			t.Errorf("%v: owner (%q, %q), want (%q, %q)", c.o, gh, ga, c.hash, c.att)
		}
	}
}

// TestNftKey: keys are shown as nft shows them.
func TestNftKey(t *testing.T) {
	for _, c := range []struct {
		set  string
		key  []byte
		want string
	}{
		{"fwd4", append([]byte{10, 0, 0, 2}, ifname("br-x")...), `10.0.0.2 . "br-x"`},
		{"masq6", append([]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, ifname("br-x")...), `fd00::2 . "br-x"`},
		{"allow4", append(ifname("vx1"), 10, 0, 0, 2), `"vx1" . 10.0.0.2`},
		{"guard6", ifname("vx1"), `"vx1"`},
		{"zonejump", ifname("br-x"), `"br-x"`},
		{"restorejump", []byte{0, 0x4d, 0, 0}, "0x004d0000"},
	} {
		if got := nftKey(c.set, c.key); got != c.want {
			t.Errorf("%s %x: %s, want %s", c.set, c.key, got, c.want)
		}
	}
}

// TestStrayNft: objects of a network no conflist configures are orphans,
// those of a configured one and the base chains are not.
func TestStrayNft(t *testing.T) {
	objs := []NftObject{
		{Family: "inet", Chain: "forward"},
		{Family: "inet", Chain: naming.NftMasqChain("known", "r")},
		{Family: "inet", Set: "fwd4", Key: append([]byte{10, 0, 0, 2}, ifname("br")...), Comment: naming.NftTag("known", "c", "eth0")},
		{Family: "inet", Chain: naming.NftMasqChain("gone", "r")},
		{Family: "inet", Set: "fwd4", Key: append([]byte{10, 0, 0, 3}, ifname("br")...), Comment: naming.NftTag("gone", "c", "eth0")},
		{Family: "inet", Set: "zonejump", Key: ifname("br"), Comment: naming.NftZoneTag("gone")},
	}
	got := strayNft(objs, []*netConfig{{name: "known"}})
	if len(got) != 2 || got[0].Kind != "rules-without-attachment" || got[1].Kind != "chain-without-network" {
		t.Fatalf("orphans %+v", got)
	}
	if !strings.Contains(got[0].What, "2 nftables elements") || !strings.Contains(got[0].What, "10.0.0.3") || strings.Contains(got[0].What, "10.0.0.2") {
		t.Errorf("elements: %s", got[0].What)
	}
	if !strings.Contains(got[1].What, naming.NftMasqChain("gone", "r")) {
		t.Errorf("chain: %s", got[1].What)
	}
}
