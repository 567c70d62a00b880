package naming

import (
	"net"
	"testing"
)

func TestEgressMark(t *testing.T) {
	if EgressMark(100) != 0x640000 || EgressMark(MaxMarkTable)&^EgressMarkMask != 0 || EgressMark(MaxMarkTable+1)&EgressMarkMask != 0 {
		t.Errorf("mark %#x, max %#x, past max %#x", EgressMark(100), EgressMark(MaxMarkTable), EgressMark(MaxMarkTable+1))
	}
}

func TestParseAttachmentTag(t *testing.T) {
	cid, ifn, ok := ParseAttachmentTag("red", AttachmentTag("red", "c1", "eth0"))
	if !ok || cid != "c1" || ifn != "eth0" {
		t.Errorf("round trip: %q %q %v", cid, ifn, ok)
	}
	for _, tag := range []string{
		AttachmentTag("blue", "c1", "eth0"),  // another network
		AttachmentTag("red-x", "c1", "eth0"), // a network whose name starts like red's
		NetworkTag("red") + "c1",             // no ifname
		AttachmentTag("red", "", "eth0"),     // empty container ID
		AttachmentTag("red", "c1", ""),       // empty ifname
		AttachmentTag("red", "c1", "eth0:x"), // ':' in the ifname
		ZoneTag("red"),                       // a zone tag is no attachment
		"",
	} {
		if cid, ifn, ok := ParseAttachmentTag("red", tag); ok {
			t.Errorf("%q parsed as %q %q", tag, cid, ifn)
		}
	}
}

func TestHooks(t *testing.T) {
	seen := map[string]bool{}
	for _, h := range Hooks() {
		if !IsHook(h.Project) || seen[h.Table] || len(h.Project) > 28 {
			t.Errorf("hook %+v: not recognised, table twice or name too long", h)
		}
		seen[h.Table] = true
	}
	if IsHook(ZoneChain) || IsHook(AttachmentChain("n", "c", "eth0")) || IsHook("FORWARD") {
		t.Error("IsHook accepts a chain that is no hook")
	}
}

func TestIsDefaultRoute(t *testing.T) {
	for s, want := range map[string]bool{"0.0.0.0/0": true, "::/0": true, "10.0.0.0/8": false, "::/1": false, "10.1.2.3/32": false} {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		if IsDefaultRoute(n) != want {
			t.Errorf("%s: %v, want %v", s, !want, want)
		}
	}
	if !IsDefaultRoute(nil) {
		t.Error("no destination is the default route")
	}
}
