package naming

import (
	"strings"
	"testing"
)

func TestZoneNames(t *testing.T) {
	if len(ZoneChain) > 28 || !strings.HasPrefix(ZoneChain, Prefix+"-") {
		t.Errorf("ZoneChain %q: want %s- and at most 28 bytes", ZoneChain, Prefix)
	}
	if red, again := ZoneTag("red"), ZoneTag("red"); red != again || red == ZoneTag("blue") {
		t.Errorf("ZoneTag not deterministic or not per network: %q %q", ZoneTag("red"), ZoneTag("blue"))
	}
	for _, tag := range []string{ZoneTag("red"), ZoneTag(""), ZoneRestoreTag} {
		// Attachment listings look for NetworkTag prefixes ("vxvrf:<net>:").
		if strings.HasPrefix(tag, "vxvrf:") {
			t.Errorf("%q could be read as an attachment tag", tag)
		}
		if strings.ContainsAny(tag, " \t\"'\\#") {
			t.Errorf("%q holds a character iptables-restore would split or misread", tag)
		}
	}
	// No network's tag is the node-wide one.
	if strings.HasPrefix(ZoneRestoreTag, ZoneTag("")) {
		t.Errorf("ZoneRestoreTag %q is a ZoneTag", ZoneRestoreTag)
	}
}
