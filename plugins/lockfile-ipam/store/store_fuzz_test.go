package store

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// stateSeeds are state files as lockfile-ipam writes them, and broken or
// hostile ones (null elements, wrong types, duplicates, odd addresses).
var stateSeeds = []string{
	`{"version":1,"network":"net1","leases":[],"lastReserved":{}}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2","fd00:10:244:1::2"]},{"containerID":"b","ifname":"eth0","ips":["10.244.1.3"]}],"lastReserved":{"10.244.1.1-10.244.1.254":"10.244.1.3","fd00:10:244:1::1-fd00:10:244:1::ffff:ffff:ffff:fffe":"fd00:10:244:1::2"}}`,
	`{"version":1,"network":"net1","leases":null,"lastReserved":null}`,
	`{"version":1,"network":"net1","leases":[null]}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":[null]}]}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2"]},{"containerID":"b","ifname":"eth0","ips":["10.244.1.2"]}]}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2"]},{"containerID":"a","ifname":"eth0","ips":["10.244.1.3"]}]}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2","::ffff:10.244.1.2"]}]}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"","ifname":"","ips":[]}]}`,
	`{"version":1,"network":"net1","lastReserved":{"x":null,"":"1.2.3.4"}}`,
	`{"version":1,"network":"net1","leases":{},"lastReserved":[]}`,
	`{"version":2,"network":"net1"}`,
	`{"version":1,"network":"net2"}`,
	`{"version":1e308,"network":"net1"}`,
	`{"version":1,"network":"net1","extra":1}`,
	`{"version":1,"network":"net1"}{"version":1,"network":"net1"}`,
	`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2"]}]} trailing`,
	`null`, `[]`, `""`, ``, `{`,
}

// FuzzDecode: any state file either decodes into a state that encodes and
// decodes again to the same bytes, or is refused; Load of the same bytes
// from disk agrees with Decode. Never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Decode(data, "net1")
		stateFile, _ := Paths(dir, "net1")
		if err := os.WriteFile(stateFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, oerr := Open(dir, "net1", time.Second)
		if oerr != nil {
			t.Fatal(oerr)
		}
		loaded, lerr := s.Load()
		s.Close()
		if (err == nil) != (lerr == nil) {
			t.Fatalf("Decode says %v, Load says %v", err, lerr)
		}
		if err != nil {
			return
		}
		if err := st.Validate("net1"); err != nil {
			t.Fatalf("a decoded state does not validate: %v", err)
		}
		b1, err := Encode(st)
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		again, err := Decode(b1, "net1")
		if err != nil {
			t.Fatalf("an encoded state does not decode: %v\n%s", err, b1)
		}
		b2, err := Encode(again)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encode is not stable (%v):\n%s\n%s", err, b1, b2)
		}
		if b3, _ := Encode(loaded); !bytes.Equal(b1, b3) {
			t.Fatalf("Load and Decode differ:\n%s\n%s", b1, b3)
		}
		_ = os.Remove(filepath.Join(dir, "net1.json"))
	})
}

// FuzzEdit stamps any content as if Save had written it and runs an ADD
// (next free or requested) and a DEL through the edits. Never a panic or
// a hang, whatever the bytes; and for content that is what Encode writes
// (the only content a stamp ever names) the results, errors and new file
// are the decoding path's.
func FuzzEdit(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add([]byte(s), "a", "eth0", "")
	}
	f.Add([]byte(`{"version":1,"network":"net1","leases":[
{"containerID":"a","ifname":"eth0","ips":["10.1.0.2","fd01::2"]},
{"containerID":"c","ifname":"eth0","ips":["10.1.0.3","fd01::3"]}
],"lastReserved":{"10.1.0.1-10.1.0.6,10.1.1.1-10.1.1.2":"10.1.0.3","fd01::1-fd01::7":"fd01::3"}}
`), "b", "eth0", "10.1.1.1")
	f.Add([]byte(`{"version":1,"network":"net1","leases":[
{"containerID":"a","ifname":"eth0","ips":["10.1.0.2"]}
],"lastReserved":{}}
`), "a", "eth0", "")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, cid, ifname, req string) {
		if cid == "" || ifname == "" {
			return
		}
		sets := smallSets(t)
		var requested []net.IP
		if a := net.ParseIP(req); a != nil {
			requested = []net.IP{a}
		}
		p, _ := Paths(dir, "net1")
		run := func(trust bool) (string, string) {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, "net1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.writeStamp(trust)
			ips, err := s.Allocate(sets, cid, ifname, requested)
			out := fmt.Sprint(ips, err)
			ok, err := s.Release("a", "eth0")
			out += fmt.Sprint(ok, err)
			b, _ := os.ReadFile(p)
			return out, string(b)
		}
		gotOut, gotFile := run(true)
		st, err := Decode(data, "net1")
		if err != nil || !stampable(st) {
			return
		}
		if enc, err := Encode(st); err != nil || !bytes.Equal(enc, data) {
			return
		}
		wantOut, wantFile := run(false)
		if gotOut != wantOut || gotFile != wantFile {
			t.Fatalf("edits differ from decoding:\n%s\n%s\nwant\n%s\n%s", gotOut, gotFile, wantOut, wantFile)
		}
	})
}
