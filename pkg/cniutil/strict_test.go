package cniutil

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

type strictInner struct {
	VNI     int64    `json:"vni"`
	Remotes []string `json:"remotes,omitempty"`
}

type strictConf struct {
	types.PluginConf
	Masquerade bool              `json:"masquerade,omitempty"`
	Hairpin    bool              `json:"hairpin,omitempty"`
	VXLAN      *strictInner      `json:"vxlan,omitempty"`
	Ranges     [][]strictInner   `json:"ranges,omitempty"`
	Sysctls    map[string]string `json:"sysctls,omitempty"`
	hidden     int               //nolint:unused // an unexported field: never a config key
}

func TestDecodeStrict(t *testing.T) {
	for _, c := range []struct {
		in   string
		code uint
		msg  string // "" means accepted
	}{
		{`{"cniVersion":"1.1.0","cniVersions":["1.1.0"],"name":"n","type":"x","ipam":{"type":"host-local","subnet":"10.0.0.0/24"},"dns":{"nameservers":["1.1.1.1"],"future":1},
		  "args":{"cni":{"ips":["10.0.0.2"]},"anything":1},"runtimeConfig":{"portMappings":[],"whatever":{}},"capabilities":{"mac":true},"prevResult":{"cniVersion":"1.1.0"},
		  "cni.dev/valid-attachments":[],"cni.dev/future":1,"disableCheck":true,"disableGC":false,"log":{"file":"/var/log/x.log","level":"debug"},
		  "masquerade":true,"vxlan":{"vni":1,"remotes":["a"]},"ranges":[[{"vni":2}]],"sysctls":{"any.key":"1"}}`, 0, ""},
		{`{"name":"n","hairpn":true}`, 7, `p: unknown key "hairpn" (did you mean "hairpin"?)`},
		{`{"name":"n","vxlan":{"vni":1,"remote":["a"]}}`, 7, `p: unknown key "vxlan.remote" (did you mean "vxlan.remotes"?)`},
		{`{"name":"n","ranges":[[{"vni":1}],[{"vni":2,"vnix":3}]]}`, 7, `p: unknown key "ranges[1][0].vnix" (did you mean "ranges[1][0].vni"?)`},
		{`{"name":"n","Masquerade":true}`, 7, `p: unknown key "Masquerade" (did you mean "masquerade"?)`},
		{`{"name":"n","zzzzzzzzzz":1}`, 7, `p: unknown key "zzzzzzzzzz"; known keys here:`},
		{`{"name":"n","masquerade":"yes"}`, 7, `p: "masquerade" must be true or false, got "yes"`},
		{`{"name":"n","vxlan":{"vni":"100"}}`, 7, `p: "vxlan.vni" must be a whole number, got "100"`},
		{`{"name":"n","sysctls":{"a":1}}`, 7, `p: "sysctls.a" must be a string, got 1`},
		{`{"name":"n","log":{"file":"x.log"}}`, 7, `p: log: file "x.log" must be an absolute path`},
		{`{"name":"n","log":{"fil":"/x.log"}}`, 7, `p: unknown key "log.fil" (did you mean "log.file"?)`},
		{`{"name":"n","log":{"level":"loud"}}`, 7, `p: log: level "loud": must be debug, info, warn or error`},
		{`{"name":`, 6, "failed to parse network configuration"},
	} {
		err := DecodeStrict("p", []byte(c.in), &strictConf{})
		if c.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", c.in, err)
			}
			continue
		}
		var e *types.Error
		if !errors.As(err, &e) || e.Code != c.code || !strings.HasPrefix(e.Msg, c.msg) {
			t.Errorf("%s:\n got %#v\nwant code %d %q", c.in, err, c.code, c.msg)
		}
	}
}

func TestCheckKeysOnly(t *testing.T) {
	type ipam struct {
		Type   string `json:"type"`
		Subnet string `json:"subnet"`
	}
	type conf struct {
		types.PluginConf
		IPAM *ipam `json:"ipam"`
	}
	// A delegated IPAM checks its own section, not its caller's keys.
	in := []byte(`{"name":"n","type":"bridge","isGateway":true,"ipam":{"type":"x","subnet":"10.0.0.0/24"}}`)
	if err := CheckKeys("x", in, &conf{}, "ipam"); err != nil {
		t.Fatal(err)
	}
	in = []byte(`{"name":"n","type":"bridge","ipam":{"type":"x","subnett":"10.0.0.0/24"}}`)
	err := CheckKeys("x", in, &conf{}, "ipam")
	if e := (*types.Error)(nil); !errors.As(err, &e) || e.Msg != `x: unknown key "ipam.subnett" (did you mean "ipam.subnet"?)` {
		t.Fatalf("got %v", err)
	}
}

// TestDecodeStrictSpecSections: a spec-owned section of the wrong type is
// still a decoding failure (6), naming the key.
func TestDecodeStrictSpecSections(t *testing.T) {
	for _, in := range []string{`{"name":"n","prevResult":"x"}`, `{"name":"n","prevResult":[]}`, `{"name":"n","capabilities":{"mac":"yes"}}`} {
		err := DecodeStrict("p", []byte(in), &strictConf{})
		if e := (*types.Error)(nil); !errors.As(err, &e) || e.Code != types.ErrDecodingFailure || !strings.HasPrefix(e.Msg, `p: "`) {
			t.Errorf("%s: %#v", in, err)
		}
	}
}
