package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAdminCachePurge: POST /cache/purge drops a cached response, so the
// next request goes to the backend again.
func TestAdminCachePurge(t *testing.T) {
	origin := http.NewServeMux()
	hits := make(chan struct{}, 10)
	origin.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		hits <- struct{}{}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "cached")
	})
	be := startBackend(t, origin)
	pc := startPortico(t, fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[pools.web]
backends = [{ address = %q }]

[[http.listeners]]
address = "127.0.0.1:0"

[[http.routes]]
pool = "web"
cache = { enabled = true }
`, be))
	xcache := func() string {
		t.Helper()
		_, h, body := pc.get(pc.url("/a"))
		if body != "cached" {
			t.Fatalf("got body %q; want cached", body)
		}
		return h.Get("X-Cache")
	}
	for i, want := range []string{"MISS", "HIT"} {
		if got := xcache(); got != want {
			t.Fatalf("request %d: X-Cache: got %q; want %q", i, got, want)
		}
	}
	purge := func(query string, wantStatus int, wantBody string) {
		t.Helper()
		resp, err := pc.client.Post(pc.adminURL("/cache/purge?"+query), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("purge %s: status %d; want %d", query, resp.StatusCode, wantStatus)
		}
		if wantBody != "" && strings.TrimSpace(string(body)) != wantBody {
			t.Errorf("purge %s: got %q; want %q", query, body, wantBody)
		}
	}
	purge("", http.StatusBadRequest, "")
	purge("key="+pc.url("/a"), http.StatusOK, `{"purged":1}`)
	if got := xcache(); got != "MISS" {
		t.Errorf("after purge: X-Cache: got %q; want MISS", got)
	}
	purge("all=1", http.StatusOK, "")
	if got := xcache(); got != "MISS" {
		t.Errorf("after purge all: X-Cache: got %q; want MISS", got)
	}
	if n := len(hits); n != 3 {
		t.Errorf("backend requests: got %d; want 3", n)
	}
}
