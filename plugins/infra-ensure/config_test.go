package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/kernel"
)

func TestParseConfigDefaults(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"infra-ensure"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.StateDir != DefaultStateDir || conf.Uplink != "" || conf.localIP != nil {
		t.Errorf("defaults: %+v", conf)
	}
	conf, err = parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"infra-ensure","uplink":"bond0.100","localAddress":"fd00::5","stateDir":"/var/run/x/../vx"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Uplink != "bond0.100" || conf.localIP.String() != "fd00::5" || conf.StateDir != "/var/run/vx" {
		t.Errorf("parsed: %+v", conf)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name, json string
		code       uint
	}{
		{"malformed", `{"cniVersion":`, types.ErrDecodingFailure},
		{"uplink too long", `{"uplink":"eth0123456789012"}`, 7},
		{"uplink slash", `{"uplink":"a/b"}`, 7},
		{"bad local", `{"localAddress":"10.0.0"}`, 7},
		{"loopback local", `{"localAddress":"127.0.0.1"}`, 7},
		{"relative stateDir", `{"stateDir":"run/vxvrf"}`, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.json
			if c.code != types.ErrDecodingFailure {
				in = `{"cniVersion":"1.0.0","name":"n","type":"infra-ensure",` + c.json[1:]
			}
			_, err := parseConfig([]byte(in))
			var te *types.Error
			if !errors.As(err, &te) || te.Code != c.code {
				t.Fatalf("err = %v, want CNI code %d", err, c.code)
			}
		})
	}
}

func TestKernelHas(t *testing.T) {
	dir := t.TempDir()
	saved := kernel.ModulesDir
	t.Cleanup(func() { kernel.ModulesDir = saved })
	kernel.ModulesDir = dir
	dep := "kernel/drivers/net/vxvrfmod.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\nkernel/net/other.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/vxvrfbuiltin.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"vxvrfmod": true, "vxvrfbuiltin": true, "udp_tunnel": false, "vxvrfnone": false} {
		if got := kernelHas(name); got != want {
			t.Errorf("kernelHas(%q) = %v, want %v", name, got, want)
		}
	}
}
