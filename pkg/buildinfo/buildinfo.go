// Package buildinfo carries the version string stamped into every plugin binary.
package buildinfo

import (
	"fmt"
	"runtime"
)

// Version is set at build time with -ldflags "-X github.com/vxvrf/cni/pkg/buildinfo.Version=...".
var Version = "dev"

// About is the string skel prints when a plugin runs without CNI_COMMAND.
func About(plugin string) string {
	return fmt.Sprintf("vxvrf %s %s (%s, %s/%s)", plugin, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
