package main

import (
	_ "embed"

	"github.com/vxvrf/cni/pkg/cniutil"
)

//go:embed README.md
var readme string

// The config keys and their documentation for --help, and the offline
// validation for --validate (vxvrf validate and doctor run it): the same
// parseConfig ADD runs.
func init() {
	cniutil.Describe(&NetConf{}, func(stdin []byte) error { _, err := parseConfig(stdin, ""); return err }, readme)
}
