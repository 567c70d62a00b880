// Package sysctl reads and writes network sysctls of the calling thread's
// network namespace. Keys are limited to the net.* tree: a key that does not
// resolve to a path below /proc/sys/net is refused.
//
// Not containernetworking/plugins/pkg/utils/sysctl: that one joins any key
// to /proc/sys, so "net/../../kernel/x" reaches outside net.*; keys here
// come from users' configs (sysctl-firewall's sysctls), so they are
// confined to net.* and the path is checked element by element.
package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const root = "/proc/sys/net"

// Path validates key and returns its file under /proc/sys/net. key may use
// dots ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/eth0.100/rp_filter",
// needed when an interface name contains a dot).
func Path(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	if !strings.HasPrefix(k, "net/") {
		return "", fmt.Errorf("sysctl %q: only net.* keys are allowed", key)
	}
	for _, part := range strings.Split(k, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("sysctl %q: invalid path element %q", key, part)
		}
	}
	p := filepath.Join("/proc/sys", k)
	if !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("sysctl %q leaves %s", key, root)
	}
	return p, nil
}

// Get returns the value of key, trimmed.
func Get(key string) (string, error) {
	p, err := Path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes value to key and reads it back.
func Set(key, value string) error {
	p, err := Path(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", key, value, err)
	}
	got, err := Get(key)
	if err != nil {
		return err
	}
	if got != strings.TrimSpace(value) {
		return fmt.Errorf("sysctl %s reads %q after writing %q", key, got, value)
	}
	return nil
}

// Check returns an error unless key currently holds value.
func Check(key, value string) error {
	got, err := Get(key)
	if err != nil {
		return err
	}
	if got != strings.TrimSpace(value) {
		return fmt.Errorf("sysctl %s is %q, want %q", key, got, value)
	}
	return nil
}

// Exists reports whether key names an existing sysctl (a kernel feature probe).
func Exists(key string) bool {
	p, err := Path(key)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}
