package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/naming"
)

func intp(v int) *int { return &v }

func TestZoneOf(t *testing.T) {
	for name, tc := range map[string]struct {
		zone     *int
		pod      podInfo
		wantZone int
		wantMark uint32
		code     uint // 0: no error
	}{
		"absent, no VRF: off":              {nil, podInfo{Bridge: "br0"}, 0, 0, 0},
		"absent, VRF table: default":       {nil, podInfo{Bridge: "br0", VRFTable: 410}, 410, 410 << 16, 0},
		"absent, VRF table too big: off":   {nil, podInfo{Bridge: "br0", VRFTable: 70000}, 0, 0, 0},
		"explicit 0 turns the default off": {intp(0), podInfo{Bridge: "br0", VRFTable: 410}, 0, 0, 0},
		"explicit, no VRF":                 {intp(7), podInfo{Bridge: "br0"}, 7, 7 << 16, 0},
		"explicit, VRF: mark is the table": {intp(7), podInfo{Bridge: "br0", VRFTable: 410}, 7, 410 << 16, 0},
		"explicit, big VRF: mark is zone":  {intp(65535), podInfo{Bridge: "br0", VRFTable: 70000}, 65535, 0xffff0000, 0},
		"explicit without a bridge":        {intp(7), podInfo{HostVeth: "vx1"}, 0, 0, types.ErrInvalidNetworkConfig},
		"absent without a bridge: off":     {nil, podInfo{HostVeth: "vx1"}, 0, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			z, m, err := zoneOf(&NetConf{ConntrackZone: tc.zone}, &tc.pod)
			if tc.code != 0 {
				var e *types.Error
				if !errors.As(err, &e) || e.Code != tc.code {
					t.Fatalf("want code %d, got %v", tc.code, err)
				}
				return
			}
			if err != nil || z != tc.wantZone || m != tc.wantMark {
				t.Fatalf("zone %d mark %#x err %v; want zone %d mark %#x", z, m, err, tc.wantZone, tc.wantMark)
			}
		})
	}
}

