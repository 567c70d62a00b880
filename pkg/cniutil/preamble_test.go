package cniutil

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

type testConf struct {
	types.PluginConf
	Bad bool `json:"bad"`
}

func (c *testConf) Spec() *types.PluginConf { return &c.PluginConf }

func parseTestConf(stdin []byte) (*testConf, error) {
	c := &testConf{}
	if err := DecodeStrict("test", stdin, c); err != nil {
		return nil, err
	}
	if c.Bad {
		return nil, InvalidConfig(errors.New("bad config"))
	}
	return c, nil
}

// TestPreambleOrder: with several things wrong, the first in the order
// netns guard, parse, attachment limits, prevResult is what is reported.
func TestPreambleOrder(t *testing.T) {
	const prev = `,"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"x","sandbox":"/x"}],"ips":[{"address":"10.0.0.2/24","interface":7}]}`
	for _, c := range []struct {
		name, netns, id, stdin string
		code                   uint
		msg                    string
	}{
		{"own netns first", "/proc/self/ns/net", "bad id!", `{"cniVersion":"1.1.0","name":"n","bad":true` + prev + `}`, types.ErrInvalidNetNS, "plugin's own network namespace"},
		{"then the config", "", "bad id!", `{"cniVersion":"1.1.0","name":"n","bad":true` + prev + `}`, types.ErrInvalidNetworkConfig, "bad config"},
		{"then the attachment limits", "", "bad id!", `{"cniVersion":"1.1.0","name":"n"` + prev + `}`, types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID"},
		{"then prevResult", "", "c1", `{"cniVersion":"1.1.0","name":"n"` + prev + `}`, types.ErrInvalidNetworkConfig, "malformed prevResult"},
	} {
		args := &skel.CmdArgs{ContainerID: c.id, Netns: c.netns, IfName: "eth0", StdinData: []byte(c.stdin)}
		_, _, err := Preamble(args, parseTestConf)
		var te *types.Error
		if !errors.As(err, &te) || te.Code != c.code || !strings.Contains(te.Msg, c.msg) {
			t.Errorf("%s: %v; want code %d with %q", c.name, err, c.code, c.msg)
		}
	}
}

func TestPreamblePrevResult(t *testing.T) {
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: []byte(`{"cniVersion":"1.1.0","name":"n"}`)}
	conf, prev, err := Preamble(args, parseTestConf)
	if err != nil || conf.Name != "n" || prev != nil {
		t.Fatalf("no prevResult: %+v %v %v", conf, prev, err)
	}
	_, _, err = ChainedPreamble(args, "test", parseTestConf)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || te.Msg != "test must be called as a chained plugin: missing prevResult" {
		t.Errorf("chained without prevResult: %v", err)
	}
	args.StdinData = []byte(`{"cniVersion":"1.1.0","name":"n","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"br0"}]}}`)
	conf, prev, err = ChainedPreamble(args, "test", parseTestConf)
	if err != nil || conf == nil || prev == nil || len(prev.Interfaces) != 1 || prev.Interfaces[0].Name != "br0" {
		t.Errorf("chained with prevResult: %+v %+v %v", conf, prev, err)
	}
}
