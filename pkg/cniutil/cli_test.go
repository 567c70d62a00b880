package cniutil

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestHandleCLI(t *testing.T) {
	Describe(&strictConf{}, func(stdin []byte) error {
		c := &strictConf{}
		return DecodeStrict("p", stdin, c)
	}, "# p\n\n## Configuration\n\n| key | meaning |\n| `hairpin` | hairpin mode |\n\n## Behaviour\n\nnot shown\n")
	var out bytes.Buffer
	if ok, code := HandleCLI("p", []string{"--help"}, nil, &out); !ok || code != 0 {
		t.Fatal(ok, code)
	}
	for _, want := range []string{"masquerade  ", "true|false", "vxlan.remotes", "string list", "ranges[][].vni", "log.file", "log.level", "sysctls", "| `hairpin` | hairpin mode |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "prevResult  ") || strings.Contains(out.String(), "hidden") || strings.Contains(out.String(), "not shown") {
		t.Errorf("--help lists spec or unexported keys:\n%s", out.String())
	}
	out.Reset()
	if ok, code := HandleCLI("p", []string{ValidateFlag}, strings.NewReader(`{"name":"n","hairpn":true}`), &out); !ok || code != 1 {
		t.Fatal(ok, code)
	}
	var e types.Error
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.Code != 7 || !strings.Contains(e.Msg, `did you mean "hairpin"`) {
		t.Errorf("--validate printed %q", out.String())
	}
	out.Reset()
	if ok, code := HandleCLI("p", []string{ValidateFlag}, strings.NewReader(`{"name":"n","hairpin":true}`), &out); !ok || code != 0 || strings.TrimSpace(out.String()) != ValidOutput {
		t.Errorf("valid config: %v %d %q", ok, code, out.String())
	}
	if ok, _ := HandleCLI("p", nil, nil, &out); ok {
		t.Error("no arguments must run the CNI plugin")
	}
}
