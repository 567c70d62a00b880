package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestPictureFirewall: the picture's firewall section shows the pod's
// objects in the backend sysctl-firewall used: its nftables elements
// (with its address and the bridge) or its iptables chain and tagged jump,
// and not those of the other backend.
func TestPictureFirewall(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			lab, node := testutil.NewNode(t, "pic"+backend[:1])
			conf, err := chain.SetStateDirs(testutil.DefaultConflist(t), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			conf, err = chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
				chain.Plugin(plugins, "sysctl-firewall")["backend"] = backend
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			list, err := chain.Parse(conf)
			if err != nil {
				t.Fatal(err)
			}
			c, err := chain.New(list, []string{testutil.PluginDir(t, testutil.Plugins...)}, filepath.Join(t.TempDir(), "cache"), node.NetNS)
			if err != nil {
				t.Fatal(err)
			}
			pod := testutil.AddNS(t, lab, "pod")
			rt := chain.RuntimeConf{ContainerID: lab.Name + "-pod", NetNS: pod.Path, IfName: "eth0"}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := c.AddCurrent(ctx, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			ips := chain.PodIPs(res, rt.NetNS, rt.IfName)
			if len(ips) == 0 {
				t.Fatalf("no pod address in %v", res)
			}

			var b bytes.Buffer
			if err := firewall(&b, node, list.Name); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			t.Logf("the picture's firewall section:\n%s", out)
			want := []string{"firewall: nftables", "@fwd4 { " + ips[0].Address.IP.String() + ` . "` + naming.BridgeName(list.Name) + `" }`,
				naming.NftTag(list.Name, rt.ContainerID, rt.IfName)}
			notWant := "firewall: iptables"
			if backend == "iptables" {
				want = []string{"firewall: iptables", "-j " + naming.AttachmentChain(list.Name, rt.ContainerID, rt.IfName),
					"-A " + naming.AttachmentChain(list.Name, rt.ContainerID, rt.IfName) + " -s " + ips[0].Address.IP.String()}
				notWant = "firewall: nftables"
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("the picture lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, notWant) {
				t.Errorf("the picture shows the other backend (%q):\n%s", notWant, out)
			}
			if err := c.Del(ctx, rt); err != nil {
				t.Errorf("DEL: %v", err)
			}
		})
	}
}
