package cniutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/buildinfo"
	vlog "github.com/vxvrf/cni/pkg/log"
)

// described is the plugin's config type and its offline validation, set
// by Describe from the plugin's init.
var described struct {
	conf     any
	validate func(stdin []byte) error
	readme   string
}

// Describe registers the plugin's config struct (for --help) and the
// validation ADD runs on its config before touching anything (for
// --validate, which vxvrf validate and doctor call, so that they and ADD
// never disagree). Call it from an init function of the plugin.
// readme is the plugin's README.md: --help prints its Configuration
// section, the documented meaning of each key.
func Describe(conf any, validate func(stdin []byte) error, readme string) {
	described.conf, described.validate, described.readme = conf, validate, readme
}

// section returns the body of the "## title" section of a markdown text.
func section(md, title string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "## ") {
			in = strings.TrimSpace(l[3:]) == title
			continue
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	return strings.Trim(b.String(), "\n")
}

// ValidateFlag is the flag that makes a plugin validate the config on its
// stdin offline and exit: 0 printing ValidOutput when ADD would accept
// it, else 1 with the CNI error ADD would print.
const ValidateFlag = "--validate"

// operator is what PluginMain adds for the operator: a plugin run by hand
// answers --help, --version and --validate and exits; run by a runtime,
// each verb logs its line (pkg/log), outside the panic guard so a panic
// is logged as the 999 it becomes.
func operator(plugin string, funcs skel.CNIFuncs) skel.CNIFuncs {
	if ok, code := HandleCLI(plugin, os.Args[1:], os.Stdin, os.Stdout); ok {
		os.Exit(code)
	}
	return vlog.Wrap(plugin, funcs)
}

// ValidOutput is what --validate prints for a valid config (a binary
// without --validate prints nothing on stdout and exits 0).
const ValidOutput = `{"valid":true}`

// HandleCLI answers the command-line flags a plugin takes when run by hand
// (--help, --version, --validate) and reports whether it did; a runtime
// passes no arguments.
func HandleCLI(plugin string, args []string, stdin io.Reader, stdout io.Writer) (handled bool, exit int) {
	if len(args) == 0 {
		return false, 0
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, Help(plugin))
		return true, 0
	case "-v", "-version", "--version", "version":
		fmt.Fprintln(stdout, buildinfo.About(plugin))
		return true, 0
	case ValidateFlag:
		if described.validate == nil {
			return true, printError(stdout, Errorf(types.ErrInternal, "%s: no offline validation registered", plugin))
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return true, printError(stdout, Errorf(types.ErrIOFailure, "%s: read stdin: %v", plugin, err))
		}
		if err := described.validate(b); err != nil {
			return true, printError(stdout, err)
		}
		fmt.Fprintln(stdout, ValidOutput)
		return true, 0
	}
	fmt.Fprintf(os.Stderr, "%s: unknown argument %q (try --help)\n", plugin, args[0])
	return true, 2
}

func printError(w io.Writer, err error) int {
	var e *types.Error
	if !errors.As(err, &e) {
		e = Errorf(types.ErrInternal, "%v", err)
	}
	_ = json.NewEncoder(w).Encode(e)
	return 1
}

// Help is the plugin's --help: what it is and its config keys, generated
// from the config struct's json tags.
func Help(plugin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", buildinfo.About(plugin))
	fmt.Fprintf(&b, "A stage of the vxvrf CNI chain: the container runtime runs it (CNI_COMMAND=ADD|DEL|CHECK|STATUS|GC,\nthe config on stdin), not a person. See its README for the behaviour of each command.\n\n")
	fmt.Fprintf(&b, "Usage:\n  %s --help       this text\n  %s --version    the build version\n  %s --validate   check the plugin config on stdin as ADD does, offline (exit 0, or 1 with the CNI error)\n\n", plugin, plugin, plugin)
	if described.conf != nil {
		fmt.Fprintf(&b, "Config keys (this plugin's object in the conflist; unknown keys are refused):\n")
		var rows [][2]string
		keyRows(reflect.TypeOf(described.conf), "", &rows, true)
		keyRows(reflect.TypeOf(vlog.Config{}), "log.", &rows, false)
		width := 0
		for _, r := range rows {
			width = max(width, len(r[0]))
		}
		for _, r := range rows {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, r[0], r[1])
		}
		b.WriteString("\n")
	}
	if doc := section(described.readme, "Configuration"); doc != "" {
		fmt.Fprintf(&b, "Configuration (from the plugin's README.md):\n\n%s\n\n", doc)
	}
	fmt.Fprintf(&b, "Keys the spec, libcni and runtimes add are accepted too: %s, cni.dev/*; the contents of runtimeConfig and args are the runtime's.\n", strings.Join(specKeys, ", "))
	return b.String()
}

// keyRows lists the JSON keys of t with their types, descending into
// sections; top skips the spec keys of the embedded types.PluginConf.
func keyRows(t reflect.Type, prefix string, rows *[][2]string, top bool) {
	fields := jsonFields(t)
	for _, k := range sortedKeys(fields) {
		if top && (slices.Contains(specKeys, k) && nonSpec(t, k) == nil || strings.HasPrefix(k, specKeyPrefix)) {
			continue
		}
		f := fields[k]
		for f.Kind() == reflect.Pointer {
			f = f.Elem()
		}
		elem := f
		suffix := ""
		for !isLeaf(elem) && (elem.Kind() == reflect.Slice || elem.Kind() == reflect.Array) {
			elem = elem.Elem()
			for elem.Kind() == reflect.Pointer {
				elem = elem.Elem()
			}
			suffix += "[]"
		}
		if elem.Kind() == reflect.Struct && !isLeaf(elem) && !opaqueKeys[k] {
			*rows = append(*rows, [2]string{prefix + k, "object" + strings.Repeat(" list", len(suffix)/2)})
			keyRows(elem, prefix+k+suffix+".", rows, false)
			continue
		}
		*rows = append(*rows, [2]string{prefix + k, jsonType(f)})
	}
}

// nonSpec returns the type of key k declared by t itself (not by the
// embedded types.PluginConf), or nil: a plugin that declares its own
// ipam, args or runtimeConfig section documents it.
func nonSpec(t reflect.Type, k string) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name == k && !f.Anonymous {
			if k == "args" || k == "runtimeConfig" {
				return nil // their contents are the runtime's
			}
			return f.Type
		}
	}
	return nil
}

// jsonType names a Go type in JSON terms for --help.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isLeaf(t) {
		if t.Kind() == reflect.Struct && t.Name() == "Route" {
			return "object (route: dst, gw, ...)"
		}
		return "string (" + strings.ToLower(t.Name()) + ")"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return jsonType(t.Elem()) + " list"
	case reflect.Map:
		return "object of " + jsonType(t.Elem())
	}
	if w, ok := kindWords[t.Kind()]; ok {
		return w.help
	}
	return t.Kind().String()
}
