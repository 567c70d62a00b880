// Package doctor checks a node and a conflist for the vxvrf chain: vxvrf
// validate (offline) and vxvrf doctor (the node too). Each stage's config
// is checked by the stage's own binary (--validate runs the parseConfig
// ADD runs; STATUS probes what ADD needs), so the tool and ADD never
// disagree.
package doctor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Stages are the project's plugins, in chain order (naming.Stages).
var Stages = naming.Stages()

// Severity of a finding.
type Severity string

const (
	OK    Severity = "ok"
	Info  Severity = "info"
	Warn  Severity = "warn"
	Error Severity = "error"
)

// Finding is one result of a check, with the fix when it is not OK.
type Finding struct {
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// Findings is a list of findings.
type Findings []Finding

func (f *Findings) add(s Severity, check, msg, fix string) {
	*f = append(*f, Finding{Severity: s, Check: check, Message: msg, Fix: fix})
}

// Failed reports whether any finding is an error.
func (f Findings) Failed() bool {
	return slices.ContainsFunc(f, func(x Finding) bool { return x.Severity == Error })
}

// Write prints the findings for a person.
func (f Findings) Write(w io.Writer) {
	for _, x := range f {
		fmt.Fprintf(w, "%-5s %-28s %s\n", x.Severity, x.Check, x.Message)
		if x.Fix != "" {
			fmt.Fprintf(w, "      %-28s fix: %s\n", "", x.Fix)
		}
	}
}

// Binary finds a plugin binary in dirs.
func Binary(dirs []string, typ string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, typ)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no executable %q in %s", typ, strings.Join(dirs, ":"))
}

// stageConfig is plugin i's config as libcni hands it over: name and
// cniVersion injected.
func stageConfig(list *libcni.NetworkConfigList, i int, cniVersion string) ([]byte, error) {
	p, err := libcni.InjectConf(list.Plugins[i], map[string]any{"name": list.Name, "cniVersion": cniVersion})
	if err != nil {
		return nil, err
	}
	return p.Bytes, nil
}

// run executes a plugin binary with args, env and stdin; it returns stdout
// and the exit error.
func run(bin string, args, env []string, stdin []byte) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && stdout.Len() == 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), err
}

// cniError decodes a CNI error from a plugin's stdout.
func cniError(out []byte, err error) *types.Error {
	var e types.Error
	if json.Unmarshal(out, &e) == nil && e.Code != 0 {
		return &e
	}
	return cniutil.Errorf(types.ErrInternal, "%v: %s", err, strings.TrimSpace(string(out)))
}

// Validate checks a conflist offline: it loads as a runtime loads it, every
// plugin binary is installed and supports the conflist's cniVersion, and
// every vxvrf stage accepts its config (the stage's own --validate). The
// message of a refused stage is the one ADD gives.
func Validate(file string, binDirs []string) Findings {
	var f Findings
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		f.add(Error, "conflist", err.Error(), "fix the file's JSON: it must be a conflist (name, cniVersion, plugins)")
		return f
	}
	f.add(OK, "conflist", fmt.Sprintf("%s: network %q, cniVersion %s, %d plugins", file, list.Name, list.CNIVersion, len(list.Plugins)), "")
	for i, p := range list.Plugins {
		check := fmt.Sprintf("plugins[%d] %s", i, p.Network.Type)
		bin, err := Binary(binDirs, p.Network.Type)
		if err != nil {
			f.add(Error, check, err.Error(), "install the plugin binaries (make install, or the vxvrf DaemonSet), or fix the plugin's type")
			continue
		}
		if msg := versionSupport(bin, list.CNIVersion); msg != "" {
			f.add(Error, check, msg, "use a cniVersion every plugin supports, or upgrade the plugin")
			continue
		}
		if !slices.Contains(Stages, p.Network.Type) {
			f.add(Info, check, "not a vxvrf stage: its own keys are not validated here", "")
			continue
		}
		conf, err := stageConfig(list, i, list.CNIVersion)
		if err != nil {
			f.add(Error, check, err.Error(), "")
			continue
		}
		out, err := run(bin, []string{cniutil.ValidateFlag}, nil, conf)
		switch {
		case err != nil:
			e := cniError(out, err)
			f.add(Error, check, e.Msg, fmt.Sprintf("edit plugins[%d] of %s (ADD would fail with this message, CNI code %d)", i, file, e.Code))
		case string(bytes.TrimSpace(out)) != cniutil.ValidOutput:
			f.add(Warn, check, "the installed binary cannot validate offline (older than this vxvrf)", "install the plugin binaries of the same release as vxvrf")
		default:
			f.add(OK, check, "config valid", "")
		}
	}
	return f
}

// versionSupport asks the plugin (CNI VERSION) whether it supports v.
func versionSupport(bin, v string) string {
	out, err := run(bin, nil, []string{"CNI_COMMAND=VERSION"}, []byte(`{"cniVersion":"`+v+`"}`))
	if err != nil {
		return fmt.Sprintf("VERSION failed: %v", cniError(out, err).Msg)
	}
	info, err := (&version.PluginDecoder{}).Decode(out)
	if err != nil {
		return fmt.Sprintf("VERSION printed %q: %v", out, err)
	}
	if !slices.Contains(info.SupportedVersions(), v) {
		return fmt.Sprintf("does not support cniVersion %s (supports %s)", v, strings.Join(info.SupportedVersions(), ", "))
	}
	return ""
}
