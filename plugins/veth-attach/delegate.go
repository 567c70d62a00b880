package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// nonIPAMStages are this project's chain stages that are not IPAM plugins:
// naming one as ipam.type would make veth-attach run a stage (itself, for
// veth-attach) as its IPAM.
var nonIPAMStages = slices.DeleteFunc(naming.Stages(), func(s string) bool { return s == naming.IPAMStage })

// depthEnv counts the delegations above a process: veth-attach sets it to
// its own depth + 1 in its IPAM's environment, and every process the IPAM
// starts inherits it. maxDepth bounds a loop that no name check can see
// (an IPAM that runs veth-attach again).
const (
	depthEnv = "VXVRF_DELEGATION_DEPTH"
	maxDepth = 3
)

// delegate is the IPAM plugin veth-attach runs (ipam.type).
type delegate struct {
	name  string
	depth int // this process's own depth
}

// newDelegate checks conf's ipam.type: nil when there is none; code 7 when
// it names one of our non-IPAM stages or when this process is already
// maxDepth delegations deep.
func newDelegate(ipamType string) (*delegate, error) {
	if ipamType == "" {
		return nil, nil
	}
	if slices.Contains(nonIPAMStages, ipamType) {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
			"ipam.type %q is a vxvrf chain stage, not an IPAM plugin (use lockfile-ipam or host-local)", ipamType)
	}
	depth, _ := strconv.Atoi(os.Getenv(depthEnv))
	depth = max(depth, 0)
	if depth >= maxDepth {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
			"ipam.type %q: already %d delegations deep (%s); refusing to delegate further (an IPAM that runs veth-attach again?)", ipamType, depth, depthEnv)
	}
	return &delegate{name: ipamType, depth: depth}, nil
}

func (d *delegate) exec(verb string) *delegateExec {
	return &delegateExec{verb: verb, depth: d.depth + 1}
}

// add runs the IPAM's ADD. A result that does not decode (or whose
// conversion panics on null entries) is 6, after an IPAM DEL: the IPAM
// succeeded, so it may hold addresses.
func (d *delegate) add(stdin []byte) (res *current.Result, err error) {
	ran := false
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("converting it failed: %v", r)
		}
		var e *types.Error
		if err != nil && ran && !errors.As(err, &e) {
			_ = d.del(stdin)
		}
		err = d.wrap("ADD", err)
	}()
	x := d.exec("ADD")
	x.ran = &ran
	r, err := invoke.DelegateAdd(context.TODO(), d.name, stdin, x)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(r)
}

func (d *delegate) del(stdin []byte) error {
	return d.wrap("DEL", invoke.DelegateDel(context.TODO(), d.name, stdin, d.exec("DEL")))
}

func (d *delegate) check(stdin []byte) error {
	return d.wrap("CHECK", invoke.DelegateCheck(context.TODO(), d.name, stdin, d.exec("CHECK")))
}

func (d *delegate) status(stdin []byte) error {
	return d.wrap("STATUS", invoke.DelegateStatus(context.TODO(), d.name, stdin, d.exec("STATUS")))
}

func (d *delegate) gc(stdin []byte) error {
	return d.wrap("GC", invoke.DelegateGC(context.TODO(), d.name, stdin, d.exec("GC")))
}

// wrap puts the verb and plugin in front of a delegated IPAM's error and
// keeps its CNI code (skel prints the innermost *types.Error, so a %w wrap
// alone would lose the context). delegateExec's own errors carry a code;
// the others come from decoding the IPAM's result (6).
func (d *delegate) wrap(verb string, err error) error {
	if err == nil {
		return nil
	}
	var e *types.Error
	if errors.As(err, &e) {
		return types.NewError(e.Code, fmt.Sprintf("ipam %s %s: %s", d.name, verb, e.Msg), e.Details)
	}
	return cniutil.Errorf(types.ErrDecodingFailure, "ipam %s %s: result: %v", d.name, verb, err)
}

// delegateExec runs the IPAM binary for one verb. Unlike invoke.RawExec it
// never returns a code-0 error: an IPAM that exits non-zero without a CNI
// error on stdout (crash, OOM kill, a message without a code) is 999
// naming its exit status; a binary missing from CNI_PATH is 7 (50 for
// STATUS: ADD cannot be served). Its environment carries the depth.
type delegateExec struct {
	version.PluginDecoder
	verb  string
	depth int
	ran   *bool // set when the plugin exited 0
}

func (x *delegateExec) FindInPath(plugin string, paths []string) (string, error) {
	p, err := invoke.FindInPath(plugin, paths)
	if err != nil {
		code := types.ErrInvalidNetworkConfig
		if x.verb == "STATUS" {
			code = cniutil.ErrPluginNotAvailable
		}
		return "", cniutil.Errorf(code, "ipam.type names no plugin in CNI_PATH: %v", err)
	}
	return p, nil
}

// maxStderr bounds how much of a failed IPAM's stderr goes into the error.
const maxStderr = 2048

func (x *delegateExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	c := exec.CommandContext(ctx, pluginPath)
	c.Env = append(slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		return len(kv) > len(depthEnv) && kv[:len(depthEnv)+1] == depthEnv+"="
	}), depthEnv+"="+strconv.Itoa(x.depth))
	c.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if stderr.Len() > 0 {
		_, _ = os.Stderr.Write(stderr.Bytes())
	}
	if err == nil {
		if x.ran != nil {
			*x.ran = true
		}
		return stdout.Bytes(), nil
	}
	var e types.Error
	if json.Unmarshal(stdout.Bytes(), &e) == nil && e.Code != 0 {
		return nil, &e
	}
	tail := stderr.Bytes()
	if len(tail) > maxStderr {
		tail = tail[len(tail)-maxStderr:]
	}
	msg := fmt.Sprintf("%s exited without a CNI error (%v)", filepath.Base(pluginPath), err)
	if stdout.Len() > 0 {
		msg += fmt.Sprintf("; stdout %q", truncate(stdout.Bytes(), 256))
	}
	return nil, types.NewError(types.ErrInternal, msg, string(tail))
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
