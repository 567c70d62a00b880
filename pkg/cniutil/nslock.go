package cniutil

import (
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// NetNSLock runs fn holding a lock named name that is scoped to the
// calling thread's network namespace: a bound abstract unix socket. Abstract
// socket names live per network namespace, so two nodes (namespaces) never
// contend, nothing is written to the file system (no path to configure, no
// symlink to follow, nothing left behind) and the kernel releases the lock
// when the holder dies, even by SIGKILL. It answers CNI error 11 when the
// lock is not acquired within timeout. Not reentrant.
func NetNSLock(name string, timeout time.Duration, fn func() error) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lock %s: socket: %w", name, err)
	}
	defer unix.Close(fd)
	addr := &unix.SockaddrUnix{Name: "@vxvrf/" + name}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Bind(fd, addr)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("lock %s: bind: %w", name, err)
		}
		if time.Now().After(deadline) {
			return Errorf(types.ErrTryAgainLater, "lock %s (in this network namespace) held for more than %s", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fn()
}
