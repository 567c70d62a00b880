package main

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestParseConfig(t *testing.T) {
	good := []struct {
		in      string
		bridge  string
		mtu     int
		hairpin bool
		ipam    string
	}{
		{`{"cniVersion":"1.0.0","name":"n","type":"veth-attach"}`, "", 0, false, ""},
		{`{"cniVersion":"1.0.0","name":"n","type":"veth-attach","bridge":"br0","mtu":1450,"hairpin":true,"ipam":{"type":"host-local"}}`, "br0", 1450, true, "host-local"},
		{`{"cniVersion":"1.1.0","name":"n","type":"veth-attach","runtimeConfig":{"mac":"02:00:00:00:00:01"},"args":{"cni":{"mac":"02:00:00:00:00:02"}}}`, "", 0, false, ""},
	}
	for _, g := range good {
		c, err := parseConfig([]byte(g.in))
		if err != nil {
			t.Fatalf("%s: %v", g.in, err)
		}
		if c.Bridge != g.bridge || c.MTU != g.mtu || c.Hairpin != g.hairpin || c.IPAM.Type != g.ipam {
			t.Errorf("%s: parsed %+v", g.in, c)
		}
	}
	bad := []struct {
		in   string
		code uint
	}{
		{`{"cniVersion":"1.0.0","name":"n"`, types.ErrDecodingFailure},
		{`{"cniVersion":"1.0.0","name":"n","mtu":"big"}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","mtu":-1}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","mtu":67}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","mtu":65536}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","bridge":"a-very-long-bridge-name"}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"mac":"nope"}}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","args":{"cni":{"mac":"01:00:5e:00:00:01"}}}`, types.ErrInvalidNetworkConfig},
	}
	for _, b := range bad {
		_, err := parseConfig([]byte(b.in))
		if got := code(err); got != b.code {
			t.Errorf("%s: code %d (%v), want %d", b.in, got, err, b.code)
		}
	}
}

func TestPodMAC(t *testing.T) {
	c, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"mac":"02:00:00:00:00:01"},"args":{"cni":{"mac":"02:00:00:00:00:02"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := c.podMAC("MAC=02:00:00:00:00:03"); m != "02:00:00:00:00:01" {
		t.Errorf("runtimeConfig.mac should win, got %q", m)
	}
	c.RuntimeConfig.MAC = ""
	if m, _ := c.podMAC("MAC=02:00:00:00:00:03"); m != "02:00:00:00:00:02" {
		t.Errorf("args.cni.mac should win over CNI_ARGS, got %q", m)
	}
	c.Args.CNI.MAC = ""
	if m, err := c.podMAC("K8S_POD_NAME=x;MAC=02:00:00:00:00:03"); m != "02:00:00:00:00:03" || err != nil {
		t.Errorf("CNI_ARGS MAC: got %q, %v", m, err)
	}
	if _, err := c.podMAC("MAC=zz"); code(err) != types.ErrInvalidEnvironmentVariables {
		t.Errorf("bad CNI_ARGS MAC: %v", err)
	}
}
