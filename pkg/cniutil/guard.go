package cniutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/buildinfo"
)

// Option changes how PluginMain runs a stage.
type Option func(*mainOptions)

type mainOptions struct {
	delReadsNoConfig bool
}

// DelReadsNoConfig declares that the stage's DEL takes nothing from its
// config (it releases nothing per attachment; vrf-vxlan-bridge's shared
// devices go at GC). PluginMain then runs that DEL without skel, whose
// checks of the config (JSON, network name, cniVersion) and of the
// environment would otherwise refuse some teardowns: a pod sandbox stays
// removable whatever the config has become. The DEL is still logged and
// guarded like every verb.
func DelReadsNoConfig() Option { return func(o *mainOptions) { o.delReadsNoConfig = true } }

// PluginMain runs a stage through skel with every verb under a last-resort
// recover: a panic becomes CNI error 999 naming the plugin (the stack goes
// to stderr) instead of an empty stdout. The verb's own deferred rollback
// runs first, while the panic unwinds through it. DEL accepts
// TeardownVersions (any config at all with DelReadsNoConfig).
func PluginMain(plugin string, funcs skel.CNIFuncs, opts ...Option) {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	wrap := func(verb string, fn func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
		if fn == nil {
			return nil
		}
		return func(args *skel.CmdArgs) error { return Guard(plugin+" "+verb, func() error { return fn(args) }) }
	}
	versions := Versions
	if os.Getenv("CNI_COMMAND") == "DEL" {
		versions = TeardownVersions
		if o.delReadsNoConfig && funcs.Del != nil {
			del := operator(plugin, skel.CNIFuncs{Del: wrap("DEL", funcs.Del)}).Del
			if err := runDel(del, os.Stdin); err != nil {
				_ = err.Print()
				os.Exit(1)
			}
			return
		}
	}
	skel.PluginMainFuncs(operator(plugin, skel.CNIFuncs{
		Add:    wrap("ADD", funcs.Add),
		Check:  wrap("CHECK", funcs.Check),
		Del:    wrap("DEL", funcs.Del),
		Status: wrap("STATUS", funcs.Status),
		GC:     wrap("GC", funcs.GC),
	}), versions, buildinfo.About(plugin))
}

// runDel runs a DEL that reads no config (DelReadsNoConfig): the CmdArgs
// come from the environment as skel reads them, unchecked, stdin is read
// whole (the runtime writes it all) and passed on as it is.
func runDel(del func(*skel.CmdArgs) error, stdin io.Reader) *types.Error {
	data, err := io.ReadAll(stdin)
	if err != nil {
		return Errorf(types.ErrIOFailure, "error reading from stdin: %v", err)
	}
	err = del(&skel.CmdArgs{
		ContainerID:   os.Getenv("CNI_CONTAINERID"),
		Netns:         os.Getenv("CNI_NETNS"),
		IfName:        os.Getenv("CNI_IFNAME"),
		Args:          os.Getenv("CNI_ARGS"),
		Path:          os.Getenv("CNI_PATH"),
		NetnsOverride: os.Getenv("CNI_NETNS_OVERRIDE"),
		StdinData:     data,
	})
	if err == nil {
		return nil
	}
	var e *types.Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(types.ErrInternal, "%v", err)
}

// TeardownVersions is what DEL accepts: every released spec version, so
// that a config whose cniVersion is (or became) older than Versions still
// tears down; a pod sandbox must always be removable. DEL prints nothing
// on success, so no result of an old version is ever produced.
var TeardownVersions = version.PluginSupports("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Guard runs fn and turns a panic in it into CNI error 999 naming where.
func Guard(where string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(where, r)
		}
	}()
	return fn()
}

// InNS runs fn inside netns like netns.Do, but a panic in fn (which runs on
// a goroutine of its own, where no caller's recover reaches) comes back as
// an error, so the caller's rollback still runs and the process answers.
func InNS(netns ns.NetNS, fn func(ns.NetNS) error) error {
	return netns.Do(func(host ns.NetNS) error {
		return Guard("in netns "+netns.Path(), func() error { return fn(host) })
	})
}

func panicError(where string, r any) *types.Error {
	fmt.Fprintf(os.Stderr, "%s: internal error: %v\n%s", where, r, debug.Stack())
	return Errorf(types.ErrInternal, "%s: internal error: %v (please report this with the config that caused it)", where, r)
}
