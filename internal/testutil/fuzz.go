package testutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Fuzz seeds and properties shared by the stages' native fuzz targets
// (*_fuzz_test.go). The seeds are the stage's plugin objects from every
// shipped conflist, completed the way libcni completes them (name,
// cniVersion, prevResult), plus hostile variants of them.

// ShippedConflists returns the conflists the project ships: conflist/*.conflist
// and the "conflist" of every deploy/examples/*.json.
func ShippedConflists(tb testing.TB) [][]byte {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	files, _ := filepath.Glob(filepath.Join(root, "conflist", "*.conflist"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	examples, _ := filepath.Glob(filepath.Join(root, "deploy", "examples", "*.json"))
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var ex struct {
			Conflist json.RawMessage `json:"conflist"`
		}
		if json.Unmarshal(b, &ex) == nil && len(ex.Conflist) > 0 {
			out = append(out, ex.Conflist)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no shipped conflists under %s", root)
	}
	return out
}

// PrevResults are realistic prevResults as each stage receives them in the
// default chain (keyed by the stage that receives them). Their names are the
// ones FuzzNode creates: uplink eth0, bridge fzbr0, host veth fzveth0.
var PrevResults = map[string]string{
	"infra-ensure":     ``,
	"vrf-vxlan-bridge": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":1500}]}`,
	"lockfile-ipam":    `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":1500},{"name":"fzbr0","mac":"02:00:00:00:00:02","mtu":1450}]}`,
	"veth-attach": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":1500},{"name":"fzbr0","mac":"02:00:00:00:00:02","mtu":1450}],` +
		`"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1"},{"address":"fd00:10:244:1::5/64","gateway":"fd00:10:244:1::1"}],` +
		`"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}],"dns":{"nameservers":["10.96.0.10"]}}`,
	"sysctl-firewall": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":1500},{"name":"fzbr0","mac":"02:00:00:00:00:02","mtu":1450},` +
		`{"name":"fzveth0","mac":"02:00:00:00:00:03","mtu":1450},{"name":"eth0","mac":"02:00:00:00:00:04","mtu":1450,"sandbox":"SANDBOX"}],` +
		`"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":3},{"address":"fd00:10:244:1::5/64","gateway":"fd00:10:244:1::1","interface":3}],` +
		`"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}`,
}

// hostilePrevResults are prevResults a broken runtime or previous plugin
// can send: null elements, out-of-range indexes, wrong types, odd values.
var hostilePrevResults = []string{
	`null`,
	`{}`,
	`[]`,
	`"x"`,
	`{"cniVersion":"1.0.0","interfaces":[null]}`,
	`{"cniVersion":"1.0.0","ips":[null]}`,
	`{"cniVersion":"1.0.0","routes":[null]}`,
	`{"cniVersion":"1.0.0","interfaces":[null],"ips":[null],"routes":[null],"dns":null}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"},null,{"name":"fzbr0"}],"ips":[{"address":"10.244.1.5/24"},null],"routes":[null,{"dst":"0.0.0.0/0"}]}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.1.5/24","interface":7}]}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.1.5/24","interface":-1}]}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.1.5/24","interface":9223372036854775807}]}`,
	`{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.5"}]}`,
	`{"cniVersion":"1.0.0","ips":[{"address":""}]}`,
	`{"cniVersion":"1.0.0","ips":[{}]}`,
	`{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.5/24","gateway":"not-an-ip"}]}`,
	`{"cniVersion":"1.0.0","ips":[{"address":"::/0"}],"routes":[{"dst":"::/0","gw":"10.0.0.1"}]}`,
	`{"cniVersion":"1.0.0","routes":[{}]}`,
	`{"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","mtu":-5,"table":-1,"scope":999999}]}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":""},{"name":"../../etc"},{"name":"` + strings.Repeat("x", 300) + `","sandbox":"/proc/1/ns/net"}]}`,
	`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mtu":-1,"mac":"zz"},{"name":"fzbr0","mtu":1e308}]}`,
	`{"cniVersion":"1.0.0","interfaces":"eth0","ips":{},"routes":1}`,
	`{"cniVersion":"0.2.0","ip4":{"ip":"10.244.1.5/24"}}`,
	`{"cniVersion":"0.3.1","interfaces":[null],"ips":[{"version":"4","address":"10.244.1.5/24","interface":0}]}`,
	`{"cniVersion":"0.3.1","ips":[{"version":"6","address":"10.244.1.5/24"},null]}`,
	`{"cniVersion":"9.9.9","interfaces":[]}`,
	`{"cniVersion":"1.0.0","dns":{"nameservers":[null,"x"],"search":null}}`,
}

// hostileValues replace one key of a plugin object at a time.
var hostileValues = []string{
	`null`, `true`, `-1`, `0`, `4294967296`, `9223372036854775807`, `1e308`, `-1e308`, `0.5`,
	`""`, `"x"`, `"` + strings.Repeat("a", 4096) + `"`, `"../../../etc/passwd"`, `"\u0000"`,
	`[]`, `[null]`, `{}`, `{"":null}`, `[[[[[[[[[[]]]]]]]]]]`,
}

// hostileNetworks are names and versions a config may carry.
var hostileTop = []map[string]string{
	{"cniVersion": `"0.1.0"`}, {"cniVersion": `"0.3.1"`}, {"cniVersion": `"0.4.0"`}, {"cniVersion": `"1.1.0"`},
	{"cniVersion": `""`}, {"cniVersion": `"9.9.9"`}, {"cniVersion": `1`},
	{"name": `""`}, {"name": `"` + strings.Repeat("n", 250) + `"`}, {"name": `"a/../b"`}, {"name": `"-x"`}, {"name": `7`},
	{"type": `null`}, {"runtimeConfig": `{"mac":"ff:ff:ff:ff:ff:ff","ips":["10.244.1.300"],"ipRanges":[[null]]}`},
	{"args": `{"cni":{"ips":[null],"mac":7}}`},
}

// StageSeeds returns seed configs (plugin stdin) for the stage typ: its
// plugin object from every shipped conflist, completed with name,
// cniVersion (each version the stages support) and the prevResult the stage
// gets in the chain. With hostile it adds the hostile variants.
func StageSeeds(tb testing.TB, typ string, hostile bool) [][]byte {
	tb.Helper()
	var bases [][]byte
	for _, cl := range ShippedConflists(tb) {
		var list struct {
			CNIVersion string           `json:"cniVersion"`
			Name       string           `json:"name"`
			Plugins    []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(cl, &list); err != nil {
			tb.Fatalf("shipped conflist: %v", err)
		}
		for _, p := range list.Plugins {
			if p["type"] != typ {
				continue
			}
			for _, v := range []string{list.CNIVersion, "0.3.1", "0.4.0", "1.1.0"} {
				conf := map[string]any{}
				for k, val := range p {
					conf[k] = val
				}
				conf["name"], conf["cniVersion"] = list.Name, v
				if prev := PrevResults[typ]; prev != "" {
					conf["prevResult"] = json.RawMessage(prevResultAs(tb, prev, v))
				}
				b, err := json.Marshal(conf)
				if err != nil {
					tb.Fatal(err)
				}
				bases = append(bases, b)
			}
		}
	}
	if len(bases) == 0 {
		tb.Fatalf("no shipped conflist has a %s stage", typ)
	}
	if !hostile {
		return bases
	}
	out := append([][]byte{}, bases...)
	out = append(out, []byte(``), []byte(`null`), []byte(`{}`), []byte(`[]`), []byte(`{"cniVersion":"1.0.0","name":"n","type":"`+typ+`"}`))
	base := bases[0]
	for _, prev := range hostilePrevResults {
		out = append(out, SetKeys(tb, base, map[string]string{"prevResult": prev}))
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(base, &keys)
	for k := range keys {
		if k == "prevResult" {
			continue
		}
		for _, v := range hostileValues {
			out = append(out, SetKeys(tb, base, map[string]string{k: v}))
		}
	}
	for _, kv := range hostileTop {
		out = append(out, SetKeys(tb, base, kv))
	}
	return out
}

// prevResultAs converts a 1.0.0 result to cniVersion v (0.3.x and 0.4.0
// results carry ips[].version), as the previous plugin would print it.
func prevResultAs(tb testing.TB, prev, v string) []byte {
	tb.Helper()
	res, err := current.NewResult([]byte(prev))
	if err != nil {
		tb.Fatalf("prevResult seed: %v", err)
	}
	conv, err := res.GetAsVersion(v)
	if err != nil {
		tb.Fatalf("prevResult seed as %s: %v", v, err)
	}
	b, err := json.Marshal(conv)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// PinResolvConf points ipam.resolvConf, when a JSON object stdin has one,
// at path: a fuzzer must not make the parser read /dev/zero or a FIFO.
// Other input is returned as it is.
func PinResolvConf(stdin []byte, path string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(stdin, &m) != nil || m == nil {
		return stdin
	}
	var ipam map[string]json.RawMessage
	if json.Unmarshal(m["ipam"], &ipam) != nil || ipam == nil {
		return stdin
	}
	if _, ok := ipam["resolvConf"]; !ok {
		return stdin
	}
	ipam["resolvConf"], _ = json.Marshal(path)
	m["ipam"], _ = json.Marshal(ipam)
	out, err := json.Marshal(m)
	if err != nil {
		return stdin
	}
	return out
}

// SetKeys returns the JSON object conf with the given keys set to the given
// raw JSON values.
func SetKeys(tb testing.TB, conf []byte, kv map[string]string) []byte {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(conf, &m); err != nil {
		tb.Fatalf("SetKeys: %v", err)
	}
	for k, v := range kv {
		m[k] = json.RawMessage(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("SetKeys %v: %v", kv, err)
	}
	return b
}

// CheckCNIError fails unless err is (or wraps) a *types.Error with a
// non-zero code, a message, and, when codes are given, one of them.
func CheckCNIError(tb testing.TB, err error, codes ...uint) {
	tb.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error is %T, not a *types.Error: %v", err, err)
	}
	if e.Code == 0 {
		tb.Fatalf("error has code 0: %v", e)
	}
	if e.Msg == "" {
		tb.Fatalf("error %d has no message", e.Code)
	}
	if len(codes) == 0 {
		return
	}
	for _, c := range codes {
		if e.Code == c {
			return
		}
	}
	tb.Fatalf("error code %d (%s), want one of %v", e.Code, e.Error(), codes)
}

// ConfigCodes are the codes a configuration problem may have: decoding
// failure (6), invalid configuration (7), invalid environment variables (4,
// CNI_ARGS).
var ConfigCodes = []uint{types.ErrInvalidEnvironmentVariables, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig}

// CheckRemarshal checks that a parsed configuration re-marshals to JSON
// (MarshalConf) that parses again, and that marshalling that second parse
// gives the same bytes (defaults and normalisation settle after one round).
func CheckRemarshal[T any](tb testing.TB, conf T, parse func([]byte) (T, error)) {
	tb.Helper()
	b1, err := MarshalConf(conf)
	if err != nil {
		tb.Fatalf("a parsed config does not marshal: %v", err)
	}
	again, err := parse(b1)
	if err != nil {
		tb.Fatalf("the re-marshalled config does not parse: %v\n%s", err, b1)
	}
	b2, err := MarshalConf(again)
	if err != nil {
		tb.Fatalf("the re-parsed config does not marshal: %v", err)
	}
	if string(b1) != string(b2) {
		tb.Fatalf("marshal is not stable across a parse:\n%s\n%s", b1, b2)
	}
}

// MarshalConf marshals a stage's config struct with all its fields.
// json.Marshal alone would not: the embedded types.PluginConf's
// MarshalJSON is promoted and writes only the common keys. MarshalConf
// marshals the embedded PluginConf and every other exported field
// separately and merges them into one object.
func MarshalConf(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return []byte("null"), nil
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return json.Marshal(v)
	}
	out := map[string]json.RawMessage{}
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := rv.Field(i)
		if f.Anonymous && f.Type == reflect.TypeOf(types.PluginConf{}) {
			pc := fv.Interface().(types.PluginConf)
			b, err := json.Marshal(&pc)
			if err != nil {
				return nil, err
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				return nil, err
			}
			for k, val := range m {
				if _, set := out[k]; !set {
					out[k] = val
				}
			}
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(opts, "omitempty") && fv.IsZero() {
			continue
		}
		b, err := json.Marshal(fv.Interface())
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
		out[name] = b
	}
	return json.Marshal(out)
}

// CheckResultJSON fails unless out is a well-formed CNI result: a JSON
// object whose interfaces, ips and routes hold no null, whose ips name
// existing interfaces, and whose cniVersion is set.
func CheckResultJSON(tb testing.TB, out []byte) {
	tb.Helper()
	var r struct {
		CNIVersion string            `json:"cniVersion"`
		Interfaces []json.RawMessage `json:"interfaces"`
		IPs        []json.RawMessage `json:"ips"`
		Routes     []json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		tb.Fatalf("stdout is not a result: %v: %q", err, out)
	}
	if r.CNIVersion == "" {
		tb.Fatalf("result without cniVersion: %s", out)
	}
	for what, list := range map[string][]json.RawMessage{"interfaces": r.Interfaces, "ips": r.IPs, "routes": r.Routes} {
		for i, e := range list {
			if string(e) == "null" {
				tb.Fatalf("result %s[%d] is null: %s", what, i, out)
			}
		}
	}
	for i, e := range r.IPs {
		var ip struct {
			Interface *int   `json:"interface"`
			Address   string `json:"address"`
		}
		if err := json.Unmarshal(e, &ip); err != nil {
			tb.Fatalf("result ips[%d]: %v: %s", i, err, out)
		}
		if ip.Address == "" {
			tb.Fatalf("result ips[%d] has no address: %s", i, out)
		}
		if ip.Interface != nil && (*ip.Interface < 0 || *ip.Interface >= len(r.Interfaces)) {
			tb.Fatalf("result ips[%d].interface %d is not an index of interfaces: %s", i, *ip.Interface, out)
		}
	}
}

// Printable shortens fuzz input for a failure message.
func Printable(b []byte) string {
	if len(b) > 600 {
		return fmt.Sprintf("%q…(%d bytes)", b[:600], len(b))
	}
	return fmt.Sprintf("%q", b)
}
