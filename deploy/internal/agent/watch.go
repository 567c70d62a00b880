package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// watchConfig reconciles when the cluster config file changes. It watches
// the file's directory with inotify: a ConfigMap volume is updated by
// swapping a symlink (..data) in that directory, which a watch on the file
// itself would miss.
func (a *Agent) watchConfig(ctx context.Context) {
	dir := filepath.Dir(a.cfg.Install.Config)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		a.logf("inotify: %v; cluster config changes are seen at the next Node event only", err)
		return
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_DELETE|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		a.logf("inotify on %s: %v; cluster config changes are seen at the next Node event only", dir, err)
		return
	}
	// Closing the descriptor wakes the poll below when ctx ends.
	go func() {
		<-ctx.Done()
		unix.Close(fd)
	}()
	buf := make([]byte, 64<<10)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		a.queue.Add(key)
	}
}

// Healthy reports whether the agent is alive: its worker is not stuck in
// one reconcile for longer than limit.
func (s Status) Healthy(limit time.Duration) error {
	if !s.Busy.IsZero() && time.Since(s.Busy) > limit {
		return fmt.Errorf("a reconcile has been running since %s", s.Busy.Format(time.RFC3339))
	}
	return nil
}

// ServeHealth serves /healthz (liveness: the worker is not stuck) and
// /readyz (readiness: Node list synced, conflist rendered, flood lists
// programmed) on addr until ctx ends. Both answer with the status as JSON.
func (a *Agent) ServeHealth(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, s Status, bad error) {
		w.Header().Set("Content-Type", "application/json")
		if bad != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(struct {
			Status
			Problem string `json:"problem,omitempty"`
		}{s, errString(bad)})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		s := a.Status()
		reply(w, s, s.Healthy(2*time.Minute))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		s := a.Status()
		var bad error
		switch {
		case !s.Synced:
			bad = errors.New("waiting for the Node list")
		case !s.Ready:
			bad = errors.New(s.Err)
		}
		reply(w, s, bad)
	})
	return serve(ctx, ln, mux)
}

// ServeUninstalled answers 200 on /healthz and /readyz at addr until ctx
// ends: what `--uninstall --wait` serves once the node is clean, so the
// uninstall DaemonSet's readiness probe says exactly that.
func ServeUninstalled(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	done := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"uninstalled":true}` + "\n"))
	}
	mux.HandleFunc("/healthz", done)
	mux.HandleFunc("/readyz", done)
	return serve(ctx, ln, mux)
}

// serve runs an HTTP server on ln until ctx ends.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
