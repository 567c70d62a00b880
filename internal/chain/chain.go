// Package chain runs a conflist through libcni exactly as a runtime does,
// but with every plugin exec'd inside a given node namespace and with the
// libcni result cache in a directory of the caller's choosing (never
// /var/lib/cni). The integration tests and the demo share it.
package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
)

// Chain is one network (a parsed conflist) bound to a plugin path, a cache
// directory and the node namespace the plugins run in.
type Chain struct {
	List     *libcni.NetworkConfigList
	Node     ns.NetNS
	CNIPath  []string
	CacheDir string

	exec invoke.Exec
	cni  *libcni.CNIConfig
}

// RuntimeConf is what a runtime passes for one attachment.
type RuntimeConf struct {
	ContainerID    string
	NetNS          string
	IfName         string
	Args           [][2]string
	CapabilityArgs map[string]any
}

func (rt RuntimeConf) libcni() *libcni.RuntimeConf {
	ifName := rt.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	return &libcni.RuntimeConf{
		ContainerID:    rt.ContainerID,
		NetNS:          rt.NetNS,
		IfName:         ifName,
		Args:           rt.Args,
		CapabilityArgs: rt.CapabilityArgs,
	}
}

// Load parses a conflist file.
func Load(path string) (*libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load conflist %s: %w", path, err)
	}
	return list, nil
}

// Parse parses conflist bytes.
func Parse(b []byte) (*libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse conflist: %w", err)
	}
	return list, nil
}

// New binds list to the plugin directories cniPath, the libcni cache
// directory cacheDir (it must not be empty: the default /var/lib/cni is
// refused) and the node namespace node.
func New(list *libcni.NetworkConfigList, cniPath []string, cacheDir string, node ns.NetNS) (*Chain, error) {
	// An explicit exec: libcni's lazy default is not safe for concurrent
	// ADDs on one CNIConfig.
	return NewWithExec(list, cniPath, cacheDir, node, &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	})
}

// NewWithExec is New with the invoke.Exec that runs every plugin (the
// benchmark wraps the default one to time each exec; the chaos suite's
// kills plugins mid-flight). exec must be safe for concurrent use when the
// chain is.
func NewWithExec(list *libcni.NetworkConfigList, cniPath []string, cacheDir string, node ns.NetNS, exec invoke.Exec) (*Chain, error) {
	if cacheDir == "" {
		return nil, errors.New("chain: a cache directory is required (the default /var/lib/cni is not used)")
	}
	if node == nil {
		return nil, errors.New("chain: a node namespace is required")
	}
	if exec == nil {
		return nil, errors.New("chain: an exec is required")
	}
	return &Chain{
		List:     list,
		Node:     node,
		CNIPath:  cniPath,
		CacheDir: cacheDir,
		exec:     exec,
		cni:      libcni.NewCNIConfigWithCacheDir(cniPath, cacheDir, exec),
	}, nil
}

// WithCacheDir returns the same chain with another cache directory (a
// runtime that lost its cache, or a second runtime).
func (c *Chain) WithCacheDir(dir string) (*Chain, error) {
	return NewWithExec(c.List, c.CNIPath, dir, c.Node, c.exec)
}

// in runs f inside the node namespace, so the plugin processes libcni
// starts are born there.
func (c *Chain) in(f func() error) error {
	var inner error
	if err := c.Node.Do(func(ns.NetNS) error {
		inner = f()
		return nil
	}); err != nil {
		return fmt.Errorf("enter node namespace: %w", err)
	}
	return inner
}

// Add runs ADD through the whole chain and returns the final result, in
// the conflist's version.
func (c *Chain) Add(ctx context.Context, rt RuntimeConf) (types.Result, error) {
	var res types.Result
	err := c.in(func() error {
		var err error
		res, err = c.cni.AddNetworkList(ctx, c.List, rt.libcni())
		return err
	})
	return res, err
}

// AddCurrent is Add with the result converted to the current (1.x) type.
func (c *Chain) AddCurrent(ctx context.Context, rt RuntimeConf) (*current.Result, error) {
	res, err := c.Add(ctx, rt)
	if err != nil {
		return nil, err
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result %s: %w", res.Version(), err)
	}
	return cur, nil
}

// Check runs CHECK with the cached result.
func (c *Chain) Check(ctx context.Context, rt RuntimeConf) error {
	return c.in(func() error { return c.cni.CheckNetworkList(ctx, c.List, rt.libcni()) })
}

