package main

// Exec tests: the real binary, driven the way a runtime drives it. IPAM
// touches no namespace, so the binary is exec'd directly with a temp
// dataDir (no root needed); CNI_NETNS points at a path that does not exist,
// which is what IPAM sees for a pod whose netns is already gone.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/gofrs/flock"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

const fakeNetNS = "/var/run/netns/li-absent"

// li runs the binary in the test's own namespace; absent is the pod
// whose netns is already gone (CNI_NETNS fakeNetNS).
var (
	li     = testutil.Stage{Plugin: pluginName}
	absent = &netsim.NS{Path: fakeNetNS}
)

// netConf renders a config; form "delegated" uses type veth-attach with
// ipam.type lockfile-ipam, form "stage" uses type lockfile-ipam.
func netConf(t *testing.T, version, form, dataDir, ipamExtra, topExtra string) []byte {
	t.Helper()
	typ, ipamType := "veth-attach", "lockfile-ipam"
	if form == "stage" {
		typ, ipamType = "lockfile-ipam", ""
	}
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"li-net","type":%q,"ipam":{"type":%q,"dataDir":%q%s}%s}`,
		version, typ, ipamType, dataDir, ipamExtra, topExtra)
	return []byte(s)
}

const dualStack = `,"ranges":[[{"subnet":"10.77.0.0/24"}],[{"subnet":"fd77::/64"}]],"routes":[{"dst":"0.0.0.0/0"}]`

func leases(t *testing.T, dataDir string) []allocator.Lease {
	t.Helper()
	p, _ := store.Paths(dataDir, "li-net")
	data, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Decode(data, "li-net")
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	return st.Leases
}

func upstreamResult(t *testing.T) *current.Result {
	t.Helper()
	var r current.Result
	err := json.Unmarshal([]byte(`{"cniVersion":"1.1.0",
		"interfaces":[{"name":"eth0","mac":"00:11:22:33:44:55"},{"name":"br-li"}],
		"ips":[{"address":"192.168.200.5/24","interface":0}],
		"routes":[{"dst":"192.168.0.0/16"}],
		"dns":{"nameservers":["192.168.200.53"]}}`), &r)
	if err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestExecLifecycleAllVersions(t *testing.T) {
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, form := range []string{"delegated", "stage"} {
			t.Run(ver+"/"+form, func(t *testing.T) {
				dataDir := t.TempDir()
				stdin := netConf(t, ver, form, dataDir, dualStack, "")
				if form == "stage" {
					stdin = testutil.WithPrev(t, stdin, upstreamResult(t))
				}
				out := li.Add(t, "c1", absent, stdin).OK(t)

				// Raw shape.
				var raw map[string]any
				if err := json.Unmarshal(out, &raw); err != nil {
					t.Fatal(err)
				}
				if raw["cniVersion"] != ver {
					t.Errorf("cniVersion %v, want %s", raw["cniVersion"], ver)
				}
				ips, _ := raw["ips"].([]any)
				ifaces, hasIfaces := raw["interfaces"]
				var ours []map[string]any
				switch form {
				case "delegated":
					if hasIfaces {
						t.Errorf("delegated result carries interfaces: %v", ifaces)
					}
					if len(ips) != 2 {
						t.Fatalf("ips %v", ips)
					}
					for _, i := range ips {
						ours = append(ours, i.(map[string]any))
					}
				case "stage":
					if l, _ := ifaces.([]any); len(l) != 2 {
						t.Errorf("stage result lost prevResult interfaces: %v", ifaces)
					}
					if len(ips) != 3 {
						t.Fatalf("ips %v", ips)
					}
					first := ips[0].(map[string]any)
					if first["address"] != "192.168.200.5/24" || first["interface"] != float64(0) {
						t.Errorf("prevResult ip changed: %v", first)
					}
					ours = []map[string]any{ips[1].(map[string]any), ips[2].(map[string]any)}
					dns, _ := raw["dns"].(map[string]any)
					if ns, _ := dns["nameservers"].([]any); len(ns) != 1 {
						t.Errorf("prevResult dns lost: %v", raw["dns"])
					}
					if rts, _ := raw["routes"].([]any); len(rts) != 2 {
						t.Errorf("routes %v want prevResult's + ours", rts)
					}
				}
				if ours[0]["address"] != "10.77.0.2/24" || ours[0]["gateway"] != "10.77.0.1" || ours[1]["address"] != "fd77::2/64" {
					t.Errorf("our ips %v", ours)
				}
				for _, i := range ours {
					if _, ok := i["interface"]; ok {
						t.Errorf("our ip carries an interface index: %v", i)
					}
					_, hasVersion := i["version"]
					if wantVersion := ver == "0.3.1" || ver == "0.4.0"; hasVersion != wantVersion {
						t.Errorf("ips[].version present=%v at %s", hasVersion, ver)
					}
				}
				if l := leases(t, dataDir); len(l) != 1 || l[0].ContainerID != "c1" || l[0].IfName != "eth0" || len(l[0].IPs) != 2 {
					t.Fatalf("leases %v", l)
				}

				// CHECK (from 0.4.0): with the ADD output as prevResult.
				checkIn := stdin
				if form == "stage" {
					checkIn = testutil.WithPrev(t, stdin, out)
				}
				if ver == "0.3.1" {
					if e := li.Check(t, "c1", absent, checkIn).CNIError(t); e.Code != types.ErrIncompatibleCNIVersion {
						t.Errorf("CHECK at 0.3.1: code %d", e.Code)
					}
				} else {
					li.Check(t, "c1", absent, checkIn).OK(t)
					if e := li.Check(t, "c2", absent, checkIn).CNIError(t); e.Code != ErrNoLease {
						t.Errorf("CHECK of unknown container: code %d", e.Code)
					}
					if form == "stage" {
						// prevResult lacking our addresses → CHECK fails.
						bad := testutil.WithPrev(t, netConf(t, ver, form, dataDir, dualStack, ""), upstreamResult(t))
						if e := li.Check(t, "c1", absent, bad).CNIError(t); e.Code != ErrNoLease {
							t.Errorf("CHECK with prevResult lacking leased ips: code %d", e.Code)
						}
					}
				}

				// DEL, DEL (second without prevResult, with an empty netns).
				li.Del(t, "c1", absent, stdin).OK(t)
				if l := leases(t, dataDir); len(l) != 0 {
					t.Fatalf("after DEL leases %v", l)
				}
				li.Del(t, "c1", absent, netConf(t, ver, form, dataDir, dualStack, "")).OK(t)
				if ver != "0.3.1" {
					if e := li.Check(t, "c1", absent, checkIn).CNIError(t); e.Code != ErrNoLease {
						t.Errorf("CHECK after DEL: code %d", e.Code)
					}
				}
				// Only the state file and the lock file remain.
				entries, _ := os.ReadDir(dataDir)
				if len(entries) != 2 {
					t.Errorf("data dir holds %d entries, want state + lock", len(entries))
				}
			})
		}
	}
}

func TestExecDelUnknownAndNoDataDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never-created")
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	li.Del(t, "nobody", absent, stdin).OK(t)
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("DEL created the data dir: %v", err)
	}
	// DEL with an invalid range still releases: it needs no range validation.
	dataDir = t.TempDir()
	li.Add(t, "c1", absent, netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")).OK(t)
	li.Del(t, "c1", absent, netConf(t, "1.1.0", "delegated", dataDir, `,"subnet":"10.0.0.1/24"`, "")).OK(t)
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("leases %v", l)
	}
}

func TestExecDuplicateAdd(t *testing.T) {
	dataDir := t.TempDir()
	stdin := netConf(t, "1.0.0", "delegated", dataDir, dualStack, "")
	li.Add(t, "c1", absent, stdin).OK(t)
	p, _ := store.Paths(dataDir, "li-net")
	before, _ := os.ReadFile(p)
	e := li.Add(t, "c1", absent, stdin).CNIError(t)
	if e.Code != ErrDuplicateAllocation || !strings.Contains(e.Msg, "duplicate allocation") {
		t.Fatalf("second ADD: %+v", e)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatalf("state changed by the failed ADD:\n%s\n%s", before, after)
	}
	// Same container, other ifname: a separate attachment.
	li.Exec(t, testutil.Invocation{Command: "ADD", ContainerID: "c1", NetNS: fakeNetNS, IfName: "net1", Config: stdin}).OK(t)
	if l := leases(t, dataDir); len(l) != 2 {
		t.Fatalf("leases %v", l)
	}
}

func TestExecRequestedIP(t *testing.T) {
	dataDir := t.TempDir()
	stdin := netConf(t, "1.0.0", "delegated", dataDir, dualStack, "")
	out := li.Exec(t, testutil.Invocation{Command: "ADD", ContainerID: "c1", NetNS: fakeNetNS, IfName: "eth0", Args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.77.0.50,fd77::50", Config: stdin}).OK(t)
	if !bytes.Contains(out, []byte("10.77.0.50/24")) || !bytes.Contains(out, []byte("fd77::50/64")) {
		t.Fatalf("requested ips not honoured: %s", out)
	}
	// args.cni.ips wins over CNI_ARGS.
	out = li.Exec(t, testutil.Invocation{Command: "ADD", ContainerID: "c2", NetNS: fakeNetNS, IfName: "eth0", Args: "IP=10.77.0.60", Config: netConf(t, "1.0.0", "delegated", dataDir, dualStack, `,"args":{"cni":{"ips":["10.77.0.61"]}}`)}).OK(t)
	if !bytes.Contains(out, []byte("10.77.0.61/24")) {
		t.Fatalf("args.cni.ips not honoured: %s", out)
	}
	// Unsatisfiable: nothing allocated.
	e := li.Exec(t, testutil.Invocation{Command: "ADD", ContainerID: "c3", NetNS: fakeNetNS, IfName: "eth0", Args: "IP=192.0.2.1", Config: stdin}).CNIError(t)
	if e.Code != ErrRequestedIP {
		t.Fatalf("unsatisfiable request: %+v", e)
	}
	e = li.Exec(t, testutil.Invocation{Command: "ADD", ContainerID: "c3", NetNS: fakeNetNS, IfName: "eth0", Args: "IP=10.77.0.50", Config: stdin}).CNIError(t)
	if e.Code != ErrRequestedIP {
		t.Fatalf("taken request: %+v", e)
	}
	if l := leases(t, dataDir); len(l) != 2 {
		t.Fatalf("failed requests left leases: %v", l)
	}
}

func TestExecStatus(t *testing.T) {
	dataDir := t.TempDir()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, `,"ranges":[[{"subnet":"10.78.0.0/30"}]]`, "") // one usable host
	li.Status(t, stdin).OK(t)
	li.Add(t, "c1", absent, stdin).OK(t)
	if e := li.Status(t, stdin).CNIError(t); e.Code != 50 {
		t.Fatalf("STATUS when exhausted: %+v", e)
	}
	if e := li.Add(t, "c2", absent, stdin).CNIError(t); e.Code != ErrNoAddress || !strings.Contains(e.Msg, "no free address") {
		t.Fatalf("ADD when exhausted: %+v", e)
	}
	li.Del(t, "c1", absent, stdin).OK(t)
	li.Status(t, stdin).OK(t)

	// Data dir that cannot be created: 50.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if e := li.Status(t, netConf(t, "1.1.0", "delegated", filepath.Join(blocker, "sub"), dualStack, "")).CNIError(t); e.Code != 50 {
		t.Fatalf("STATUS unwritable: %+v", e)
	}
	// STATUS needs 1.1.0.
	if e := li.Status(t, netConf(t, "1.0.0", "delegated", dataDir, dualStack, "")).CNIError(t); e.Code != types.ErrIncompatibleCNIVersion {
		t.Fatalf("STATUS at 1.0.0: %+v", e)
	}
}

func gcConf(t *testing.T, dataDir, list string) []byte {
	return netConf(t, "1.1.0", "delegated", dataDir, dualStack, list)
}

func TestExecGC(t *testing.T) {
	dataDir := t.TempDir()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	for _, c := range []string{"c1", "c2", "c3"} {
		li.Add(t, c, absent, stdin).OK(t)
	}
	ids := func() string {
		var s []string
		for _, l := range leases(t, dataDir) {
			s = append(s, l.ContainerID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	// Missing key (what cnitool gc sends): release nothing.
	o := li.GC(t, stdin)
	if o.Err != nil || ids() != "c1,c2,c3" || !bytes.Contains(o.Stderr, []byte("releasing nothing")) {
		t.Fatalf("GC without key: err %v stderr %s leases %s", o.Err, o.Stderr, ids())
	}
	// Partial list (c2 valid, and c1 valid only on another ifname).
	li.GC(t, gcConf(t, dataDir, `,"cni.dev/valid-attachments":[{"containerID":"c2","ifname":"eth0"},{"containerID":"c1","ifname":"net9"}]`)).OK(t)
	if ids() != "c2" {
		t.Fatalf("GC partial: leases %s", ids())
	}
	// The older key is accepted.
	li.Add(t, "c4", absent, stdin).OK(t)
	li.GC(t, gcConf(t, dataDir, `,"cni.dev/attachments":[{"containerID":"c4","ifname":"eth0"}]`)).OK(t)
	if ids() != "c4" {
		t.Fatalf("GC old key: leases %s", ids())
	}
	// Empty list: everything goes.
	li.GC(t, gcConf(t, dataDir, `,"cni.dev/valid-attachments":[]`)).OK(t)
	if ids() != "" {
		t.Fatalf("GC empty list: leases %s", ids())
	}
	// GC needs 1.1.0.
	if e := li.GC(t, netConf(t, "1.0.0", "delegated", dataDir, dualStack, "")).CNIError(t); e.Code != types.ErrIncompatibleCNIVersion {
		t.Fatalf("GC at 1.0.0: %+v", e)
	}
}

func TestExecConcurrent(t *testing.T) {
	for _, n := range []int{20, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dataDir := t.TempDir()
			stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
			testutil.PluginDir(t, pluginName) // build before the stampede
			outs := make([]testutil.Outcome, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					outs[i] = li.Add(t, fmt.Sprintf("li-c%03d", i), absent, stdin)
				}(i)
			}
			wg.Wait()
			seen := map[string]bool{}
			for i, o := range outs {
				if o.Err != nil {
					t.Fatalf("ADD %d: %v %s", i, o.Err, o.Stdout)
				}
				var r current.Result
				if err := json.Unmarshal(o.Stdout, &r); err != nil || len(r.IPs) != 2 {
					t.Fatalf("ADD %d result %s", i, o.Stdout)
				}
				for _, ipc := range r.IPs {
					if seen[ipc.Address.IP.String()] {
						t.Fatalf("address %s handed out twice", ipc.Address.IP)
					}
					seen[ipc.Address.IP.String()] = true
				}
			}
			if l := leases(t, dataDir); len(l) != n {
				t.Fatalf("%d leases, want %d", len(l), n)
			}
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					outs[i] = li.Del(t, fmt.Sprintf("li-c%03d", i), absent, stdin)
				}(i)
			}
			wg.Wait()
			for i, o := range outs {
				if o.Err != nil {
					t.Fatalf("DEL %d: %v %s", i, o.Err, o.Stdout)
				}
			}
			if l := leases(t, dataDir); len(l) != 0 {
				t.Fatalf("leases left: %v", l)
			}
			entries, _ := os.ReadDir(dataDir)
			if len(entries) != 2 {
				t.Fatalf("data dir holds %d entries (temp files left?)", len(entries))
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	dataDir := t.TempDir()
	cases := []struct {
		name    string
		command string
		stdin   []byte
		code    uint
	}{
		{"malformed json", "ADD", []byte(`{"cniVersion":"1.0.0","name":"li-net","type":"lockfile-ipam",`), types.ErrDecodingFailure},
		{"bad range", "ADD", netConf(t, "1.0.0", "delegated", dataDir, `,"ranges":[[{"subnet":"10.79.0.0/24","rangeStart":"10.80.0.1"}]]`, ""), types.ErrInvalidNetworkConfig},
		{"bad cidr", "ADD", netConf(t, "1.0.0", "delegated", dataDir, `,"subnet":"10.79.0.0/99"`, ""), types.ErrInvalidNetworkConfig},
		{"version 0.2.0", "ADD", netConf(t, "0.2.0", "delegated", dataDir, dualStack, ""), types.ErrIncompatibleCNIVersion},
		{"version 9.9.9", "ADD", netConf(t, "9.9.9", "delegated", dataDir, dualStack, ""), types.ErrIncompatibleCNIVersion},
		{"malformed prevResult", "ADD", netConf(t, "1.0.0", "stage", dataDir, dualStack, `,"prevResult":{"ips":[{"address":"nope"}]}`), types.ErrInvalidNetworkConfig},
		{"null in prevResult", "ADD", netConf(t, "1.0.0", "stage", dataDir, dualStack, `,"prevResult":{"ips":[null],"routes":[null]}`), types.ErrInvalidNetworkConfig},
		{"undecodable prevResult", "ADD", netConf(t, "1.0.0", "stage", dataDir, dualStack, `,"prevResult":"x"`), types.ErrDecodingFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if e := li.Run(t, c.command, "c1", absent, c.stdin).CNIError(t); e.Code != c.code {
				t.Fatalf("code %d (%s), want %d", e.Code, e.Msg, c.code)
			}
		})
	}
	if l := leases(t, dataDir); len(l) != 0 {
		t.Fatalf("failed ADDs left leases: %v", l)
	}
}

func TestExecCorruptState(t *testing.T) {
	dataDir := t.TempDir()
	p, _ := store.Paths(dataDir, "li-net")
	garbage := []byte("{\"version\":1,\"network\":\"li-net\",\"leases\":[")
	if err := os.WriteFile(p, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	for _, cmd := range []string{"ADD", "DEL", "CHECK"} {
		if e := li.Run(t, cmd, "c1", absent, stdin).CNIError(t); e.Code != types.ErrIOFailure || !strings.Contains(e.Msg, "corrupt state file") {
			t.Errorf("%s: %+v", cmd, e)
		}
	}
	if e := li.Status(t, stdin).CNIError(t); e.Code != 50 {
		t.Errorf("STATUS: %+v", e)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, garbage) {
		t.Fatalf("corrupt state file was overwritten: %s", got)
	}
}

func TestExecLockTimeout(t *testing.T) {
	dataDir := t.TempDir()
	_, lockPath := store.Paths(dataDir, "li-net")
	holder := flock.New(lockPath)
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack+`,"lockTimeout":"100ms"`, "")
	if e := li.Add(t, "c1", absent, stdin).CNIError(t); e.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD under held lock: %+v", e)
	}
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	li.Add(t, "c1", absent, stdin).OK(t)
}

func TestExecStageWithoutPrevResultAndDNS(t *testing.T) {
	dataDir := t.TempDir()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.77.0.53\nnameserver 192.168.200.53\nsearch svc.local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ipam := dualStack + fmt.Sprintf(`,"resolvConf":%q`, resolv)

	// Stage form without prevResult: a result with just our ips, routes, dns.
	out := li.Add(t, "c1", absent, netConf(t, "1.0.0", "stage", dataDir, ipam, "")).OK(t)
	var r current.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Interfaces) != 0 || len(r.IPs) != 2 || r.IPs[0].Interface != nil || len(r.Routes) != 1 ||
		strings.Join(r.DNS.Nameservers, ",") != "10.77.0.53,192.168.200.53" || strings.Join(r.DNS.Search, ",") != "svc.local" {
		t.Fatalf("result %s", out)
	}

	// Stage form with prevResult dns: merged, no duplicates.
	stdin := testutil.WithPrev(t, netConf(t, "1.0.0", "stage", dataDir, ipam, ""), upstreamResult(t))
	out = li.Add(t, "c2", absent, stdin).OK(t)
	r = current.Result{}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.DNS.Nameservers, ",") != "192.168.200.53,10.77.0.53" || len(r.IPs) != 3 {
		t.Fatalf("merged result %s", out)
	}

	// Delegated form ignores a prevResult.
	del := testutil.WithPrev(t, netConf(t, "1.0.0", "delegated", dataDir, ipam, ""), upstreamResult(t))
	out = li.Add(t, "c3", absent, del).OK(t)
	r = current.Result{}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Interfaces) != 0 || len(r.IPs) != 2 {
		t.Fatalf("delegated result with prevResult %s", out)
	}
}

// TestExecUpgradeKeepsLeases: a node upgraded with leases in a state file
// an earlier version wrote (indented JSON, no stamp in the lock file)
// keeps them: the first ADD decodes it, skips the leased addresses and
// writes the current format with a stamp; later ADDs and DELs, which edit
// the stamped file, still see the upgraded leases (a duplicate ADD is
// refused with the old lease's addresses, a DEL releases one).
func TestExecUpgradeKeepsLeases(t *testing.T) {
	dataDir := t.TempDir()
	p, lockPath := store.Paths(dataDir, "li-net")
	old := `{
  "version": 1,
  "network": "li-net",
  "leases": [
    {
      "containerID": "up-1",
      "ifname": "eth0",
      "ips": [
        "10.77.0.2",
        "fd77::2"
      ]
    },
    {
      "containerID": "up-2",
      "ifname": "eth0",
      "ips": [
        "10.77.0.3",
        "fd77::3"
      ]
    }
  ],
  "lastReserved": {}
}
`
	if err := os.WriteFile(p, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin := netConf(t, "1.1.0", "delegated", dataDir, dualStack, "")
	var res current.Result
	if err := json.Unmarshal(li.Add(t, "new-1", absent, stdin).OK(t), &res); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.IPs[0].Address.IP, " ", res.IPs[1].Address.IP); got != "10.77.0.4 fd77::4" {
		t.Errorf("first ADD after the upgrade got %s, want the first addresses not leased before: 10.77.0.4 fd77::4", got)
	}
	if lock, err := os.ReadFile(lockPath); err != nil || !strings.HasPrefix(string(lock), "vxvrf-ipam-state v1 ") {
		t.Errorf("no stamp after the first ADD: %q %v", lock, err)
	}
	e := li.Add(t, "up-1", absent, stdin).CNIError(t)
	if e.Code != ErrDuplicateAllocation || !strings.Contains(e.Msg, "[10.77.0.2 fd77::2]") {
		t.Errorf("ADD of an upgraded attachment: %+v", e)
	}
	li.Del(t, "up-2", absent, stdin).OK(t)
	li.Add(t, "new-2", absent, stdin).OK(t)
	var got []string
	for _, l := range leases(t, dataDir) {
		got = append(got, fmt.Sprint(l.ContainerID, l.IPs))
	}
	want := []string{"new-1[10.77.0.4 fd77::4]", "new-2[10.77.0.5 fd77::5]", "up-1[10.77.0.2 fd77::2]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("leases after the upgrade: %v, want %v", got, want)
	}
	data, _ := os.ReadFile(p)
	st, err := store.Decode(data, "li-net")
	if err != nil {
		t.Fatal(err)
	}
	if enc, _ := store.Encode(st); !bytes.Equal(enc, data) {
		t.Errorf("the state file is not in the current format:\n%s", data)
	}
}
