package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeaseHeldUntilBodyEnds: a streamed response counts as work in flight at
// its backend until the client has the whole body, not just the headers, so
// least_conn sees long downloads.
func TestLeaseHeldUntilBodyEnds(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("a", 64<<10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "end")
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Pool: `policy = "least_conn"`})
	backend := s.snap.Load().router.routes[0].pool.Backends()[0]
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + s.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("read the first part: %v", err)
	}
	if got := backend.InFlight(); got != 1 {
		t.Errorf("in flight while the body streams: got %d; want 1", got)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "end" {
		t.Fatalf("rest of body: got %q, %v; want \"end\"", rest, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for backend.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight after the body ended: got %d; want 0", backend.InFlight())
		}
		time.Sleep(5 * time.Millisecond) // no signal exists for "fasthttp closed its user values"
	}
}
