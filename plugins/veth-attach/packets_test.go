package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

func TestGARPFrame(t *testing.T) {
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	got, err := garpFrame(mac, net.ParseIP("10.77.0.9"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst: broadcast
		0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, // src: pod mac
		0x08, 0x06, // ethertype ARP
		0x00, 0x01, // htype ethernet
		0x08, 0x00, // ptype IPv4
		6, 4, // hlen, plen
		0x00, 0x01, // op request
		0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, // sender mac
		10, 77, 0, 9, // sender ip
		0, 0, 0, 0, 0, 0, // target mac
		10, 77, 0, 9, // target ip = sender ip
	}
	if !bytes.Equal(got, want) {
		t.Errorf("garp frame\n got % x\nwant % x", got, want)
	}
	if _, err := garpFrame(mac, net.ParseIP("fd77::9")); err == nil {
		t.Error("garpFrame accepted an IPv6 address")
	}
	if _, err := garpFrame(net.HardwareAddr{1, 2, 3}, net.ParseIP("10.77.0.9")); err == nil {
		t.Error("garpFrame accepted a 3-byte mac")
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	got, err := unsolicitedNA(mac, net.ParseIP("fd77::9"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		136, 0, // type NA, code 0
		0, 0, // checksum (kernel fills it)
		0x20, 0, 0, 0, // flags: override only; reserved
		0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, // target
		2, 1, // option target link-layer address, 8 bytes
		0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("neighbor advertisement\n got % x\nwant % x", got, want)
	}
	if _, err := unsolicitedNA(mac, net.ParseIP("10.77.0.9")); err == nil {
		t.Error("unsolicitedNA accepted an IPv4 address")
	}
}

func TestHtons(t *testing.T) {
	// Stored in host order, the value must read as network order.
	b := make([]byte, 2)
	binary.NativeEndian.PutUint16(b, htons(0x0806))
	if !bytes.Equal(b, []byte{0x08, 0x06}) {
		t.Errorf("htons(0x0806) in memory: % x", b)
	}
}
