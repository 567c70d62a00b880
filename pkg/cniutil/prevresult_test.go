package cniutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func parsePrev(t *testing.T, version, prev string) error {
	t.Helper()
	var conf types.PluginConf
	stdin := fmt.Sprintf(`{"cniVersion":%q,"name":"n","type":"t","prevResult":%s}`, version, prev)
	if err := json.Unmarshal([]byte(stdin), &conf); err != nil {
		t.Fatalf("test input %s: %v", stdin, err)
	}
	_, err := PrevResult(&conf)
	return err
}

func TestPrevResultRefusesMalformedEntries(t *testing.T) {
	bad := map[string]string{
		"null interface":         `{"interfaces":[null]}`,
		"null ip":                `{"ips":[null]}`,
		"null route":             `{"routes":[null]}`,
		"ip without prefix":      `{"ips":[{"address":"10.0.0.2"}]}`,
		"ip without address":     `{"ips":[{"gateway":"10.0.0.1"}]}`,
		"ip address not string":  `{"ips":[{"address":5}]}`,
		"interface out of range": `{"interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":1}]}`,
		"negative interface":     `{"interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":-1}]}`,
		"interface not a number": `{"ips":[{"address":"10.0.0.2/24","interface":"0"}]}`,
		"route without dst":      `{"routes":[{"gw":"10.0.0.1"}]}`,
		"route with bad gw":      `{"routes":[{"dst":"0.0.0.0/0","gw":"x"}]}`,
		"bad gateway":            `{"ips":[{"address":"10.0.0.2/24","gateway":"nope"}]}`,
		"ips not a list":         `{"ips":{"address":"10.0.0.2/24"}}`,
		"interface name number":  `{"interfaces":[{"name":7}]}`,
		"dns a list":             `{"dns":[]}`,
	}
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for name, prev := range bad {
			err := parsePrev(t, v, prev)
			var e *types.Error
			if !errors.As(err, &e) || (e.Code != types.ErrInvalidNetworkConfig && e.Code != types.ErrDecodingFailure) {
				t.Errorf("%s %s: got %v, want code 6 or 7", v, name, err)
			}
		}
	}
}

func TestPrevResultAcceptsWellFormed(t *testing.T) {
	good := []string{
		`{}`,
		`{"interfaces":[],"ips":[],"routes":[]}`,
		`{"interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/x"}],
		  "ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0},{"address":"fd00::2/64"}],
		  "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}],"dns":{"nameservers":["10.0.0.10"]}}`,
	}
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, prev := range good {
			if v < "1.0.0" {
				// 0.x results name each address's family.
				prev = replaceVersionless(prev)
			}
			if err := parsePrev(t, v, prev); err != nil {
				t.Errorf("%s %s: %v", v, prev, err)
			}
		}
	}
}

func replaceVersionless(prev string) string {
	var r map[string]any
	_ = json.Unmarshal([]byte(prev), &r)
	if ips, ok := r["ips"].([]any); ok {
		for _, e := range ips {
			ip := e.(map[string]any)
			ip["version"] = "4"
			if addr, _ := ip["address"].(string); len(addr) > 0 && addr[0] == 'f' {
				ip["version"] = "6"
			}
		}
	}
	b, _ := json.Marshal(r)
	return string(b)
}
