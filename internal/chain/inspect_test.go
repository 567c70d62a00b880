package chain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDuplicateLeases: an address in two leases of a state file is
// reported, one in a single lease is not, and files that are not lease
// files are ignored.
func TestDuplicateLeases(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.json", `{"leases":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.2"]},{"containerID":"b","ifname":"eth0","ips":["10.0.0.3"]}]}`)
	write("other.lock", ``)
	if d := DuplicateLeases(dir); len(d) != 0 {
		t.Fatalf("reported %v", d)
	}
	write("dup.json", `{"leases":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.2","fd00::2"]},{"containerID":"b","ifname":"eth0","ips":["10.0.0.2"]}]}`)
	d := DuplicateLeases(dir)
	if len(d) != 1 || !strings.Contains(d[0], "10.0.0.2 leased to a/eth0 and b/eth0") {
		t.Fatalf("reported %v", d)
	}
}
