package chain

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/pkg/naming"
)

func defaultConflist(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "conflist", "vxvrf.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSetVersion(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		b, err := SetVersion(defaultConflist(t), v)
		if err != nil {
			t.Fatal(err)
		}
		list, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if list.CNIVersion != v {
			t.Errorf("SetVersion(%s): libcni picks %s", v, list.CNIVersion)
		}
		if strings.Contains(string(b), "cniVersions") {
			t.Errorf("SetVersion(%s) kept cniVersions", v)
		}
	}
}

func TestSetStateDirs(t *testing.T) {
	b, err := SetStateDirs(defaultConflist(t), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "/run/vxvrf") {
		t.Errorf("a state path still points at /run/vxvrf: %s", b)
	}
	for _, want := range []string{`"/tmp/x/state"`, `"/tmp/x/ipam"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %s in %s", want, b)
		}
	}
}

func TestEditWithout(t *testing.T) {
	b, err := Edit(defaultConflist(t), func(conf map[string]any, plugins []map[string]any) error {
		if Plugin(plugins, "lockfile-ipam") == nil {
			t.Fatal("no lockfile-ipam")
		}
		Without(conf, plugins, "lockfile-ipam")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Plugins) != 4 {
		t.Fatalf("%d plugins left, want 4", len(list.Plugins))
	}
	for _, p := range list.Plugins {
		if p.Network.Type == "lockfile-ipam" {
			t.Error("lockfile-ipam still there")
		}
	}
}

func TestNewRefusesDefaultCache(t *testing.T) {
	list, err := Parse(defaultConflist(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(list, nil, "", nil); err == nil {
		t.Error("New accepted an empty cache dir (libcni would use /var/lib/cni)")
	}
}

func TestNetworkRules(t *testing.T) {
	tag := naming.AttachmentTag("n", "c", "eth0")
	ch := naming.AttachmentChain("n", "c", "eth0")
	save := strings.Join([]string{
		"*filter",
		":FORWARD ACCEPT [0:0]",
		":VXVRF-FORWARD - [0:0]",
		"-A FORWARD -j VXVRF-FORWARD",
		"COMMIT",
	}, "\n")
	if got := NetworkRules(save, "n"); len(got) != 0 {
		t.Errorf("empty hooks reported as the network's: %v", got)
	}
	save += "\n:" + ch + " - [0:0]\n-A VXVRF-FORWARD -m comment --comment \"" + tag + "\" -j " + ch
	if got := NetworkRules(save, "n"); len(got) != 2 {
		t.Errorf("want the chain and the tagged jump, got %v", got)
	}
}

func TestPodIPs(t *testing.T) {
	zero, one := 0, 1
	bad := 5
	res := &current.Result{
		Interfaces: []*current.Interface{{Name: "eth0"}, {Name: "eth0", Sandbox: "/run/netns/p"}},
		IPs: []*current.IPConfig{
			{Address: net.IPNet{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)}, Interface: &one},
			{Address: net.IPNet{IP: net.ParseIP("10.0.0.3"), Mask: net.CIDRMask(24, 32)}, Interface: &zero},
			{Address: net.IPNet{IP: net.ParseIP("10.0.0.4"), Mask: net.CIDRMask(24, 32)}, Interface: &bad},
			{Address: net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)}},
		},
	}
	got := PodIPs(res, "/run/netns/p", "eth0")
	if len(got) != 1 || !got[0].Address.IP.Equal(net.ParseIP("10.0.0.2")) {
		t.Errorf("PodIPs = %v, want only 10.0.0.2", got)
	}
}

func TestNftLeftovers(t *testing.T) {
	objs := []NftObject{
		{Family: "inet", Set: "fwd4", Comment: naming.NftTag("n", "c1", "eth0")},
		{Family: "inet", Set: "fwd4", Comment: naming.NftTag("other", "c1", "eth0")},
		{Family: "inet", Chain: naming.NftMasqChain("n", "x")},
		{Family: "inet", Chain: naming.NftMasqChain("other", "x")},
		{Family: "inet", Chain: "forward"},
	}
	if got := nftLeftovers(objs, "n", "c1", "eth0"); len(got) != 1 {
		t.Fatalf("attachment: %v", got)
	}
	if got := nftLeftovers(objs, "n", "c2", "eth0"); len(got) != 0 {
		t.Fatalf("other attachment: %v", got)
	}
	if got := nftLeftovers(objs, "n", "", ""); len(got) != 2 {
		t.Fatalf("network: %v", got)
	}
}
