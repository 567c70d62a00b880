package main

import "github.com/vxvrf/cni/pkg/cniutil"

// The config keys for --help and the offline validation for --validate
// (vxvrf validate and doctor run it): the same parseConfig ADD runs.
func init() {
	cniutil.Describe(&NetConf{}, func(stdin []byte) error { _, err := parseConfig(stdin); return err })
}
