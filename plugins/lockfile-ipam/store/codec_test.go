package store

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"testing"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// sampleState has what a real file holds plus the awkward cases: names
// encoding/json escapes, IPv4-mapped and IPv6 addresses, an empty cursor.
func sampleState() *allocator.State {
	st := allocator.NewState("net1")
	st.Leases = []allocator.Lease{
		{ContainerID: "c1", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.2").To4(), net.ParseIP("fd00::2")}},
		{ContainerID: "c2<&>", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.3").To4()}},
		{ContainerID: "c3 \"quoted\" \\ é\t", IfName: "net1", IPs: []net.IP{net.ParseIP("fd00::ffff:3")}},
	}
	st.LastReserved["10.0.0.1-10.0.0.254"] = net.ParseIP("10.0.0.3") // 16-byte IPv4
	st.LastReserved["fd00::1-fd00::ffff"] = net.ParseIP("fd00::ffff:3")
	st.LastReserved["gone"] = nil
	return st
}

// TestEncodeIsWhatEncodingJSONReads: Encode's output is JSON that the
// reference decoding (encoding/json) turns into the same state.
func TestEncodeIsWhatEncodingJSONReads(t *testing.T) {
	for name, st := range map[string]*allocator.State{"empty": allocator.NewState("net1"), "sample": sampleState()} {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(st)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("not JSON: %s", data)
			}
			ref, err := decodeJSON(data)
			if err != nil {
				t.Fatalf("encoding/json: %v\n%s", err, data)
			}
			ref.Normalize()
			want, _ := json.Marshal(st)
			got, _ := json.Marshal(ref)
			if string(got) != string(want) {
				t.Fatalf("encoding/json read back\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestFastDecodeMatchesEncodingJSON: every input the fast parser accepts
// decodes to exactly what encoding/json gives; the inputs it declines still
// decode (or fail) through encoding/json.
func TestFastDecodeMatchesEncodingJSON(t *testing.T) {
	plain := allocator.NewState("net1")
	plain.Leases = sampleState().Leases[:1]
	plain.LastReserved["10.0.0.1-10.0.0.254"] = net.ParseIP("10.0.0.2").To4()
	encoded, _ := Encode(plain)
	indented, _ := json.MarshalIndent(plain, "", "  ") // what earlier versions wrote
	// Three range sets: more addresses per lease than the parser's slots
	// per lease, so it has to move them.
	three := allocator.NewState("net1")
	for i := 0; i < 40; i++ {
		three.Leases = append(three.Leases, allocator.Lease{ContainerID: fmt.Sprintf("c%02d", i), IfName: "eth0",
			IPs: []net.IP{net.IPv4(10, 0, 0, byte(i)).To4(), net.IPv4(10, 1, 0, byte(i)).To4(), net.ParseIP(fmt.Sprintf("fd00::%x", i))}})
	}
	threeIPs, _ := Encode(three)
	for _, c := range []struct {
		name string
		data string
		fast bool // the fast parser must take it
	}{
		{"encoded", string(encoded), true},
		{"three addresses per lease", string(threeIPs), true},
		{"indented (earlier versions)", string(indented), true},
		{"empty", `{"version":1,"network":"net1","leases":[],"lastReserved":{}}`, true},
		{"keys in another order", `{"lastReserved":{},"leases":[{"ips":["10.0.0.2"],"ifname":"eth0","containerID":"a"}],"network":"net1","version":1}`, true},
		{"key case", `{"Version":1,"network":"net1","leases":[],"lastReserved":{}}`, false},
		{"escaped id", `{"version":1,"network":"net1","leases":[{"containerID":"a\u0062","ifname":"eth0","ips":["10.0.0.2"]}],"lastReserved":{}}`, false},
		{"duplicate key", `{"version":1,"version":1,"network":"net1","leases":[],"lastReserved":{}}`, false},
		{"null ips", `{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":null}],"lastReserved":{}}`, false},
		{"empty cursor", `{"version":1,"network":"net1","leases":[],"lastReserved":{"x":""}}`, false},
		{"missing key", `{"version":1,"network":"net1","leases":[]}`, false},
		{"bad ip", `{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.300"]}],"lastReserved":{}}`, false},
		{"unknown key", `{"version":1,"network":"net1","leases":[],"lastReserved":{},"x":1}`, false},
		{"trailing", `{"version":1,"network":"net1","leases":[],"lastReserved":{}} {}`, false},
		{"float version", `{"version":1.0,"network":"net1","leases":[],"lastReserved":{}}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fast, ok := parseState([]byte(c.data))
			if ok != c.fast {
				t.Fatalf("fast parser took it: %v, want %v", ok, c.fast)
			}
			ref, refErr := decodeJSON([]byte(c.data))
			if ok {
				if refErr != nil {
					t.Fatalf("fast parser accepted what encoding/json refuses (%v)", refErr)
				}
				if !reflect.DeepEqual(fast, ref) {
					t.Fatalf("fast %+v\nencoding/json %+v", fast, ref)
				}
			}
			got, err := Decode([]byte(c.data), "net1")
			want, wantErr := ref, refErr
			if wantErr == nil {
				wantErr = ref.Validate("net1")
			}
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("Decode error %v, reference %v", err, wantErr)
			}
			if err == nil {
				want.Normalize()
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("Decode %+v\nreference %+v", got, want)
				}
			}
		})
	}
}
