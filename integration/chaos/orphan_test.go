package chaos

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
)

// TestKillDuringIptablesRestore: sysctl-firewall is SIGKILLed during ADD
// while its iptables-restore child runs; the child is held (SIGSTOP, as
// when it waits for the xtables lock under load) until the runtime's
// recovery DEL has succeeded (or for 3s, should the DEL wait for it), then
// let go. Once it has exited nothing of
// the attachment may be left: a plugin's children must not outlive it and
// write after the DEL.
func TestKillDuringIptablesRestore(t *testing.T) {
	h := newHarness(t, 1)
	h.backend = "iptables" // the backend that runs a child process
	h.c = h.newChain()
	h.addResidents(1)
	c, node := h.chain()
	p := h.newPod("o")
	pl := h.k.arm(p.rt.ContainerID, "sysctl-firewall", "ADD")
	pl.onChild, pl.child = "-restore", make(chan int, 1)
	addErr := h.add(c, p)
	child, ok := <-pl.child
	if !ok {
		t.Fatalf("sysctl-firewall ran no iptables-restore (ADD: %v)", addErr)
	}
	if addErr == nil {
		t.Fatalf("sysctl-firewall was killed but the chain ADD succeeded")
	}
	// The child is let go when the recovery DEL has finished, or after 3s
	// if the DEL waits for it (a fix may make it wait).
	delErr := make(chan error, 1)
	go func() { delErr <- h.del(c, p.rt) }()
	var err error
	select {
	case err = <-delErr:
		_ = syscall.Kill(child, syscall.SIGCONT)
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(child, syscall.SIGCONT)
		err = <-delErr
	}
	if err != nil {
		t.Fatalf("recovery DEL: %v", err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", child)); os.IsNotExist(err) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, l := range c.Leftovers(node.NS, []chain.Attachment{p.attachment()}, h.stateDirs()...) {
		t.Errorf("left behind once the orphaned iptables-restore ran: %s", l)
	}
}
