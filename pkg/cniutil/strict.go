package cniutil

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	vlog "github.com/vxvrf/cni/pkg/log"
)

// Keys the spec, libcni and runtimes put into every plugin's config. They
// are accepted whatever the plugin's struct declares; the contents of those
// in opaqueKeys are not the plugin's business (runtimeConfig and args carry
// runtime data, prevResult is checked by PrevResult, ipam belongs to the
// delegated IPAM unless the plugin's struct declares its own ipam section).
var (
	specKeys   = []string{"cniVersion", "cniVersions", "name", "type", "ipam", "dns", "args", "runtimeConfig", "capabilities", "prevResult", "disableCheck", "disableGC", "log"}
	opaqueKeys = map[string]bool{"args": true, "runtimeConfig": true, "capabilities": true, "prevResult": true, "dns": true}
)

// specKeyPrefix starts keys libcni adds (cni.dev/valid-attachments, ...).
const specKeyPrefix = "cni.dev/"

// DecodeStrict decodes stdin into v (a pointer to the plugin's config
// struct) and refuses what a plain json.Unmarshal lets through:
//   - malformed JSON: code 6, as Decode;
//   - a key that is neither in v's json tags (at any depth: nested sections,
//     list elements) nor one the spec, libcni or runtimes add: code 7,
//     naming plugin, the key's path and the closest known key;
//   - a value of the wrong type: code 7, naming the user's key and the
//     value, not a Go type ("masquerade" must be true or false, got "yes").
//
// The "log" section (pkg/log) is accepted and checked by every plugin.
func DecodeStrict(plugin string, stdin []byte, v any) error {
	if err := CheckKeys(plugin, stdin, v); err != nil {
		return err
	}
	if err := json.Unmarshal(stdin, v); err != nil {
		e := describeDecodeError(plugin, stdin, reflect.TypeOf(v), err)
		if specSection(stdin, reflect.TypeOf(v)) {
			// A spec-owned section (prevResult, runtimeConfig, ...) that
			// does not decode is a decoding failure, as before.
			return types.NewError(types.ErrDecodingFailure, e.Error(), "")
		}
		return InvalidConfig(e)
	}
	return nil
}

// specSection reports whether the value that fails to decode lies in one
// of the opaque spec sections rather than in the plugin's own keys.
func specSection(stdin []byte, t reflect.Type) bool {
	path, _, _ := locate(stdin, t, "")
	top, _, _ := strings.Cut(path, ".")
	top, _, _ = strings.Cut(top, "[")
	return opaqueKeys[top]
}

