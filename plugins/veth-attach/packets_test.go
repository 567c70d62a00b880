package main

import (
	"bytes"
	"net"
	"testing"
)

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
