// Command vxvrf is the node tool of the vxvrf CNI chain: it shows what the
// chain built on this node (inspect), checks the node and a conflist
// (doctor) and validates a conflist offline (validate). It is installed
// next to the plugins; it is not a CNI plugin.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxvrf/cni/pkg/buildinfo"
	"github.com/vxvrf/cni/pkg/doctor"
	"github.com/vxvrf/cni/pkg/inspect"
)

const usage = `vxvrf: the node tool of the vxvrf CNI chain.

Usage:
  vxvrf inspect  [--network N] [--json] [--conf-dir D | --conflist F]
                 what the chain built on this node, per network: VRF and table, bridge,
                 VXLAN (VNI, mode, MTU, local), the flood list against the configured peers,
                 every attachment (container ID, ifname, host veth, pod address, lease,
                 firewall objects, iptables or nftables) and what is orphaned (a lease without a veth, a veth
                 without a lease, rules without an attachment), with the fix
  vxvrf doctor   [--conflist F] [--cni-bin-dir D] [--json]
                 checks this node for the conflist: kernel features, uplink and MTU, each
                 stage's config and STATUS (run by the stage's own binary, as ADD does),
                 remotes, sysctls; every finding with its fix; exit 1 when one is an error
  vxvrf validate [--cni-bin-dir D] [--json] F.conflist
                 validates a conflist offline, stage by stage with the stages' own
                 validation (the message is the one ADD would give); exit 1 when invalid
  vxvrf version  the build version

"vxvrf COMMAND --help" describes a command's flags. Exit codes: 0 fine, 1 a
finding is an error (or the command failed), 2 bad usage.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-v", "-version", "--version", "version":
		fmt.Fprintln(stdout, buildinfo.About("vxvrf"))
		return 0
	case "inspect":
		return cmdInspect(args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "vxvrf: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// flags is a FlagSet whose --help prints the command's usage to stdout.
func flags(name, synopsis string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vxvrf "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: vxvrf %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse returns -1 to go on, else the exit code (0 after --help).
func parse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	return -1
}

// defaultBinDirs: the directory vxvrf is installed in (next to the
// plugins), then CNI_PATH, then /opt/cni/bin.
func defaultBinDirs() string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if p := os.Getenv("CNI_PATH"); p != "" {
		dirs = append(dirs, filepath.SplitList(p)...)
	}
	return strings.Join(append(dirs, "/opt/cni/bin"), ":")
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func cmdInspect(args []string, stdout, stderr io.Writer) int {
	fs := flags("inspect", "[--network N] [--json] [--conf-dir D | --conflist F]", stdout, stderr)
	network := fs.String("network", "", "only this network")
	asJSON := fs.Bool("json", false, "print JSON")
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "where the runtime reads conflists")
	conflist := fs.String("conflist", "", "read the network from this conflist instead of --conf-dir")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	files := []string{*conflist}
	if *conflist == "" {
		var err error
		if files, err = inspect.Conflists(*confDir); err != nil {
			fmt.Fprintf(stderr, "vxvrf inspect: %v\n", err)
			return 1
		}
	}
	r, err := inspect.Collect(files, *network)
	if err != nil {
		fmt.Fprintf(stderr, "vxvrf inspect: %v\n", err)
		return 1
	}
	if *asJSON {
		writeJSON(stdout, r)
	} else {
		r.WriteText(stdout)
	}
	return 0
}

func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flags("doctor", "[--conflist F] [--cni-bin-dir D] [--json]", stdout, stderr)
	conflist := fs.String("conflist", "", "the conflist to check the node for (default: the first vxvrf conflist in /etc/cni/net.d)")
	binDir := fs.String("cni-bin-dir", defaultBinDirs(), "where the plugin binaries are (colon separated)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	file := *conflist
	if file == "" {
		if files, _ := inspect.Conflists("/etc/cni/net.d"); len(files) > 0 {
			file = files[0]
		}
	}
	return report(doctor.Doctor(file, filepath.SplitList(*binDir)), *asJSON, stdout)
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flags("validate", "[--cni-bin-dir D] [--json] F.conflist", stdout, stderr)
	binDir := fs.String("cni-bin-dir", defaultBinDirs(), "where the plugin binaries are (colon separated)")
	asJSON := fs.Bool("json", false, "print JSON")
	// Flags may follow the file too.
	var files []string
	for {
		if code := parse(fs, args); code >= 0 {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return 2
	}
	return report(doctor.Validate(files[0], filepath.SplitList(*binDir)), *asJSON, stdout)
}

func report(f doctor.Findings, asJSON bool, w io.Writer) int {
	if asJSON {
		writeJSON(w, f)
	} else {
		f.Write(w)
	}
	if f.Failed() {
		return 1
	}
	return 0
}
