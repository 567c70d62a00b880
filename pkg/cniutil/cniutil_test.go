package cniutil

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestValidAttachments(t *testing.T) {
	cases := []struct {
		stdin   string
		present bool
		n       int
	}{
		{`{"name":"n"}`, false, 0},
		{`{"name":"n","cni.dev/valid-attachments":[]}`, true, 0},
		{`{"name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`, true, 1},
		{`{"name":"n","cni.dev/attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}]}`, true, 2},
		// The current key wins over the old one.
		{`{"name":"n","cni.dev/valid-attachments":[],"cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}`, true, 0},
	}
	for _, c := range cases {
		valid, present, err := ValidAttachments([]byte(c.stdin))
		if err != nil || present != c.present || len(valid) != c.n {
			t.Errorf("%s: got %v present=%v err=%v; want %d present=%v", c.stdin, valid, present, err, c.n, c.present)
		}
	}
	if _, _, err := ValidAttachments([]byte(`{`)); err == nil {
		t.Error("malformed JSON accepted")
	} else if e := (*types.Error)(nil); !errors.As(err, &e) || e.Code != types.ErrDecodingFailure {
		t.Errorf("malformed JSON: %v, want code 6", err)
	}
}

func TestMergeDNS(t *testing.T) {
	dst := types.DNS{Nameservers: []string{"10.0.0.10"}, Search: []string{"a.local"}}
	MergeDNS(&dst, types.DNS{Nameservers: []string{"10.0.0.10", "10.0.0.11"}, Domain: "d", Search: []string{"a.local", "b.local"}, Options: []string{"ndots:5"}})
	want := types.DNS{Nameservers: []string{"10.0.0.10", "10.0.0.11"}, Domain: "d", Search: []string{"a.local", "b.local"}, Options: []string{"ndots:5"}}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("got %+v, want %+v", dst, want)
	}
}
