package cniutil

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// PrevResult parses conf's prevResult into the current result type, after
// checking its whole structure, so that no stage acts on part of a result
// and then trips over the rest. It returns nil, nil when there is no
// prevResult.
//
// Codes: 6 when the prevResult does not decode as a CNI result of its
// version; 7 when it decodes but is malformed (a null entry in interfaces,
// ips or routes, an address without prefix, an interface index out of
// range, a route without dst, ...). Nothing has changed on the node then.
func PrevResult(conf *types.PluginConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, nil
	}
	if err := checkRawResult(conf.RawPrevResult); err != nil {
		return nil, Errorf(types.ErrInvalidNetworkConfig, "malformed prevResult: %v", err)
	}
	res, err := convertPrevResult(conf)
	if err != nil {
		return nil, err
	}
	if err := checkResult(res); err != nil {
		return nil, Errorf(types.ErrInvalidNetworkConfig, "malformed prevResult: %v", err)
	}
	return res, nil
}

// convertPrevResult runs the library's parse and conversion; they index
// into entries without checks, so a panic there is a decoding failure too.
func convertPrevResult(conf *types.PluginConf) (res *current.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, Errorf(types.ErrDecodingFailure, "failed to parse prevResult: %v", r)
		}
	}()
	if err := version.ParsePrevResult(conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "failed to parse prevResult", err.Error())
	}
	res, err = current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "failed to convert prevResult", err.Error())
	}
	return res, nil
}

// checkRawResult checks the shape of a prevResult as JSON, before any
// library code touches it: every list entry is an object, addresses carry
// a prefix, interface indexes point into interfaces.
func checkRawResult(raw map[string]any) error {
	ifaces, err := objectList(raw, "interfaces")
	if err != nil {
		return err
	}
	for i, ifc := range ifaces {
		if err := optionalString(ifc, "name"); err != nil {
			return fmt.Errorf("interfaces[%d]: %w", i, err)
		}
		if err := optionalString(ifc, "sandbox"); err != nil {
			return fmt.Errorf("interfaces[%d]: %w", i, err)
		}
		if err := optionalString(ifc, "mac"); err != nil {
			return fmt.Errorf("interfaces[%d]: %w", i, err)
		}
	}
	ips, err := objectList(raw, "ips")
	if err != nil {
		return err
	}
	for i, ipc := range ips {
		if err := cidrField(ipc, "address", true); err != nil {
			return fmt.Errorf("ips[%d]: %w", i, err)
		}
		if err := ipField(ipc, "gateway"); err != nil {
			return fmt.Errorf("ips[%d]: %w", i, err)
		}
		if v, ok := ipc["interface"]; ok && v != nil {
			n, isNum := v.(float64)
			if !isNum || n != float64(int(n)) || n < 0 || int(n) >= len(ifaces) {
				return fmt.Errorf("ips[%d]: interface %v is not an index into interfaces (%d entries)", i, v, len(ifaces))
			}
		}
	}
	routes, err := objectList(raw, "routes")
	if err != nil {
		return err
	}
	for i, r := range routes {
		if err := cidrField(r, "dst", true); err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
		if err := ipField(r, "gw"); err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
	}
	if v, ok := raw["dns"]; ok && v != nil {
		if _, isObj := v.(map[string]any); !isObj {
			return fmt.Errorf("dns must be an object, got %s", jsonKind(v))
		}
	}
	return nil
}

// checkResult checks what conversion produced, for what the JSON check
// cannot see (a version's own fields).
func checkResult(res *current.Result) error {
	for i, ifc := range res.Interfaces {
		if ifc == nil {
			return fmt.Errorf("interfaces[%d] is null", i)
		}
	}
	for i, ipc := range res.IPs {
		if ipc == nil || ipc.Address.IP == nil || ipc.Address.Mask == nil {
			return fmt.Errorf("ips[%d] has no address with a prefix length", i)
		}
		if ipc.Interface != nil && (*ipc.Interface < 0 || *ipc.Interface >= len(res.Interfaces)) {
			return fmt.Errorf("ips[%d]: interface %d is not an index into interfaces (%d entries)", i, *ipc.Interface, len(res.Interfaces))
		}
	}
	for i, r := range res.Routes {
		if r == nil || r.Dst.IP == nil || r.Dst.Mask == nil {
			return fmt.Errorf("routes[%d] has no dst", i)
		}
	}
	return nil
}

func objectList(raw map[string]any, key string) ([]map[string]any, error) {
	v, ok := raw[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, fmt.Errorf("%s must be a list, got %s", key, jsonKind(v))
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		obj, isObj := e.(map[string]any)
		if !isObj {
			return nil, fmt.Errorf("%s[%d] must be an object, got %s", key, i, jsonKind(e))
		}
		out[i] = obj
	}
	return out, nil
}

func optionalString(obj map[string]any, key string) error {
	if v, ok := obj[key]; ok && v != nil {
		if _, isStr := v.(string); !isStr {
			return fmt.Errorf("%s must be a string, got %s", key, jsonKind(v))
		}
	}
	return nil
}

func cidrField(obj map[string]any, key string, required bool) error {
	v, ok := obj[key]
	if !ok || v == nil {
		if required {
			return fmt.Errorf("%s is missing", key)
		}
		return nil
	}
	s, isStr := v.(string)
	if !isStr {
		return fmt.Errorf("%s must be a string, got %s", key, jsonKind(v))
	}
	if _, _, err := net.ParseCIDR(s); err != nil {
		return fmt.Errorf("%s %q is not an address with a prefix length (e.g. 10.0.0.2/24)", key, s)
	}
	return nil
}

func ipField(obj map[string]any, key string) error {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil
	}
	s, isStr := v.(string)
	if !isStr || net.ParseIP(s) == nil {
		return fmt.Errorf("%s %v is not an IP address", key, v)
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
