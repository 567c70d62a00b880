package cniutil

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestNetNSLockExcludes(t *testing.T) {
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := NetNSLock("test-excl", 5*time.Second, func() error {
				n := inside.Add(1)
				if n > most.Load() {
					most.Store(n)
				}
				time.Sleep(5 * time.Millisecond)
				inside.Add(-1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d holders at once", most.Load())
	}
}

func TestNetNSLockTimeoutIsCode11(t *testing.T) {
	held := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_ = NetNSLock("test-timeout", time.Second, func() error { close(held); <-release; return nil })
	}()
	<-held
	err := NetNSLock("test-timeout", 50*time.Millisecond, func() error { return nil })
	close(release)
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater {
		t.Fatalf("got %v, want code 11", err)
	}
	// Released with its holder: the next one gets it.
	if err := NetNSLock("test-timeout", time.Second, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
