package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunSIGHUPResizesCache: a reload's http.cache.max_bytes resizes the
// running cache, which keeps what it stores.
func TestRunSIGHUPResizesCache(t *testing.T) {
	be := textBackend(t, "A")
	config := func(maxBytes int) string {
		return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[demo]
http = []
tcp_echo = ""

[pools.a]
  [[pools.a.backends]]
  address = %q

[[http.listeners]]
address = "127.0.0.1:0"

[http.cache]
max_bytes = %d

[[http.routes]]
pool = "a"
cache = { enabled = true, default_ttl = "1h" }
`, be, maxBytes)
	}
	pc := startPortico(t, config(64<<20))
	if _, _, body := pc.get(pc.url("/")); body != "A" {
		t.Fatalf("got body %q; want A", body)
	}
	pc.writeConfig(config(32 << 20))
	log := pc.stderr.waitFor(t, pc.signal(syscall.SIGHUP), "config reloaded")
	if want := "cache resized"; !strings.Contains(log, want) || !strings.Contains(log, "from=67108864 to=33554432") {
		t.Errorf("got log\n%s\nwant %q from=67108864 to=33554432", log, want)
	}
	pc.signal(syscall.SIGTERM)
	if code := pc.wait(10 * time.Second); code != 0 {
		t.Errorf("got exit code %d; want 0", code)
	}
}
