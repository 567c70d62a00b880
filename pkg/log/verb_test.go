package log

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

func TestWrap(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cni.log")
	funcs := Wrap("p", skel.CNIFuncs{
		Add: func(*skel.CmdArgs) error {
			Did("created", "vrf-x")
			Did("reused", "vxlan-7")
			Did("created", "br-x")
			Did("removed")
			Set("backend", "iptables")
			Set("backend", "nftables")
			L().Debug("detail")
			return nil
		},
		Del:    func(*skel.CmdArgs) error { return types.NewError(7, "bad", "") },
		Status: func(*skel.CmdArgs) error { return nil },
		Check:  func(*skel.CmdArgs) error { panic("boom") },
	})
	if funcs.GC != nil {
		t.Error("a nil verb must stay nil")
	}
	conf := func(level string) []byte {
		return []byte(`{"name":"net","log":{"file":"` + file + `","level":"` + level + `"}}`)
	}
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: conf("info")}
	if err := funcs.Add(args); err != nil {
		t.Fatal(err)
	}
	if err := funcs.Status(args); err != nil {
		t.Fatal(err)
	}
	var e *types.Error
	if err := funcs.Del(args); !errors.As(err, &e) || e.Code != 7 {
		t.Fatalf("DEL: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic must go on to the caller's recover")
			}
		}()
		_ = funcs.Check(args)
	}()
	args.StdinData = conf("debug")
	if err := funcs.Status(args); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{
		`level=INFO msg="ADD ok" plugin=p verb=ADD network=net container=c1 ifname=eth0 duration=`,
		`level=ERROR msg="DEL failed" plugin=p verb=DEL network=net container=c1 ifname=eth0 duration=`,
		`level=ERROR msg="CHECK panicked" plugin=p verb=CHECK network=net container=c1 ifname=eth0 duration=`,
		`level=DEBUG msg="STATUS ok" plugin=p verb=STATUS network=net duration=`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d (no info STATUS line, no debug detail at info):\n%s", len(lines), len(want), b)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s\nwant %s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[0], `duration=`) || !strings.HasSuffix(lines[0], ` created=[vrf-x,br-x] reused=[vxlan-7] removed=[] backend=nftables`) || !strings.Contains(lines[1], `error=bad code=7`) || !strings.Contains(lines[2], "panic=boom") {
		t.Errorf("fields:\n%s", b)
	}
}
