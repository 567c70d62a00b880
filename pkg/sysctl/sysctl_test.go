package sysctl

import "testing"

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
