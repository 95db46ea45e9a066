package l7

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

func TestSmokeProxy(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s xff=%s via=%s id=%s", r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("Via"), r.Header.Get("X-Request-Id"))
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	resp, err := http.Get("http://" + s.addr() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	t.Logf("%d %q %v", resp.StatusCode, body, resp.Header)
	if resp.StatusCode != 200 {
		t.Fatalf("got status %d; want 200", resp.StatusCode)
	}
}