// CheckKeys is DecodeStrict without decoding into v: it checks stdin's keys
// and value types against v's type. With only, it checks only those
// top-level sections (a delegated IPAM checks "ipam" and nothing of its
// caller's config).
func CheckKeys(plugin string, stdin []byte, v any, only ...string) error {
	var raw map[string]json.RawMessage
	if err := Decode(stdin, &raw); err != nil {
		return err
	}
	t := reflect.TypeOf(v)
	fields := jsonFields(t)
	if len(only) == 0 {
		if err := checkTop(plugin, raw, fields); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(raw) {
		if len(only) > 0 && !slices.Contains(only, key) {
			continue
		}
		f, ok := fields[key]
		if key == "log" && !ok {
			f, ok = reflect.TypeOf(vlog.Config{}), true
		}
		if !ok || opaqueKeys[key] || f == ipamType {
			continue
		}
		if err := checkValue(plugin, key, raw[key], f); err != nil {
			return err
		}
		val := reflect.New(f)
		if err := json.Unmarshal(raw[key], val.Interface()); err != nil {
			return InvalidConfig(describeDecodeError(plugin, raw[key], f, err, key))
		}
		if key == "log" {
			if err := val.Interface().(interface{ Validate() error }).Validate(); err != nil {
				return InvalidConfig(fmt.Errorf("%s: log: %w", plugin, err))
			}
		}
	}
	return nil
}

var ipamType = reflect.TypeOf(types.IPAM{})

func checkTop(plugin string, raw map[string]json.RawMessage, fields map[string]reflect.Type) error {
	known := append(slices.Clone(specKeys), mapKeys(fields)...)
	for _, key := range sortedKeys(raw) {
		if _, ok := fields[key]; ok || slices.Contains(specKeys, key) || strings.HasPrefix(key, specKeyPrefix) {
			continue
		}
		return unknownKey(plugin, "", key, known)
	}
	return nil
}

// checkValue walks one value against its Go type and refuses unknown keys
// of objects decoded into structs.
func checkValue(plugin, path string, raw json.RawMessage, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isLeaf(t) || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil // a type error: the decode reports it
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(obj) {
			f, ok := fields[key]
			if !ok {
				return unknownKey(plugin, path, key, mapKeys(fields))
			}
			if err := checkValue(plugin, path+"."+key, obj[key], f); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return nil
		}
		for i, e := range list {
			if err := checkValue(plugin, fmt.Sprintf("%s[%d]", path, i), e, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		for _, key := range sortedKeys(obj) {
			if err := checkValue(plugin, path+"."+key, obj[key], t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// isLeaf: a type that decodes itself; its keys are its own business.
func isLeaf(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(jsonUnmarshaler) || p.Implements(jsonUnmarshaler) || t.Implements(textUnmarshaler) || p.Implements(textUnmarshaler) || t.Kind() == reflect.Interface
}

// jsonFields maps the JSON keys of struct type t (through pointers and
// embedded structs, the shallowest name winning as in encoding/json) to
// their field types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]reflect.Type{}
	depth := map[string]int{}
	var walk func(t reflect.Type, d int)
	walk = func(t reflect.Type, d int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				walk(f.Type, d+1)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if prev, ok := depth[name]; ok && prev <= d {
				continue
			}
			out[name], depth[name] = f.Type, d
		}
	}
	walk(t, 0)
	return out
}

func unknownKey(plugin, path, key string, known []string) error {
	full := key
	if path != "" {
		full = path + "." + key
	}
	msg := fmt.Sprintf("%s: unknown key %q", plugin, full)
	if s := closest(key, known); s != "" {
		if path != "" {
			s = path + "." + s
		}
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(known) > 0 {
		sort.Strings(known)
		msg += "; known keys here: " + strings.Join(known, ", ")
	}
	return InvalidConfig(errors.New(msg))
}

// closest is the known key nearest to key by edit distance (case
// insensitive; a key that extends or shortens a known one counts as near),
// when near enough to be a likely typo.
func closest(key string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		a, b := strings.ToLower(key), strings.ToLower(k)
		d := editDistance(a, b)
		if min(len(a), len(b)) >= 4 && (strings.HasPrefix(a, b) || strings.HasPrefix(b, a)) {
			d = min(d, 2) // "dataDirectory" for "dataDir"
		}
		if d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	limit := max(2, len(key)/3)
	if bestD > limit {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeDecodeError turns a json decode error into one naming the user's
// key (prefixed with prefix, the section stdin is) and what it should be.
func describeDecodeError(plugin string, stdin []byte, t reflect.Type, err error, prefix ...string) error {
	path, raw, inner := locate(stdin, t, "")
	if path == "" && len(prefix) == 0 {
		return fmt.Errorf("%s: %w", plugin, err)
	}
	if path == "" {
		raw, inner = stdin, err
	}
	path = strings.Trim(strings.Join(append(prefix, path), "."), ".")
	path = strings.ReplaceAll(path, ".[", "[")
	var te *json.UnmarshalTypeError
	if errors.As(inner, &te) {
		return fmt.Errorf("%s: %q must be %s, got %s", plugin, path, expected(te.Type), shorten(raw))
	}
	return fmt.Errorf("%s: %q: %w", plugin, path, inner)
}

// locate returns the deepest JSON path under raw whose value does not
// decode into its field's type, that value and the error.
func locate(raw json.RawMessage, t reflect.Type, path string) (string, json.RawMessage, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case !isLeaf(t) && t.Kind() == reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			break
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			if f, ok := fields[k]; ok {
				if p, v, err := locate(obj[k], f, join(k)); p != "" {
					return p, v, err
				}
			}
		}
	case !isLeaf(t) && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			break
		}
		for i, e := range list {
			if p, v, err := locate(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p, v, err
			}
		}
	case !isLeaf(t) && t.Kind() == reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			break
		}
		for _, k := range sortedKeys(obj) {
			if p, v, err := locate(obj[k], t.Elem(), join(k)); p != "" {
				return p, v, err
			}
		}
	}
	if path == "" {
		return "", nil, nil
	}
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		return path, raw, err
	}
	return "", nil, nil
}

// shorten renders a JSON value compactly for a message.
func shorten(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "?"
	}
	s := b.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// expected describes a Go type in the user's (JSON) terms.
func expected(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if w, ok := kindWords[t.Kind()]; ok {
		return w.msg
	}
	return "a " + t.Kind().String()
}

// kindWords names JSON value kinds for the user: help is --help's column
// ("true|false"), msg the phrase of a type error ("must be true or
// false").
var kindWords = func() map[reflect.Kind]struct{ help, msg string } {
	m := map[reflect.Kind]struct{ help, msg string }{
		reflect.Bool:    {"true|false", "true or false"},
		reflect.Float32: {"number", "a number"},
		reflect.Float64: {"number", "a number"},
		reflect.String:  {"string", "a string"},
		reflect.Slice:   {"list", "a list"},
		reflect.Array:   {"list", "a list"},
		reflect.Map:     {"object", "an object"},
		reflect.Struct:  {"object", "an object"},
	}
	for _, k := range []reflect.Kind{reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64} {
		m[k] = struct{ help, msg string }{"integer", "a whole number"}
	}
	for _, k := range []reflect.Kind{reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64} {
		m[k] = struct{ help, msg string }{"integer", "a whole number ≥ 0"}
	}
	return m
}()

func sortedKeys[V any](m map[string]V) []string {
	keys := mapKeys(m)
	sort.Strings(keys)
	return keys
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// CheckStageKeys is CheckKeys of the whole config for a plugin that runs
// as its own chain stage; as a delegated IPAM (stage false) the top level
// is its caller's config, not checked here.
func CheckStageKeys(plugin string, stdin []byte, v any, stage bool) error {
	if !stage {
		return nil
	}
	return CheckKeys(plugin, stdin, v)
}
