package main

// Hostile and broken input (issue 7), through the real binary.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

// TestExecTeardownIgnoresConfig: DEL and GC release the lease when the
// rest of the config no longer validates or changed since ADD: a subnet
// that does not parse, ranges of the wrong type, other ranges, bad routes,
// a missing resolvConf, a bad lockTimeout.
func TestExecTeardownIgnoresConfig(t *testing.T) {
	for i, bad := range []string{
		`,"subnet":"not-a-subnet"`,
		`,"ranges":"garbage"`,
		`,"ranges":[[{"subnet":"192.168.9.0/24"}]]`,
		`,"ranges":[[{"subnet":"10.77.0.0/24"}]],"routes":[{"dst":"nope"}]`,
		dualStack + `,"resolvConf":"/nonexistent/resolv.conf"`,
		dualStack + `,"lockTimeout":"forever"`,
		dualStack + `,"rangeStart":5`,
	} {
		for _, verb := range []string{"DEL", "GC"} {
			t.Run(fmt.Sprintf("%d/%s", i, verb), func(t *testing.T) {
				dataDir := t.TempDir()
				li.Add(t, "c1", absent, netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")).OK(t)
				top := ""
				if verb == "GC" {
					top = `,"cni.dev/valid-attachments":[]`
				}
				li.Run(t, verb, "c1", absent, netConf(t, "1.1.0", "delegated", dataDir, bad, top)).OK(t)
				if l := leases(t, dataDir); len(l) != 0 {
					t.Fatalf("%s with ipam %s kept %v", verb, bad, l)
				}
			})
		}
	}
	// An ipam block or dataDir ADD could never have used: nothing to
	// release, success.
	for _, stdin := range []string{
		`{"cniVersion":"1.1.0","name":"li-net","type":"veth-attach"}`,
		`{"cniVersion":"1.1.0","name":"li-net","type":"veth-attach","ipam":"x"}`,
		`{"cniVersion":"1.1.0","name":"li-net","type":"veth-attach","ipam":{"type":"lockfile-ipam","dataDir":"relative"}}`,
	} {
		li.Del(t, "c1", absent, []byte(stdin)).OK(t)
	}
}

// TestExecFailedAddLeavesNothing: an ADD that fails after taking the lock
// (a requested address outside every range, an exhausted range) on a
// network without state leaves no lock file and no directory behind.
func TestExecFailedAddLeavesNothing(t *testing.T) {
	base := t.TempDir()
	dataDir := filepath.Join(base, "x", "data")
	for _, c := range []struct {
		ipam, top string
		code      uint
	}{
		{`,"ranges":[[{"subnet":"10.77.0.0/24"}]]`, `,"runtimeConfig":{"ips":["192.168.1.1"]}`, ErrRequestedIP},
		{`,"ranges":[[{"subnet":"10.77.0.0/30","gateway":"10.77.0.1"}]]`, `,"runtimeConfig":{"ips":["10.77.0.1"]}`, ErrRequestedIP},
		{`,"ranges":[[{"subnet":"10.77.0.0/24","rangeStart":"10.77.0.1","rangeEnd":"10.77.0.1"}]]`, ``, ErrNoAddress},
	} {
		e := li.Add(t, "c1", absent, netConf(t, "1.1.0", "delegated", dataDir, c.ipam, c.top)).CNIError(t)
		if e.Code != c.code {
			t.Errorf("ADD %s %s: code %d %s, want %d", c.ipam, c.top, e.Code, e.Msg, c.code)
		}
		if entries, _ := os.ReadDir(base); len(entries) != 0 {
			t.Fatalf("failed ADD %s %s left %v in %s", c.ipam, c.top, entries, base)
		}
	}
}

// TestExecFilesSafe: a dangling symlink planted as the lock file does not
// create its target (ADD fails with 5); a symlinked state file is not
// read; the state file is 0600.
func TestExecFilesSafe(t *testing.T) {
	dataDir := t.TempDir()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	statePath, lockPath := store.Paths(dataDir, "li-net")
	target := filepath.Join(t.TempDir(), "planted")
	if err := os.Symlink(target, lockPath); err != nil {
		t.Fatal(err)
	}
	if e := li.Add(t, "c1", absent, stdin).CNIError(t); e.Code != types.ErrIOFailure {
		t.Errorf("ADD through a lock symlink: code %d %s, want 5", e.Code, e.Msg)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the lock symlink's target was created: %v", err)
	}
	os.Remove(lockPath)

	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(`{"version":1,"network":"li-net","leases":[{"containerID":"x","ifname":"eth0","ips":["10.77.0.2"]}],"lastReserved":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, statePath); err != nil {
		t.Fatal(err)
	}
	if e := li.Add(t, "c1", absent, stdin).CNIError(t); e.Code != types.ErrIOFailure || !strings.Contains(e.Msg, "symlink") {
		t.Errorf("ADD with a symlinked state file: code %d %s, want 5 naming the symlink", e.Code, e.Msg)
	}
	os.Remove(statePath)

	li.Add(t, "c1", absent, stdin).OK(t)
	if fi, err := os.Stat(statePath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v (%v), want 0600", fi.Mode(), err)
	}
}

// TestExecResolvConfLimits: resolvConf takes only resolv.conf syntax into
// the result, and refuses (7) what is not a regular resolv.conf file.
func TestExecResolvConfLimits(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(good, []byte("nameserver 10.0.0.53\nnameserver root:$6$secret:19000\nsearch ok.example bad/../x\noptions ndots:2 $(rm)\nsecret-token abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte("nameserver 10.0.0.53\n"+strings.Repeat("#", 70<<10)), 0o644); err != nil {
		t.Fatal(err)
	}
	shadowLike := filepath.Join(dir, "shadow")
	if err := os.WriteFile(shadowLike, []byte("root:$6$abc:19000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}

	out := li.Add(t, "c1", absent, netConf(t, "1.1.0", "delegated", t.TempDir(), dualStack+fmt.Sprintf(`,"resolvConf":%q`, link), "")).OK(t)
	s := string(out)
	if !strings.Contains(s, "10.0.0.53") || !strings.Contains(s, "ok.example") || !strings.Contains(s, "ndots:2") {
		t.Errorf("resolv.conf values missing: %s", out)
	}
	for _, leak := range []string{"secret", "rm)", "bad/"} {
		if strings.Contains(s, leak) {
			t.Errorf("result carries %q: %s", leak, out)
		}
	}
	for name, path := range map[string]string{"directory": dir, "device": "/dev/zero", "too big": big, "not resolv.conf": shadowLike, "relative": "resolv.conf"} {
		e := li.Add(t, "c1", absent, netConf(t, "1.1.0", "delegated", t.TempDir(), dualStack+fmt.Sprintf(`,"resolvConf":%q`, path), "")).CNIError(t)
		if e.Code != types.ErrInvalidNetworkConfig || strings.Contains(e.Msg, "$6$") {
			t.Errorf("resolvConf %s: code %d %s, want 7 without the content", name, e.Code, e.Msg)
		}
	}
}

// TestExecLimits: a network name that overflows the state file names (7)
// and a container ID that overflows the attachment tag (4) are refused
// before anything is created.
func TestExecLimits(t *testing.T) {
	base := t.TempDir()
	dataDir := filepath.Join(base, "data")
	longNet := strings.Repeat("n", 252) // "<net>.lock" overflows a file name
	for _, c := range []struct {
		name, cid, netName string
		code               uint
	}{
		{"network name", "c1", longNet, types.ErrInvalidNetworkConfig},
		{"container id", strings.Repeat("c", 300), "li-net", types.ErrInvalidEnvironmentVariables},
	} {
		stdin := []byte(strings.Replace(string(netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")), `"li-net"`, fmt.Sprintf("%q", c.netName), 1))
		for _, verb := range []string{"ADD", "CHECK"} {
			if e := li.Run(t, verb, c.cid, absent, stdin).CNIError(t); e.Code != c.code {
				t.Errorf("%s %s: code %d %s, want %d", c.name, verb, e.Code, e.Msg, c.code)
			}
		}
		if entries, _ := os.ReadDir(base); len(entries) != 0 {
			t.Errorf("refused %s left %v", c.name, entries)
		}
		// DEL and GC of such names succeed, also where the dataDir exists:
		// nothing can have been leased.
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		li.Del(t, c.cid, absent, stdin).OK(t)
		li.GC(t, []byte(strings.Replace(string(stdin), `"type":"veth-attach"`, `"cni.dev/valid-attachments":[],"type":"veth-attach"`, 1))).OK(t)
		os.Remove(dataDir)
	}
}

// TestExecDelOldVersion: DEL with a cniVersion ADD does not accept (or
// none) still releases the lease.
func TestExecDelOldVersion(t *testing.T) {
	for _, ver := range []string{"0.1.0", "0.2.0", ""} {
		dataDir := t.TempDir()
		li.Add(t, "c1", absent, netConf(t, "1.0.0", "delegated", dataDir, dualStack, "")).OK(t)
		stdin := netConf(t, ver, "delegated", dataDir, dualStack, "")
		if ver == "" {
			stdin = []byte(strings.Replace(string(stdin), `"cniVersion":"",`, "", 1))
		}
		li.Del(t, "c1", absent, stdin).OK(t)
		if l := leases(t, dataDir); len(l) != 0 {
			t.Errorf("DEL at cniVersion %q kept %v", ver, l)
		}
	}
}
