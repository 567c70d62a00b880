package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/gofrs/flock"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

// hostLocalBlock is an ipam block written for the reference host-local,
// verbatim from its documentation (dataDir aside).
const hostLocalBlock = `{
	"type": "host-local",
	"ranges": [
		[
			{"subnet": "10.10.0.0/16", "rangeStart": "10.10.1.20", "rangeEnd": "10.10.3.50", "gateway": "10.10.0.254"},
			{"subnet": "172.16.5.0/24"}
		],
		[
			{"subnet": "3ffe:ffff:0:01ff::/64", "rangeStart": "3ffe:ffff:0:01ff::0010", "rangeEnd": "3ffe:ffff:0:01ff::0020"}
		]
	],
	"routes": [
		{"dst": "0.0.0.0/0"},
		{"dst": "192.168.0.0/16", "gw": "10.10.5.1"},
		{"dst": "3ffe:ffff:0:01ff::1/64"}
	],
	"dataDir": "/run/my-orchestrator/container-ipam-state"
}`

func conf(typ, ipam string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"net1","type":%q,"ipam":%s%s}`, typ, ipam, extra))
}

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestParseHostLocalVerbatim(t *testing.T) {
	c, err := parseConfig(conf("bridge", hostLocalBlock, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Stage {
		t.Error("bridge + ipam.type=host-local must be delegated form")
	}
	if len(c.Sets) != 2 || len(c.Sets[0]) != 2 || c.Sets[0][1].Gateway.String() != "172.16.5.1" ||
		c.Sets[0][0].Gateway.String() != "10.10.0.254" || c.Sets[1][0].RangeEnd.String() != "3ffe:ffff:0:1ff::20" {
		t.Fatalf("sets %v", c.Sets)
	}
	if len(c.IPAM.Routes) != 3 || c.DataDir != "/run/my-orchestrator/container-ipam-state" || c.Timeout != 10*time.Second {
		t.Fatalf("routes %v dataDir %q timeout %v", c.IPAM.Routes, c.DataDir, c.Timeout)
	}
}

func TestParseModes(t *testing.T) {
	for _, tc := range []struct {
		typ, ipamType string
		stage         bool
	}{
		{"lockfile-ipam", "", true},
		{"lockfile-ipam", "lockfile-ipam", true},
		{"veth-attach", "lockfile-ipam", false},
		{"bridge", "lockfile-ipam", false},
	} {
		c, err := parseConfig(conf(tc.typ, fmt.Sprintf(`{"type":%q,"subnet":"10.0.0.0/24"}`, tc.ipamType), ""), "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Stage != tc.stage {
			t.Errorf("type %q ipam.type %q: stage=%v want %v", tc.typ, tc.ipamType, c.Stage, tc.stage)
		}
	}
}

func TestParseLegacyAndIPRanges(t *testing.T) {
	c, err := parseConfig(conf("lockfile-ipam",
		`{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.100","gateway":"10.1.0.254","ranges":[[{"subnet":"fd00::/64"}]],"lockTimeout":"250ms","dataDir":"/run/x/"}`,
		`,"runtimeConfig":{"ipRanges":[[{"subnet":"192.168.7.0/24"}]]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sets) != 3 || c.Sets[0][0].Subnet.IP.String() != "192.168.7.0" || c.Sets[1][0].RangeStart.String() != "10.1.0.100" ||
		c.Sets[1][0].Gateway.String() != "10.1.0.254" || !c.Sets[2][0].Subnet.IP.Equal(c.Sets[2][0].Subnet.IP.Mask(c.Sets[2][0].Subnet.Mask)) {
		t.Fatalf("sets %v (want ipRanges, legacy, ranges)", c.Sets)
	}
	if c.Timeout != 250*time.Millisecond || c.DataDir != "/run/x" {
		t.Fatalf("timeout %v dataDir %q", c.Timeout, c.DataDir)
	}
}

func TestParseRequested(t *testing.T) {
	ipam := `{"type":"lockfile-ipam","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}`
	for _, tc := range []struct {
		name, extra, cniArgs, want string
	}{
		{"none", "", "", ""},
		{"cni_args", "", "IP=10.0.0.5", "10.0.0.5"},
		{"cni_args comma + k8s keys", "", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;IP=10.0.0.5,fd00::5", "10.0.0.5,fd00::5"},
		{"cni_args cidr form", "", "IgnoreUnknown=1;IP=10.0.0.5/24", "10.0.0.5"},
		{"args", `,"args":{"cni":{"ips":["10.0.0.6"]}}`, "", "10.0.0.6"},
		{"args beat cni_args", `,"args":{"cni":{"ips":["10.0.0.6"]}}`, "IP=10.0.0.5", "10.0.0.6"},
		{"runtimeConfig", `,"runtimeConfig":{"ips":["fd00::7/64"]}`, "", "fd00::7"},
		{"cni_args + runtimeConfig", `,"runtimeConfig":{"ips":["fd00::7"]}`, "IP=10.0.0.5", "10.0.0.5,fd00::7"},
		{"args + runtimeConfig dedup", `,"args":{"cni":{"ips":["10.0.0.6"]}},"runtimeConfig":{"ips":["10.0.0.6","fd00::7"]}`, "IP=10.0.0.5", "10.0.0.6,fd00::7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(conf("bridge", ipam, tc.extra), tc.cniArgs)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range c.Requested {
				got = append(got, a.String())
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("requested %v want %q", got, tc.want)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("# c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.org\nsearch a.example b.example\noptions ndots:2 edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig(conf("bridge", fmt.Sprintf(`{"type":"lockfile-ipam","subnet":"10.0.0.0/24","resolvConf":%q}`, p), ""), "")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DNS
	if strings.Join(d.Nameservers, ",") != "10.0.0.53,fd00::53" || d.Domain != "example.org" ||
		strings.Join(d.Search, ",") != "a.example,b.example" || strings.Join(d.Options, ",") != "ndots:2,edns0" {
		t.Fatalf("dns %+v", d)
	}
}

func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stdin   string
		cniArgs string
		code    uint
	}{
		{"malformed json", `{"cniVersion":"1.0.0",`, "", 6},
		{"no ipam", `{"cniVersion":"1.0.0","name":"n","type":"lockfile-ipam"}`, "", 7},
		{"no ranges", string(conf("x", `{"type":"lockfile-ipam"}`, "")), "", 7},
		{"bad cidr", string(conf("x", `{"subnet":"10.0.0.0/33"}`, "")), "", 7},
		{"bad cidr in ranges", string(conf("x", `{"ranges":[[{"subnet":"banana"}]]}`, "")), "", 7},
		{"host bits", string(conf("x", `{"subnet":"10.0.0.1/24"}`, "")), "", 7},
		{"too small", string(conf("x", `{"subnet":"10.0.0.0/31"}`, "")), "", 7},
		{"start outside", string(conf("x", `{"subnet":"10.0.0.0/24","rangeStart":"10.0.2.1"}`, "")), "", 7},
		{"gateway outside", string(conf("x", `{"subnet":"10.0.0.0/24","gateway":"10.0.2.1"}`, "")), "", 7},
		{"start > end", string(conf("x", `{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.2"}`, "")), "", 7},
		{"overlap across", string(conf("x", `{"subnet":"10.0.0.0/24","ranges":[[{"subnet":"10.0.0.0/25"}]]}`, "")), "", 7},
		{"overlap ipRanges", string(conf("x", `{"ranges":[[{"subnet":"10.0.0.0/25"}]]}`, `,"runtimeConfig":{"ipRanges":[[{"subnet":"10.0.0.0/24"}]]}`)), "", 7},
		{"mixed family set", string(conf("x", `{"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}`, "")), "", 7},
		{"legacy without subnet", string(conf("x", `{"rangeStart":"10.0.0.5","ranges":[[{"subnet":"10.0.0.0/24"}]]}`, "")), "", 7},
		{"bad lockTimeout", string(conf("x", `{"subnet":"10.0.0.0/24","lockTimeout":"soon"}`, "")), "", 7},
		{"zero lockTimeout", string(conf("x", `{"subnet":"10.0.0.0/24","lockTimeout":"0s"}`, "")), "", 7},
		{"relative dataDir", string(conf("x", `{"subnet":"10.0.0.0/24","dataDir":"state"}`, "")), "", 7},
		{"route without dst", string(conf("x", `{"subnet":"10.0.0.0/24","routes":[{"gw":"10.0.0.1"}]}`, "")), "", 7},
		{"bad args ip", string(conf("x", `{"subnet":"10.0.0.0/24"}`, `,"args":{"cni":{"ips":["nope"]}}`)), "", 7},
		{"bad runtimeConfig ip", string(conf("x", `{"subnet":"10.0.0.0/24"}`, `,"runtimeConfig":{"ips":["nope"]}`)), "", 7},
		{"bad CNI_ARGS ip", string(conf("x", `{"subnet":"10.0.0.0/24"}`, "")), "IP=10.0.0.999", 4},
		{"missing resolvConf", string(conf("x", `{"subnet":"10.0.0.0/24","resolvConf":"/nonexistent/resolv.conf"}`, "")), "", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.stdin), tc.cniArgs)
			if code(err) != tc.code {
				t.Fatalf("got %v (code %d), want code %d", err, code(err), tc.code)
			}
		})
	}
}

// TestLockTimeoutCode holds the network's lock and runs ADD with a tiny
// lockTimeout: the answer is CNI code 11 and nothing is written.
func TestLockTimeoutCode(t *testing.T) {
	dir := t.TempDir()
	_, lockPath := store.Paths(dir, "net1")
	holder := flock.New(lockPath)
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()
	stdin := conf("lockfile-ipam", fmt.Sprintf(`{"subnet":"10.0.0.0/24","dataDir":%q,"lockTimeout":"30ms"}`, dir), "")
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: stdin}
	for name, fn := range map[string]func(*skel.CmdArgs) error{"ADD": cmdAdd, "DEL": cmdDel, "CHECK": cmdCheck} {
		if err := fn(args); code(err) != types.ErrTryAgainLater {
			t.Errorf("%s: got %v, want code 11", name, err)
		}
	}
	statePath, _ := store.Paths(dir, "net1")
	if _, err := os.Stat(statePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file written while the lock was held: %v", err)
	}
}
