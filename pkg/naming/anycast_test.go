package naming

import (
	"bytes"
	"testing"
)

func TestAnycastGatewayMAC(t *testing.T) {
	a, b := AnycastGatewayMAC("red"), AnycastGatewayMAC("red")
	if !bytes.Equal(a, b) {
		t.Fatalf("not deterministic: %s %s", a, b)
	}
	if bytes.Equal(a, AnycastGatewayMAC("blue")) {
		t.Errorf("red and blue share %s", a)
	}
	for _, n := range []string{"red", "blue", "", "a-very-long-network-name-for-hashing"} {
		m := AnycastGatewayMAC(n)
		if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
			t.Errorf("%q: %s is not a locally administered unicast MAC", n, m)
		}
	}
}
