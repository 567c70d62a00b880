package install

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxvrf/cni/pkg/buildinfo"
)

// Options says what to install where. Paths are inside Root.
type Options struct {
	// Root is prepended to BinDir and ConfDir (DESTDIR-style); "" or "/" is the
	// real root. In the DaemonSet the host's directories are mounted at their
	// own paths, so Root stays "/".
	Root string
	// SrcDir holds the plugin binaries to copy (in the image: /opt/vxvrf/bin).
	SrcDir string
	// Plugins are the binaries' names; empty: every regular executable file in SrcDir.
	Plugins []string
	// BinDir is the CNI binary directory, default /opt/cni/bin.
	BinDir string
	// ConfDir is the CNI config directory, default /etc/cni/net.d.
	ConfDir string
	// Config is the cluster config file; empty: binaries only.
	Config string
	// Local is what the node knows about itself (see LocalFromEnv).
	Local Local
	// Lookup resolves a node name when no address is known; nil: never.
	Lookup func(string) ([]net.IP, error)
	// Logf logs progress; nil: silent.
	Logf func(format string, args ...any)
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) dir(p, def string) string {
	if p == "" {
		p = def
	}
	root := o.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, p)
}

// BinDirPath is where the binaries go (Root joined).
func (o *Options) BinDirPath() string { return o.dir(o.BinDir, "/opt/cni/bin") }

// ConfDirPath is where the conflist goes (Root joined).
func (o *Options) ConfDirPath() string { return o.dir(o.ConfDir, "/etc/cni/net.d") }

func (o *Options) PluginNames() ([]string, error) {
	if len(o.Plugins) > 0 {
		return o.Plugins, nil
	}
	entries, err := os.ReadDir(o.SrcDir)
	if err != nil {
		return nil, fmt.Errorf("list plugin binaries: %w", err)
	}
	var names []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 || e.Name()[0] == '.' {
			continue
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no plugin binaries in %s", o.SrcDir)
	}
	return names, nil
}

// InstallBinaries copies the plugins from SrcDir into BinDir atomically with
// mode 0755; identical files are skipped. It returns the paths it wrote.
func (o *Options) InstallBinaries() ([]string, error) {
	names, err := o.PluginNames()
	if err != nil {
		return nil, err
	}
	dst := o.BinDirPath()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := RemoveStaleTemps(dst); err != nil {
		return nil, err
	}
	var written []string
	for _, n := range names {
		if filepath.Base(n) != n || n == "." || n == ".." {
			return written, fmt.Errorf("plugin name %q is not a file name", n)
		}
		data, err := os.ReadFile(filepath.Join(o.SrcDir, n))
		if err != nil {
			return written, fmt.Errorf("read plugin binary: %w", err)
		}
		p := filepath.Join(dst, n)
		changed, err := WriteFileAtomic(p, data, 0o755)
		if err != nil {
			return written, err
		}
		if changed {
			written = append(written, p)
			o.logf("installed %s", p)
		}
	}
	return written, nil
}

// binariesPresent is a cheap check (stat only) that every plugin is in
// BinDir with the size of its source and mode 0755.
func (o *Options) binariesPresent() bool {
	names, err := o.PluginNames()
	if err != nil {
		return false
	}
	for _, n := range names {
		src, err1 := os.Stat(filepath.Join(o.SrcDir, n))
		dst, err2 := os.Stat(filepath.Join(o.BinDirPath(), n))
		if err1 != nil || err2 != nil || src.Size() != dst.Size() || dst.Mode().Perm() != 0o755 {
			return false
		}
	}
	return true
}

// Conflist reads the cluster config and renders this node's conflist. It
// returns the target path and the content; it writes nothing.
func (o *Options) Conflist() (string, []byte, error) {
	data, err := os.ReadFile(o.Config)
	if err != nil {
		return "", nil, fmt.Errorf("read cluster config: %w", err)
	}
	c, err := ParseCluster(data)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", o.Config, err)
	}
	v, err := c.Resolve(o.Local, o.Lookup)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", o.Config, err)
	}
	out, err := Render(c, v)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", o.Config, err)
	}
	return filepath.Join(o.ConfDirPath(), c.ConflistName), out, nil
}

// InstallConflist renders this node's conflist and writes it atomically
// (mode 0644). On any error nothing is written: the old conflist stays.
func (o *Options) InstallConflist() (path string, changed bool, err error) {
	path, out, err := o.Conflist()
	if err != nil {
		return "", false, err
	}
	return o.WriteConflist(path, out)
}

