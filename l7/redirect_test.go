package l7

import (
	"testing"
)

func TestRedirect(t *testing.T) {
	s := startProxy(t, `
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
match = { path_prefix = "/https" }
redirect = { scheme = "https", status = 301 }
[[http.routes]]
match = { path_prefix = "/host" }
redirect = { host = "new.test" }
[[http.routes]]
match = { path_prefix = "/port" }
redirect = { scheme = "https", port = 9443, status = 307 }
[[http.routes]]
match = { path_prefix = "/path" }
redirect = { path = "/new/place", status = 308 }
[[http.routes]]
match = { path_prefix = "/p443" }
redirect = { scheme = "https", port = 443, status = 301 }
[[http.routes]]
match = { path_prefix = "/same" }
redirect = { scheme = "http" }
[[http.routes]]
match = { path_prefix = "/http80" }
redirect = { port = 80, status = 307 }
[[http.routes]]
name = "all"
match = { hosts = ["www.test"] }
redirect = { scheme = "https", host = "example.test", port = 8443, path = "/", status = 308 }
`)
	for _, tc := range []struct {
		name, target, host string
		wantStatus         int
		wantLocation       string
	}{
		{"http to https drops the port", "/https/a/b?q=1&r=%2F", "plain.test:8080", 301, "https://plain.test/https/a/b?q=1&r=%2F"},
		{"http to https without port", "/https", "Plain.Test", 301, "https://plain.test/https"},
		{"http to https from an absolute target", "http://abs.test:81/https?x", "other.test", 301, "https://abs.test/https?x"},
		{"http to https from IPv6", "/https/v6", "[::1]:8080", 301, "https://[::1]/https/v6"},
		{"host replaced, port and scheme kept", "/host/x?y=2", "old.test:8080", 302, "http://new.test:8080/host/x?y=2"},
		{"port replaced", "/port/x?y", "h.test:8080", 307, "https://h.test:9443/port/x?y"},
		{"path replaced, query kept", "/path/old?q=1", "h.test:8080", 308, "http://h.test:8080/new/place?q=1"},
		{"default port dropped", "/p443", "h.test:8080", 301, "https://h.test/p443"},
		{"same scheme keeps the port", "/same?q", "h.test:8080", 302, "http://h.test:8080/same?q"},
		{"port 80 on http dropped", "/http80", "h.test:8080", 307, "http://h.test/http80"},
		{"path normalised", "/https/a/../b/./c//d", "h.test", 301, "https://h.test/https/b/c/d"},
		{"encoded path kept", "/https/a%2Fb%20c", "h.test", 301, "https://h.test/https/a%2Fb%20c"},
		{"everything replaced", "/x/y?keep=1", "www.test:8080", 308, "https://example.test:8443/?keep=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, s.addr(), "GET "+tc.target+" HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status: got %d; want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := resp.Header.Get("Location"); got != tc.wantLocation {
				t.Errorf("Location: got %q; want %q", got, tc.wantLocation)
			}
			if body != "" {
				t.Errorf("body: got %q; want none", body)
			}
		})
	}
}
