// Package cniutil holds the CNI plumbing every stage shares: supported
// versions, config decoding with the right error codes, prevResult handling,
// the host-netns guard and the GC attachment list.
package cniutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"syscall"

	cnins "github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Versions is what every stage supports: chaining (0.3.x) up to spec 1.1.0.
// skel itself refuses CHECK below 0.4.0 and STATUS/GC below 1.1.0.
var Versions = version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")

// CNI error codes missing from the cni library release we build against.
const (
	ErrPluginNotAvailable  uint = 50
	ErrLimitedConnectivity uint = 51
)

// Errorf returns a *types.Error with the given code; skel prints it as the
// CNI error JSON and keeps the code.
func Errorf(code uint, format string, args ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, args...), "")
}

// InvalidConfig wraps err as a CNI "invalid network configuration" error (7).
func InvalidConfig(err error) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
}

// Decode unmarshals stdin into v, answering malformed JSON with code 6.
func Decode(stdin []byte, v any) error {
	if err := json.Unmarshal(stdin, v); err != nil {
		return types.NewError(types.ErrDecodingFailure, "failed to parse network configuration", err.Error())
	}
	return nil
}

func missingPrevResult(plugin string) error {
	return Errorf(types.ErrInvalidNetworkConfig, "%s must be called as a chained plugin: missing prevResult", plugin)
}

// NewResult returns prev, or an empty result, ready to be extended and
// printed with types.PrintResult(res, conf.CNIVersion). The result keeps the
// library's own version so that PrintResult converts it to the config's
// (0.3.x/0.4.0 results need ips[].version, which only conversion adds).
func NewResult(prev *current.Result) *current.Result {
	if prev == nil {
		prev = &current.Result{}
	}
	prev.CNIVersion = current.ImplementedSpecVersion
	return prev
}

// GuardNetNS refuses a CNI_NETNS that is the plugin's own (host) network
// namespace, before anything changes. skel checks this only after the
// command has run.
func GuardNetNS(netnsPath string) error {
	if netnsPath == "" {
		return nil
	}
	same, err := cnins.CheckNetNS(netnsPath)
	if err != nil {
		return err
	}
	if same {
		return Errorf(types.ErrInvalidNetNS, "CNI_NETNS %q is the plugin's own network namespace; refusing to configure the host", netnsPath)
	}
	return nil
}

// IsGone reports whether err only says that the thing to delete is already
// gone: a missing netns or link. DEL treats these as success. ENODEV
// covers the race where the kernel removes a veth pair with its netns
// between our lookup and our delete.
func IsGone(err error) bool {
	if err == nil {
		return false
	}
	var nsErr ns.NSPathNotExistErr
	var linkErr netlink.LinkNotFoundError
	return errors.As(err, &nsErr) || errors.As(err, &linkErr) || errors.Is(err, ip.ErrLinkNotFound) || errors.Is(err, syscall.ENODEV)
}

// Attachment names one (containerID, ifname) attachment of a network.
type Attachment struct {
	ContainerID string
	IfName      string
}

// ValidAttachments reads the GC attachment list from a GC request. present
// is false when the runtime sent no list at all (cnitool gc does that): in
// that case the stages release nothing. An empty list means every
// attachment of the network is gone. The older key cni.dev/attachments is
// accepted too.
func ValidAttachments(stdin []byte) (valid map[Attachment]bool, present bool, err error) {
	var raw struct {
		Valid *[]types.GCAttachment `json:"cni.dev/valid-attachments"`
		Old   *[]types.GCAttachment `json:"cni.dev/attachments"`
	}
	if err := Decode(stdin, &raw); err != nil {
		return nil, false, err
	}
	list := raw.Valid
	if list == nil {
		list = raw.Old
	}
	if list == nil {
		return nil, false, nil
	}
	valid = make(map[Attachment]bool, len(*list))
	for _, a := range *list {
		valid[Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	return valid, true, nil
}

// MergeDNS adds to dst what it lacks from src: nameservers, search domains
// and options not already there, and the domain when dst has none.
func MergeDNS(dst *types.DNS, src types.DNS) {
	dst.Nameservers = appendMissing(dst.Nameservers, src.Nameservers)
	dst.Search = appendMissing(dst.Search, src.Search)
	dst.Options = appendMissing(dst.Options, src.Options)
	if dst.Domain == "" {
		dst.Domain = src.Domain
	}
}

func appendMissing(dst, src []string) []string {
	for _, s := range src {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}
