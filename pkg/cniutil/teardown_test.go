package cniutil

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

func TestDecodeTeardown(t *testing.T) {
	// Only JSON that does not parse fails, with code 6.
	_, err := DecodeTeardown([]byte(`{"name":`))
	if e := (*types.Error)(nil); !errors.As(err, &e) || e.Code != types.ErrDecodingFailure {
		t.Fatalf("bad JSON: %v, want code 6", err)
	}
	var ipam struct {
		Type string `json:"type"`
	}
	for in, want := range map[string]error{
		`{"name":"n"}`:                         ErrNoIPAM,
		`{"name":"n","ipam":null}`:             ErrNoIPAM,
		`{"name":"n","ipam":{"type":"x"}}`:     nil,
		`{"name":"n","ipam":{"type":7},"x":1}`: nil, // checked below: a decoding error
	} {
		td, err := DecodeTeardown([]byte(in))
		if err != nil || td.Name != "n" {
			t.Fatalf("%s: %+v %v", in, td, err)
		}
		err = td.DecodeIPAM(&ipam)
		switch {
		case want != nil && !errors.Is(err, want):
			t.Errorf("%s: %v, want %v", in, err, want)
		case in == `{"name":"n","ipam":{"type":"x"}}` && (err != nil || ipam.Type != "x"):
			t.Errorf("%s: %v %q", in, err, ipam.Type)
		case in == `{"name":"n","ipam":{"type":7},"x":1}` && (err == nil || errors.Is(err, ErrNoIPAM)):
			t.Errorf("%s: %v, want a decoding error", in, err)
		}
	}
}

func TestGuardTeardownNetNS(t *testing.T) {
	if err := GuardTeardownNetNS(filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Errorf("a netns that is gone: %v", err)
	}
	// The test's own network namespace stands for the host's: refused.
	if err := GuardTeardownNetNS("/proc/self/ns/net"); err == nil {
		t.Error("the plugin's own network namespace accepted")
	}
	if err := GuardTeardownNetNS(""); err != nil {
		t.Errorf("no netns: %v", err)
	}
	// DelPreamble: the guard comes first (before stdin is even parsed).
	parsed := false
	parse := func([]byte) (string, error) { parsed = true; return "ok", nil }
	if _, err := DelPreamble(&skel.CmdArgs{Netns: "/proc/self/ns/net"}, parse); err == nil || parsed {
		t.Errorf("host netns: %v, parsed %v", err, parsed)
	}
	if got, err := DelPreamble(&skel.CmdArgs{Netns: filepath.Join(t.TempDir(), "gone")}, parse); err != nil || got != "ok" {
		t.Errorf("gone netns: %q %v", got, err)
	}
}
