package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/testutil"
)

func TestPath(t *testing.T) {
	good := map[string]string{
		"net.ipv4.ip_forward":               "/proc/sys/net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.100/rp_filter":  "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"net.ipv6.conf.vx1234.disable_ipv6": "/proc/sys/net/ipv6/conf/vx1234/disable_ipv6",
	}
	for key, want := range good {
		got, err := Path(key)
		if err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{
		"kernel.hostname", "net/../kernel/hostname", "net.ipv4..ip_forward", "net", "net/", "/net/ipv4/ip_forward",
		"net/ipv4/../../kernel/x", "vm.swappiness", "",
	} {
		if p, err := Path(key); err == nil {
			t.Errorf("Path(%q) = %q, want error", key, p)
		}
	}
}

// TestOpener: in a namespace of its own, an Opener reads and writes keys
// through one open each (two keys of one directory, one of another), a key
// the kernel lacks is fs.ErrNotExist, and Set writes and reads back.
func TestOpener(t *testing.T) {
	lab := testutil.NewLab(t, "sysctl")
	n, err := lab.AddNS("n")
	if err != nil {
		t.Fatal(err)
	}
	err = n.NetNS.Do(func(ns.NetNS) error {
		o := NewOpener()
		defer o.Close()
		for _, key := range []string{"net.ipv4.ip_forward", "net.ipv4.tcp_l3mdev_accept", "net.ipv6.conf.all.forwarding"} {
			f, err := o.Open(key)
			if errors.Is(err, fs.ErrNotExist) {
				continue // a kernel without IPv6 or L3 master devices
			}
			if err != nil {
				return err
			}
			for _, v := range []string{"1", "0"} {
				if err := f.Set(v); err != nil {
					return err
				}
				if got, err := Get(key); err != nil || got != v {
					return fmt.Errorf("%s reads %q after Set(%s): %w", key, got, v, err)
				}
			}
			_ = f.Close()
		}
		if _, err := o.Open("net.ipv4.no_such_key"); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("a missing key: want fs.ErrNotExist, got %w", err)
		}
		if err := Set("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
		// A value longer than one small read comes back whole.
		var ports []string
		for p := 10000; p < 10400; p += 2 {
			ports = append(ports, fmt.Sprint(p))
		}
		long := strings.Join(ports, ",")
		if err := Set("net.ipv4.ip_local_reserved_ports", long); err != nil {
			return fmt.Errorf("a %d-byte value: %w", len(long), err)
		}
		if got, err := Get("net.ipv4.ip_local_reserved_ports"); err != nil || got != long {
			return fmt.Errorf("Get of a %d-byte value: %d bytes back: %w", len(long), len(got), err)
		}
		return Check("net.ipv4.ip_forward", "1")
	})
	if err != nil {
		t.Fatal(err)
	}
}
