package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/pkg/naming"
)

// UninstallReport says what Uninstall removed and what it left, and why.
type UninstallReport struct {
	Removed []string
	// Attachments are the host veths of the network still present: pods
	// that still need DEL, so the binaries and shared devices stay.
	Attachments []string
	// Left lists what stays on purpose, with the reason.
	Left []string
}

// Lines is the report as log lines.
func (r UninstallReport) Lines() []string {
	var out []string
	for _, s := range r.Removed {
		out = append(out, "removed "+s)
	}
	if len(r.Attachments) > 0 {
		out = append(out, fmt.Sprintf("%d attachment(s) of the network remain (%s): run --uninstall again once the node is drained", len(r.Attachments), strings.Join(r.Attachments, " ")))
	}
	for _, s := range r.Left {
		out = append(out, "left "+s)
	}
	return out
}

// ConflistName is the conflist file name the cluster config at path names
// (the default when it cannot be read).
func ConflistName(path string) string {
	if data, err := os.ReadFile(path); err == nil {
		if c, err := install.ParseCluster(data); err == nil {
			return c.ConflistName
		}
	}
	return install.DefaultConflistName
}

// Uninstall takes vxvrf (the conflist called name) off this node:
//
//  1. the conflist goes first, so the runtime starts no new pod on it;
//  2. if no host veth of the network is left (every pod's DEL ran), the
//     chain's GC runs with an empty cni.dev/valid-attachments list, which
//     makes the plugins remove the network's shared devices (VXLAN, bridge,
//     VRF), firewall chains and rules and IPAM state; then the binaries go;
//  3. otherwise the binaries and the shared devices stay, because the
//     remaining pods' DEL needs them; running Uninstall again after the
//     node is drained finishes the job.
//
// Node sysctls that infra-ensure set (forwarding) stay: kube-proxy and
// other networks depend on them, and their previous values are not known.
func Uninstall(ctx context.Context, o *install.Options, name string) (UninstallReport, error) {
	var rep UninstallReport
	confPath := filepath.Join(o.ConfDirPath(), name)
	var list *libcni.NetworkConfigList
	if _, err := os.Stat(confPath); err == nil {
		if list, err = libcni.ConfListFromFile(confPath); err != nil {
			return rep, fmt.Errorf("read %s: %w", confPath, err)
		}
	} else {
		// Removed by an earlier run that found pods left: GC needs the
		// conflist, which that run kept next to the binaries.
		list, _ = libcni.ConfListFromFile(keptConflist(o))
	}
	if list != nil {
		if err := os.MkdirAll(filepath.Dir(keptConflist(o)), 0o755); err == nil {
			if _, err := install.WriteFileAtomic(keptConflist(o), list.Bytes, 0o600); err != nil {
				return rep, err
			}
		}
	}
	if err := os.Remove(confPath); err == nil {
		rep.Removed = append(rep.Removed, confPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("remove %s: %w", confPath, err)
	}
	if list == nil {
		rep.Left = append(rep.Left, "shared devices, if any: no conflist found to run the chain's GC with")
	} else {
		att, err := attachments(list.Name)
		if err != nil {
			return rep, err
		}
		rep.Attachments = att
		if len(att) > 0 {
			rep.Left = append(rep.Left, "the plugin binaries, the network's shared devices, firewall objects and state: pods still need DEL")
			return rep, nil
		}
		cni := libcni.NewCNIConfigWithCacheDir([]string{o.BinDirPath()}, filepath.Join(o.ConfDirPath(), ".vxvrf-uninstall-cache"), nil)
		err = cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
		_ = os.RemoveAll(filepath.Join(o.ConfDirPath(), ".vxvrf-uninstall-cache"))
		if err != nil {
			return rep, fmt.Errorf("GC of network %s (shared devices, firewall, state): %w", list.Name, err)
		}
		rep.Removed = append(rep.Removed, fmt.Sprintf("network %s's shared devices, firewall objects and leases (chain GC)", list.Name))
		removed, err := removeState(list)
		rep.Removed = append(rep.Removed, removed...)
		if err != nil {
			return rep, err
		}
	}
	names, err := o.PluginNames()
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		p := filepath.Join(o.BinDirPath(), n)
		if err := os.Remove(p); err == nil {
			rep.Removed = append(rep.Removed, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("remove %s: %w", p, err)
		}
	}
	if err := os.Remove(keptConflist(o)); err == nil {
		_ = os.Remove(filepath.Dir(keptConflist(o)))
	}
	rep.Left = append(rep.Left, "node sysctls infra-ensure set (ip_forward and the like): kube-proxy and other networks rely on them")
	return rep, nil
}

// keptConflist is where Uninstall keeps the conflist between a first run
// (pods left) and the final one, outside the runtime's conflist directory.
func keptConflist(o *install.Options) string {
	return filepath.Join(o.BinDirPath(), ".vxvrf", "uninstall.conflist")
}

// attachments lists the host veths veth-attach made for network (their
// alias starts with the network's tag).
func attachments(network string) ([]string, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	tag := naming.NetworkTag(network)
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Alias, tag) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// Where the plugins keep state when the conflist does not say.
const (
	defaultIPAMDataDir = "/var/lib/cni/vxvrf-ipam"
	defaultStateDir    = "/run/vxvrf"
)

// removeState removes the network's lockfile-ipam lease and lock files
// (empty after GC) and then the state directories, if nothing else is in
// them (another network's leases keep them).
func removeState(list *libcni.NetworkConfigList) ([]string, error) {
	var files, dirs []string
	for _, p := range list.Plugins {
		var c struct {
			Type     string `json:"type"`
			StateDir string `json:"stateDir"`
			IPAM     *struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		}
		if err := json.Unmarshal(p.Bytes, &c); err != nil {
			return nil, fmt.Errorf("conflist plugin %s: %w", p.Network.Type, err)
		}
		if c.IPAM != nil && (c.Type == "lockfile-ipam" || c.IPAM.Type == "lockfile-ipam") {
			d := cmp.Or(c.IPAM.DataDir, defaultIPAMDataDir)
			files = append(files, filepath.Join(d, naming.LeaseFile(list.Name)), filepath.Join(d, naming.LockFile(list.Name)))
			dirs = append(dirs, d)
		}
		if c.Type == "infra-ensure" {
			dirs = append(dirs, cmp.Or(c.StateDir, defaultStateDir))
		}
	}
	var removed []string
	for _, f := range files {
		if err := os.Remove(f); err == nil {
			removed = append(removed, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("remove %s: %w", f, err)
		}
	}
	// Deepest first, so a data dir inside the state dir goes before it.
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range slices.Compact(dirs) {
		if err := os.Remove(d); err == nil {
			removed = append(removed, d)
		}
	}
	return removed, nil
}