func TestRenderZone(t *testing.T) {
	tag := naming.ZoneTag("red")
	raw := [][]string{{"-i", "br-red", "-m", "comment", "--comment", tag, "-j", "CT", "--zone-orig", "410"}}
	mangle := [][]string{
		{"-i", "br-red", "-m", "conntrack", "--ctdir", "ORIGINAL", "-m", "comment", "--comment", tag,
			"-j", "CONNMARK", "--set-xmark", "0x19a0000/0xffff0000"},
		{"-m", "conntrack", "--ctdir", "REPLY", "-m", "comment", "--comment", naming.ZoneRestoreTag,
			"-j", "CONNMARK", "--restore-mark", "--nfmask", "0xffff0000", "--ctmask", "0xffff0000"},
	}
	got := renderZone(ZoneInput{Network: "red", Bridge: "br-red", Zone: 410, Mark: 410 << 16, Families: []Family{V4, V6}})
	want := Rules{V4: {"raw": raw, "mangle": mangle}, V6: {"raw": raw, "mangle": mangle}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got := renderZone(ZoneInput{Network: "red", Bridge: "br-red", Zone: 410, Mark: 410 << 16, Families: []Family{V6}}); len(got) != 1 || got[V6] == nil {
		t.Fatalf("IPv6-only pod: %v", got)
	}
	if got := renderZone(ZoneInput{Network: "red", Bridge: "br-red", Families: []Family{V4}}); len(got) != 0 {
		t.Fatalf("zone 0 rendered rules: %v", got)
	}
	for _, spec := range append(raw, mangle...) {
		for _, tok := range spec {
			if !plainToken(tok) {
				t.Errorf("token %q needs quoting for iptables-restore", tok)
			}
		}
	}
}

// The zone probes ride in the attachment's one restore: -C only, before
// the -N, in raw (after the attachment tables) and a mangle section of
// their own; the converging batch replaces the network's zone rules.
func TestRenderRestoreZone(t *testing.T) {
	a := attachment{Network: "red", ContainerID: "cid", IfName: "eth0"}
	c := naming.AttachmentChain("red", "cid", "eth0")
	tag := naming.AttachmentTag("red", "cid", "eth0")
	rules := map[string][][]string{
		"filter": {{"-s", "10.0.0.5/32", "-j", "ACCEPT"}},
		"raw":    {{"-i", "vx1", "!", "-s", "10.0.0.5/32", "-j", "DROP"}},
	}
	zone := renderZone(ZoneInput{Network: "red", Bridge: "br-red", Zone: 9, Mark: 9 << 16, Families: []Family{V4}})[V4]
	tables := scriptTables(rules, zone)
	if !reflect.DeepEqual(tables, []string{"filter", "raw", "mangle"}) {
		t.Fatalf("tables %v", tables)
	}
	s := renderAdd(a, rules, zone)
	want := strings.Join([]string{
		"*filter",
		"-C FORWARD -j VXVRF-FORWARD",
		"-N " + c,
		"-A " + c + " -s 10.0.0.5/32 -j ACCEPT",
		"-A VXVRF-FORWARD -m comment --comment " + tag + " -j " + c,
		"COMMIT",
		"*raw",
		"-C PREROUTING -j VXVRF-PREROUTING",
		"-C PREROUTING -j VXVRF-ZONES",
		"-C VXVRF-ZONES -i br-red -m comment --comment vxvrf-zone:red -j CT --zone-orig 9",
		"-N " + c,
		"-A " + c + " -i vx1 ! -s 10.0.0.5/32 -j DROP",
		"-A VXVRF-PREROUTING -m comment --comment " + tag + " -j " + c,
		"COMMIT",
		"*mangle",
		"-C PREROUTING -j VXVRF-ZONES",
		"-C VXVRF-ZONES -i br-red -m conntrack --ctdir ORIGINAL -m comment --comment vxvrf-zone:red -j CONNMARK --set-xmark 0x90000/0xffff0000",
		"-C VXVRF-ZONES -m conntrack --ctdir REPLY -m comment --comment vxvrf-zone-restore -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000",
		"COMMIT",
	}, "\n") + "\n"
	if got := s.text(); got != want || s.err != nil {
		t.Fatalf("renderAdd:\n%s\nwant:\n%s", got, want)
	}
	// Zone only (no antiSpoofing): raw and mangle carry -C probes only, of
	// the network's objects.
	rules = map[string][][]string{"filter": rules["filter"]}
	for _, p := range probesOf(a, rules, zone) {
		if p.args[0] != "-C" || (p.table == "raw" || p.table == "mangle") && (!p.network || p.what != "conntrack zone rule") {
			t.Errorf("probe %+v", p)
		}
	}

	// The converging batch of a node with other networks' zone rules and a
	// stale rule of this network (zone 8): the network's rules and the
	// restore rule are replaced by number, last first, in the same section.
	st := map[string]*tableState{
		"filter": {project: true, hooked: map[string]bool{"VXVRF-FORWARD": true}},
		"nat":    {hooked: map[string]bool{}},
		"raw":    {project: true, zoneChain: true, hooked: map[string]bool{"VXVRF-PREROUTING": true}},
		"mangle": {zoneChain: true, hooked: map[string]bool{"VXVRF-ZONES": true}, zone: []string{
			`-A VXVRF-ZONES -i br-blue -m conntrack --ctdir ORIGINAL -m comment --comment "vxvrf-zone:blue" -j CONNMARK --set-xmark 0x50000/0xffff0000`,
			`-A VXVRF-ZONES -i br-red -m conntrack --ctdir ORIGINAL -m comment --comment "vxvrf-zone:red" -j CONNMARK --set-xmark 0x80000/0xffff0000`,
			`-A VXVRF-ZONES -m conntrack --ctdir REPLY -m comment --comment vxvrf-zone-restore -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000`,
		}},
	}
	want = strings.Join([]string{
		"*filter",
		":" + c + " - [0:0]",
		"-A " + c + " -s 10.0.0.5/32 -j ACCEPT",
		"-A VXVRF-FORWARD -m comment --comment " + tag + " -j " + c,
		"COMMIT",
		"*raw",
		":VXVRF-ZONES - [0:0]", // listed absent in raw
		"-I PREROUTING 1 -j VXVRF-ZONES",
		"-A VXVRF-ZONES -i br-red -m comment --comment vxvrf-zone:red -j CT --zone-orig 9",
		"COMMIT",
		"*mangle",
		"-D VXVRF-ZONES 3",
		"-D VXVRF-ZONES 2",
		"-A VXVRF-ZONES -i br-red -m conntrack --ctdir ORIGINAL -m comment --comment vxvrf-zone:red -j CONNMARK --set-xmark 0x90000/0xffff0000",
		"-A VXVRF-ZONES -m conntrack --ctdir REPLY -m comment --comment vxvrf-zone-restore -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000",
		"COMMIT",
	}, "\n") + "\n"
	st["raw"].zoneChain = false
	if got := renderConverge(a, rules, zone, st).text(); got != want {
		t.Fatalf("renderConverge:\n%s\nwant:\n%s", got, want)
	}
}