// Del runs DEL in reverse order, with the cached result when there is one.
func (c *Chain) Del(ctx context.Context, rt RuntimeConf) error {
	return c.in(func() error { return c.cni.DelNetworkList(ctx, c.List, rt.libcni()) })
}

// GC runs GC. valid == nil sends no cni.dev/valid-attachments key at all
// (what cnitool does); a non-nil empty slice sends an empty list. Like any
// libcni runtime, it first DELs the cached attachments not in valid.
func (c *Chain) GC(ctx context.Context, valid []types.GCAttachment) error {
	var args *libcni.GCArgs
	if valid != nil {
		args = &libcni.GCArgs{ValidAttachments: valid}
	}
	return c.in(func() error { return c.cni.GCNetworkList(ctx, c.List, args) })
}

// Status runs STATUS through every plugin (a no-op below 1.1.0).
func (c *Chain) Status(ctx context.Context) error {
	return c.in(func() error { return c.cni.GetStatusNetworkList(ctx, c.List) })
}

// CacheFile is the libcni cache file of one attachment.
func (c *Chain) CacheFile(rt RuntimeConf) string {
	r := rt.libcni()
	return filepath.Join(c.CacheDir, "results", fmt.Sprintf("%s-%s-%s", c.List.Name, r.ContainerID, r.IfName))
}

// DropCache removes the cached result of one attachment, as if the runtime
// had lost it.
func (c *Chain) DropCache(rt RuntimeConf) error {
	if err := os.Remove(c.CacheFile(rt)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// CachedAttachments lists the cache entries of this network.
func (c *Chain) CachedAttachments() ([]types.GCAttachment, error) {
	all, err := c.cni.GetCachedAttachments("")
	if err != nil {
		return nil, err
	}
	var out []types.GCAttachment
	for _, a := range all {
		if a.Network == c.List.Name {
			out = append(out, types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
		}
	}
	return out, nil
}

// Edit decodes conflist bytes, lets f change them and encodes them again.
// plugins are the plugin objects of the list, in order; f may replace the
// list through conf["plugins"].
func Edit(b []byte, f func(conf map[string]any, plugins []map[string]any) error) ([]byte, error) {
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		return nil, fmt.Errorf("edit conflist: %w", err)
	}
	raw, _ := conf["plugins"].([]any)
	plugins := make([]map[string]any, 0, len(raw))
	for i, p := range raw {
		m, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("edit conflist: plugins[%d] is not an object", i)
		}
		plugins = append(plugins, m)
	}
	if err := f(conf, plugins); err != nil {
		return nil, err
	}
	return json.MarshalIndent(conf, "", "  ")
}

// SetVersion pins the conflist to one cniVersion (cniVersions removed).
func SetVersion(b []byte, v string) ([]byte, error) {
	return Edit(b, func(conf map[string]any, _ []map[string]any) error {
		conf["cniVersion"] = v
		delete(conf, "cniVersions")
		return nil
	})
}

// Plugin returns the first plugin object of the given type, or nil.
func Plugin(plugins []map[string]any, typ string) map[string]any {
	for _, p := range plugins {
		if p["type"] == typ {
			return p
		}
	}
	return nil
}

// Without removes the plugins of the given type from conf.
func Without(conf map[string]any, plugins []map[string]any, typ string) {
	kept := make([]any, 0, len(plugins))
	for _, p := range plugins {
		if p["type"] != typ {
			kept = append(kept, p)
		}
	}
	conf["plugins"] = kept
}

// SetStateDirs points every on-disk state path of the default chain
// (infra-ensure stateDir, lockfile-ipam dataDir, stage or delegated) under
// root, so a test or demo keeps the host's /run clean.
func SetStateDirs(b []byte, root string) ([]byte, error) {
	return Edit(b, func(_ map[string]any, plugins []map[string]any) error {
		for _, p := range plugins {
			if _, ok := p["stateDir"]; ok || p["type"] == "infra-ensure" {
				p["stateDir"] = filepath.Join(root, "state")
			}
			if ipam, ok := p["ipam"].(map[string]any); ok {
				ipam["dataDir"] = filepath.Join(root, "ipam")
			}
		}
		return nil
	})
}

// PodIPs returns the addresses the result assigns to the interface named
// ifName in sandbox netns.
func PodIPs(res *current.Result, netns, ifName string) []*current.IPConfig {
	var out []*current.IPConfig
	for _, ip := range res.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(res.Interfaces) {
			continue
		}
		iface := res.Interfaces[*ip.Interface]
		if iface.Sandbox == netns && iface.Name == ifName {
			out = append(out, ip)
		}
	}
	return out
}
