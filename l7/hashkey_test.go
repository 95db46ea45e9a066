package l7

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// hashPoolConfig is the config of a proxy with one route to the pool "web" of
// the three backends a, b and c, balanced by policy on hashKey.
func hashPoolConfig(policy, hashKey, a, b, c string) string {
	return fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
pool = "web"
[pools.web]
policy = %q
hash_key = %q
[[pools.web.backends]]
address = %q
[[pools.web.backends]]
address = %q
[[pools.web.backends]]
address = %q
`, policy, hashKey, a, b, c)
}

// TestHashKeySticky: with a hashing policy and a hash_key, requests that
// carry the same key reach the same backend, and different keys spread.
func TestHashKeySticky(t *testing.T) {
	name := func(n string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, n) })
	}
	a := startBackend(t, name("a"))
	b := startBackend(t, name("b"))
	c := startBackend(t, name("c"))
	for _, tc := range []struct {
		hashKey string
		set     func(r *http.Request, key string)
	}{
		{"header:X-User", func(r *http.Request, key string) { r.Header.Set("X-User", key) }},
		{"cookie:session", func(r *http.Request, key string) { r.AddCookie(&http.Cookie{Name: "session", Value: key}) }},
		{"query:user", func(r *http.Request, key string) { r.URL.RawQuery = "user=" + key }},
		{"path", func(r *http.Request, key string) { r.URL.Path = "/" + key }},
	} {
		t.Run(tc.hashKey, func(t *testing.T) {
			s := startProxy(t, hashPoolConfig("maglev", tc.hashKey, a, b, c))
			client := &http.Client{Timeout: 10 * time.Second}
			get := func(key string) string {
				t.Helper()
				req, err := http.NewRequest("GET", "http://"+s.addr()+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				tc.set(req, key)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return string(body)
			}
			seen := map[string]bool{}
			for i := 0; i < 30; i++ {
				key := fmt.Sprintf("user-%d", i)
				first := get(key)
				seen[first] = true
				for j := 0; j < 3; j++ {
					if got := get(key); got != first {
						t.Fatalf("key %q went to %q then %q; want the same backend", key, first, got)
					}
				}
			}
			if len(seen) < 2 {
				t.Errorf("30 keys all went to %v; want them spread over the backends", seen)
			}
		})
	}
}

// TestStickyCookieIssued: a pool keyed on cookie:NAME issues the cookie to a
// client that has none, and the client's next requests, carrying it, stay on
// the backend that served the first.
func TestStickyCookieIssued(t *testing.T) {
	name := func(n string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, n) })
	}
	a := startBackend(t, name("a"))
	b := startBackend(t, name("b"))
	c := startBackend(t, name("c"))
	s := startProxy(t, hashPoolConfig("ring_hash", "cookie:portico_sticky", a, b, c))
	seen := map[string]bool{}
	for i := 0; i < 12; i++ {
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + s.addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		first, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var cookie *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "portico_sticky" {
				cookie = ck
			}
		}
		if cookie == nil || len(cookie.Value) != 32 || !cookie.HttpOnly || cookie.Path != "/" {
			t.Fatalf("Set-Cookie: got %v; want portico_sticky=<32 hex>; Path=/; HttpOnly", resp.Header.Values("Set-Cookie"))
		}
		seen[string(first)] = true
		for j := 0; j < 3; j++ {
			req, _ := http.NewRequest("GET", "http://"+s.addr()+"/", nil)
			req.AddCookie(cookie)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != string(first) {
				t.Fatalf("client %d: got backend %q; want %q, the one that issued its cookie", i, body, first)
			}
			if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("a client with the cookie got Set-Cookie %v; want none", got)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("12 new clients all went to %v; want them spread", seen)
	}
}