// WriteConflist writes a rendered conflist to path atomically (mode 0644),
// removing temporary files a killed writer left in its directory first.
func (o *Options) WriteConflist(path string, out []byte) (string, bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("create %s: %w", dir, err)
	}
	if _, err := RemoveStaleTemps(dir); err != nil {
		return "", false, err
	}
	changed, err := WriteFileAtomic(path, out, 0o644)
	if err != nil {
		return "", false, err
	}
	if changed {
		o.logf("rendered %s for node %s", path, o.Local.Name)
	}
	return path, changed, nil
}

// Once installs the binaries, then (with a Config) the conflist: the
// binaries first, so a runtime never sees a conflist whose plugins are missing.
func (o *Options) Once() error {
	if _, err := o.InstallBinaries(); err != nil {
		return err
	}
	if o.Config == "" {
		return nil
	}
	_, _, err := o.InstallConflist()
	return err
}

// Event reports one pass of Watch.
type Event struct {
	// Path is the conflist (empty when rendering failed).
	Path string
	// Changed: the conflist or a binary was written in this pass.
	Changed bool
	// Err: the pass failed; the files from before are untouched.
	Err error
}

// Watch runs Once, then polls the cluster config (content, not mtime: a
// ConfigMap volume swaps a symlink) and the installed files every interval,
// re-rendering when the config changed or an installed file went missing or
// was edited. A bad config is logged once per distinct content and leaves the
// old files in place; Watch keeps going until ctx ends. notify (may be nil)
// gets every pass's outcome.
func (o *Options) Watch(ctx context.Context, interval time.Duration, notify func(Event)) error {
	if o.Config == "" {
		return errors.New("watch needs a cluster config")
	}
	var lastErr string
	var lastSum [32]byte
	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ev := o.pass(first)
		first = false
		sum := sha256.Sum256(o.readConfig())
		if ev.Err != nil {
			if msg := ev.Err.Error(); msg != lastErr || sum != lastSum {
				o.logf("error (old files left in place): %v", ev.Err)
				lastErr = msg
			}
		} else {
			if lastErr != "" {
				o.logf("config good again: %s up to date", ev.Path)
			}
			lastErr = ""
		}
		lastSum = sum
		if notify != nil {
			notify(ev)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (o *Options) readConfig() []byte {
	b, _ := os.ReadFile(o.Config)
	return b
}

func (o *Options) pass(force bool) Event {
	var ev Event
	if force || !o.binariesPresent() {
		written, err := o.InstallBinaries()
		if err != nil {
			return Event{Err: err}
		}
		ev.Changed = len(written) > 0
	}
	path, changed, err := o.InstallConflist()
	if err != nil {
		ev.Err = err
		return ev
	}
	ev.Path = path
	ev.Changed = ev.Changed || changed
	return ev
}

// ParseFlags parses args into fl the way both commands do: no positional
// arguments, and --help or --version (the flag named "version") answered
// by printing and done = true.
func ParseFlags(fl *flag.FlagSet, args []string, command string) (done bool, err error) {
	version := fl.Bool("version", false, "print the version and exit")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, err
	}
	if fl.NArg() > 0 {
		return true, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *version {
		fmt.Println(buildinfo.About(command))
		return true, nil
	}
	return false, nil
}

// AddFlags registers the flags every command of this package shares
// (--root, --src, --plugins, --cni-bin-dir, --cni-conf-dir) on fl, bound to
// o. Call the returned function after fl.Parse: it applies --plugins.
func (o *Options) AddFlags(fl *flag.FlagSet) (apply func()) {
	fl.StringVar(&o.Root, "root", "/", "prefix for the target directories (DESTDIR-style)")
	fl.StringVar(&o.SrcDir, "src", "/opt/vxvrf/bin", "directory holding the plugin binaries to copy")
	plugins := fl.String("plugins", "", "comma-separated plugin names to copy (default: every executable file in --src)")
	fl.StringVar(&o.BinDir, "cni-bin-dir", "/opt/cni/bin", "CNI binary directory (inside --root)")
	fl.StringVar(&o.ConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI config directory (inside --root)")
	return func() {
		if *plugins != "" {
			o.Plugins = strings.FieldsFunc(*plugins, func(r rune) bool { return r == ',' || r == ' ' })
		}
	}
}
