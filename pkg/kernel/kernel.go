// Package kernel answers whether the running kernel has a feature, without
// loading modules or creating devices (vxvrf doctor, and infra-ensure for
// bridge and vxlan), and holds the netlink dump netlinksafe does not wrap
// (NeighList) and dumps the kernel filters (LinksOfKind, LinksOfMaster, TableRoutes).
package kernel

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModulesDir is where the running kernel's module lists live.
var ModulesDir = func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}()

// Support is what Has found for a feature.
type Support int

const (
	Unknown   Support = iota // not loaded, and no module lists to look at
	Missing                  // neither loaded, built in nor loadable
	Loaded                   // in /sys/module (loaded, or built in with parameters)
	Available                // built in or loadable: the kernel loads it on first use
)

func (s Support) String() string {
	return [...]string{"unknown", "missing", "loaded", "available (built in or loadable)"}[s]
}

// InSysModule reports whether module name is in /sys/module: loaded, or built
// in with parameters or a version (bridge, vxlan and vrf declare one). One
// stat; no module lists are read.
func InSysModule(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/module", name))
	return err == nil
}

// Has reports whether module name is loaded, built in or loadable.
func Has(name string) Support {
	if InSysModule(name) {
		return Loaded
	}
	lists := 0
	for _, list := range []string{"modules.builtin", "modules.dep"} {
		b, err := os.ReadFile(filepath.Join(ModulesDir, list))
		if err != nil {
			continue
		}
		lists++
		for _, line := range strings.Split(string(b), "\n") {
			path, _, _ := strings.Cut(line, ":")
			base := filepath.Base(path)
			if base == name+".ko" || strings.HasPrefix(base, name+".ko.") {
				return Available
			}
		}
	}
	if lists == 0 {
		return Unknown // a built-in feature without parameters shows nowhere else
	}
	return Missing
}
