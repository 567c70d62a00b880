package cniutil

import (
	"encoding/json"
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// Teardown is what DEL and GC read of a stage's config: they must not be
// blocked by a config that is invalid or changed since ADD, so they read
// only the network name and, where a stage needs it, the ipam block.
type Teardown struct {
	Name string          `json:"name"`
	IPAM json.RawMessage `json:"ipam"`
}

// ErrNoIPAM is DecodeIPAM's error for a config without an ipam block (or
// with "ipam": null).
var ErrNoIPAM = errors.New("no ipam block")

// DecodeTeardown decodes stdin for DEL and GC: only JSON that does not
// parse at all fails (code 6); no key is required or validated.
func DecodeTeardown(stdin []byte) (*Teardown, error) {
	var t Teardown
	if err := Decode(stdin, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DecodeIPAM decodes the ipam block into v: ErrNoIPAM when there is none,
// the decoding error when it does not fit v.
func (t *Teardown) DecodeIPAM(v any) error {
	if len(t.IPAM) == 0 || string(t.IPAM) == "null" {
		return ErrNoIPAM
	}
	return json.Unmarshal(t.IPAM, v)
}

// GuardTeardownNetNS is GuardNetNS for DEL: only the refusal of the
// plugin's own (host) namespace counts; a CNI_NETNS that is gone or cannot
// be opened is normal during a teardown.
func GuardTeardownNetNS(netnsPath string) error {
	err := GuardNetNS(netnsPath)
	if e := (*types.Error)(nil); errors.As(err, &e) && e.Code == types.ErrInvalidNetNS {
		return err
	}
	return nil
}

// DelPreamble is the start of every stage's DEL, in the project's order:
// the netns guard (GuardTeardownNetNS), then the stage's lenient parse of
// stdin (which uses DecodeTeardown).
func DelPreamble[T any](args *skel.CmdArgs, parse func(stdin []byte) (T, error)) (T, error) {
	if err := GuardTeardownNetNS(args.Netns); err != nil {
		var zero T
		return zero, err
	}
	return parse(args.StdinData)
}
