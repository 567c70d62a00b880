package agent

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// ServeUninstalled answers 200 on both endpoints (the uninstall
// DaemonSet's readiness) and stops with its context.
func TestServeUninstalled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ServeUninstalled(ctx, addr) }()
	c := &http.Client{Timeout: 2 * time.Second}
	for _, path := range []string{"/readyz", "/healthz"} {
		var resp *http.Response
		for i := 0; i < 50; i++ {
			if resp, err = c.Get("http://" + addr + path); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still serving after cancel")
	}
	if _, err := c.Get("http://" + addr + "/readyz"); err == nil {
		t.Error("answers after cancel")
	}
}
