package cniutil

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Conf is what Preamble needs of a stage's parsed config: its spec keys
// (name, cniVersion, prevResult), the types.PluginConf it embeds.
type Conf interface {
	Spec() *types.PluginConf
}

// Preamble is the start of every stage's ADD and CHECK, in the project's
// one order:
//  1. the netns guard (GuardNetNS): the node's own netns is refused;
//  2. the stage's parse of stdin, which validates the whole config;
//  3. the limits of the derived names (CheckAttachment);
//  4. prevResult (PrevResult): nil when the config has none.
//
// Nothing is changed on the node before it returns.
func Preamble[C Conf](args *skel.CmdArgs, parse func(stdin []byte) (C, error)) (C, *current.Result, error) {
	var zero C
	if err := GuardNetNS(args.Netns); err != nil {
		return zero, nil, err
	}
	conf, err := parse(args.StdinData)
	if err != nil {
		return zero, nil, err
	}
	if err := CheckAttachment(args, conf.Spec().Name); err != nil {
		return zero, nil, err
	}
	prev, err := PrevResult(conf.Spec())
	if err != nil {
		return zero, nil, err
	}
	return conf, prev, nil
}

// ChainedPreamble is Preamble for a stage that needs prevResult: a config
// without one is code 7 ("<plugin> must be called as a chained plugin").
func ChainedPreamble[C Conf](args *skel.CmdArgs, plugin string, parse func(stdin []byte) (C, error)) (C, *current.Result, error) {
	conf, prev, err := Preamble(args, parse)
	if err == nil && prev == nil {
		err = missingPrevResult(plugin)
	}
	if err != nil {
		var zero C
		return zero, nil, err
	}
	return conf, prev, nil
}
