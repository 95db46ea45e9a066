package l7

import (
	"strings"
	"testing"
	"time"
)

// validConfig is a config that passes Validate once defaults are set.
func validConfig() Config {
	c := Config{
		Listeners: []ListenerConfig{{Address: "127.0.0.1:8080"}},
		Routes: []RouteConfig{
			{Name: "web", Pool: "web"},
			{Name: "redir", Redirect: &RedirectConfig{Scheme: "https"}},
		},
	}
	c.SetDefaults()
	return c
}

var testPools = map[string]bool{"web": true}

func TestConfigValidateAcceptsDefaults(t *testing.T) {
	c := validConfig()
	c.Listeners = append(c.Listeners, ListenerConfig{Address: "127.0.0.1:0"}, ListenerConfig{Address: "127.0.0.1:0"})
	c.Routes[0].Match = MatchConfig{Hosts: []string{"a.test", "*.b.test", "[::1]", "C.Test."}, PathPrefix: "/api/", Methods: []string{"GET", "M-SEARCH"},
		Headers: map[string]string{"x-a": "*"}, Query: map[string]string{"q": "1"}}
	c.Routes[0].Rewrite = RewriteConfig{StripPrefix: "/api", Regex: "^/(.*)$", Replacement: "/v1/$1", AddPrefix: "/svc"}
	c.Routes[0].Headers = HeadersConfig{RequestSet: map[string]string{"X-Id": "{request_id} {{x}}"}, ResponseAdd: map[string]string{"X-B": "{backend}\tz"}, RequestRemove: []string{"Cookie"}}
	c.Routes[1].Redirect = &RedirectConfig{Status: 308, Scheme: "http", Host: "b.test", Port: 8080, Path: "/x/y"}
	c.SetDefaults()
	if err := c.Validate("http", testPools); err != nil {
		t.Fatalf("got %v; want no error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		// Listeners.
		{"no listener", func(c *Config) { c.Listeners = nil },
			`http.listeners: at least one listener is required`},
		{"address without port", func(c *Config) { c.Listeners[0].Address = "localhost" },
			`http.listeners[0].address: want host:port, got "localhost"`},
		{"address empty", func(c *Config) { c.Listeners[0].Address = "" },
			`http.listeners[0].address: want host:port, got ""`},
		{"address twice", func(c *Config) {
			c.Listeners = append(c.Listeners, ListenerConfig{Address: "127.0.0.1:8080", MaxHeaderBytes: 4096})
		}, `http.listeners[1].address: "127.0.0.1:8080" is also the address of listeners[0]`},
		{"cert file", func(c *Config) { c.Listeners[0].Certificates = []CertificateConfig{{KeyFile: "k"}} },
			`http.listeners[0].certificates[0].cert_file: required`},
		{"key file", func(c *Config) {
			c.Listeners[0].Certificates = []CertificateConfig{{CertFile: "c", KeyFile: "k"}, {CertFile: "c"}}
		}, `http.listeners[0].certificates[1].key_file: required`},
		{"header timeout", func(c *Config) { c.Listeners[0].HeaderTimeout = -time.Second },
			`http.listeners[0].header_timeout: must not be negative, got -1s`},
		{"body timeout", func(c *Config) { c.Listeners[0].BodyTimeout = -time.Millisecond },
			`http.listeners[0].body_timeout: must not be negative, got -1ms`},
		{"idle timeout", func(c *Config) { c.Listeners[0].IdleTimeout = -time.Minute },
			`http.listeners[0].idle_timeout: must not be negative, got -1m0s`},
		{"write timeout", func(c *Config) { c.Listeners[0].WriteTimeout = -time.Second },
			`http.listeners[0].write_timeout: must not be negative, got -1s`},
		{"max header bytes small", func(c *Config) { c.Listeners[0].MaxHeaderBytes = 1023 },
			`http.listeners[0].max_header_bytes: must be 1024 to 1048576, got 1023`},
		{"max header bytes large", func(c *Config) { c.Listeners[0].MaxHeaderBytes = 1<<20 + 1 },
			`http.listeners[0].max_header_bytes: must be 1024 to 1048576, got 1048577`},
		{"max body bytes", func(c *Config) { n := int64(-1); c.Listeners[0].MaxBodyBytes = &n },
			`http.listeners[0].max_body_bytes: must not be negative, got -1`},
		{"max conns", func(c *Config) { c.Listeners[0].MaxConns = -1 },
			`http.listeners[0].max_conns: must not be negative, got -1`},

		// Route names and pools.
		{"route name twice", func(c *Config) { c.Routes[1].Name = "web" },
			`http.routes[1].name: "web" is also the name of routes[0]`},
		{"route name reserved", func(c *Config) { c.Routes[0].Name = "none" },
			`http.routes[0].name: "none" is reserved for requests that no route takes`},
		{"pool missing", func(c *Config) { c.Routes[0].Pool = "" },
			`http.routes[0].pool: required (or set redirect)`},
		{"pool undefined", func(c *Config) {
			c.Routes = append(c.Routes, RouteConfig{Name: "api", Pool: "api"})
		}, `http.routes[2].pool: pool "api" is not defined`},
		{"pool and redirect", func(c *Config) { c.Routes[1].Pool = "web" },
			`http.routes[1]: set either pool or redirect, not both`},

		// Match.
		{"host empty", func(c *Config) { c.Routes[0].Match.Hosts = []string{"a.test", ""} },
			`http.routes[0].match.hosts[1]: want a name or *.suffix, got ""`},
		{"host star alone", func(c *Config) { c.Routes[0].Match.Hosts = []string{"*"} },
			`http.routes[0].match.hosts[0]: want a name or *.suffix, got "*"`},
		{"host star without dot", func(c *Config) { c.Routes[0].Match.Hosts = []string{"*example.com"} },
			`http.routes[0].match.hosts[0]: want a name or *.suffix, got "*example.com"`},
		{"host star empty suffix", func(c *Config) { c.Routes[0].Match.Hosts = []string{"*."} },
			`http.routes[0].match.hosts[0]: want a name or *.suffix, got "*."`},
		{"host star inside", func(c *Config) { c.Routes[0].Match.Hosts = []string{"a.*.test"} },
			`http.routes[0].match.hosts[0]: want a name or *.suffix, got "a.*.test"`},
		{"host with path", func(c *Config) { c.Routes[0].Match.Hosts = []string{"a.test/x"} },
			`http.routes[0].match.hosts[0]: want a name or *.suffix, got "a.test/x"`},
		{"host with port", func(c *Config) { c.Routes[0].Match.Hosts = []string{"a.test:8080"} },
			`http.routes[0].match.hosts[0]: must not have a port (the request's is ignored), got "a.test:8080"`},
		{"host IPv6 with port", func(c *Config) { c.Routes[0].Match.Hosts = []string{"[::1]:80"} },
			`http.routes[0].match.hosts[0]: must not have a port (the request's is ignored), got "[::1]:80"`},
		{"two path kinds", func(c *Config) { c.Routes[0].Match.Path, c.Routes[0].Match.PathRegex = "/a", "^/b" },
			`http.routes[0].match: set at most one of path, path_prefix and path_regex`},
		{"path relative", func(c *Config) { c.Routes[0].Match.Path = "a" },
			`http.routes[0].match.path: must start with /, got "a"`},
		{"path not normal", func(c *Config) { c.Routes[0].Match.Path = "/a/../b%2e" },
			`http.routes[0].match.path: requests are matched in normal form, so "/a/../b%2e" never matches; want "/b."`},
		{"path prefix relative", func(c *Config) { c.Routes[0].Match.PathPrefix = "api" },
			`http.routes[0].match.path_prefix: must start with /, got "api"`},
		{"path regex", func(c *Config) { c.Routes[0].Match.PathRegex = "(a" },
			"http.routes[0].match.path_regex: error parsing regexp: missing closing ): `(a`"},
		{"method lower case", func(c *Config) { c.Routes[0].Match.Methods = []string{"GET", "post"} },
			`http.routes[0].match.methods[1]: want an upper-case method, got "post"`},
		{"method empty", func(c *Config) { c.Routes[0].Match.Methods = []string{""} },
			`http.routes[0].match.methods[0]: want an upper-case method, got ""`},
		{"method not a token", func(c *Config) { c.Routes[0].Match.Methods = []string{"GET POST"} },
			`http.routes[0].match.methods[0]: want an upper-case method, got "GET POST"`},
		{"match header name", func(c *Config) { c.Routes[0].Match.Headers = map[string]string{"X-Ok": "1", "bad name": "1"} },
			`http.routes[0].match.headers: "bad name" is not a valid header name`},

		// Redirect.
		{"redirect status", func(c *Config) { c.Routes[1].Redirect.Status = 303 },
			`http.routes[1].redirect.status: want 301, 302, 307 or 308, got 303`},
		{"redirect scheme", func(c *Config) { c.Routes[1].Redirect.Scheme = "ftp" },
			`http.routes[1].redirect.scheme: want "http" or "https", got "ftp"`},
		{"redirect port", func(c *Config) { c.Routes[1].Redirect.Port = 70000 },
			`http.routes[1].redirect.port: must be 0 to 65535, got 70000`},
		{"redirect port negative", func(c *Config) { c.Routes[1].Redirect.Port = -1 },
			`http.routes[1].redirect.port: must be 0 to 65535, got -1`},
		{"redirect host with port", func(c *Config) { c.Routes[1].Redirect.Host = "b.test:443" },
			`http.routes[1].redirect.host: want a host name without port, got "b.test:443"`},
		{"redirect host with path", func(c *Config) { c.Routes[1].Redirect.Host = "evil.test/x" },
			`http.routes[1].redirect.host: want a host name without port, got "evil.test/x"`},
		{"redirect host with userinfo", func(c *Config) { c.Routes[1].Redirect.Host = "a@evil.test" },
			`http.routes[1].redirect.host: want a host name without port, got "a@evil.test"`},
		{"redirect path relative", func(c *Config) { c.Routes[1].Redirect.Path = "x" },
			`http.routes[1].redirect.path: must start with /, got "x"`},
		{"redirect path network", func(c *Config) { c.Routes[1].Redirect.Path = "//evil.test/x" },
			`http.routes[1].redirect.path: must not start with //, got "//evil.test/x"`},
		{"redirect path query", func(c *Config) { c.Routes[1].Redirect.Path = "/x?y=1" },
			`http.routes[1].redirect.path: must not contain spaces, control characters, ? or #, got "/x?y=1"`},

		// Rewrite.
		{"strip prefix relative", func(c *Config) { c.Routes[0].Rewrite.StripPrefix = "api" },
			`http.routes[0].rewrite.strip_prefix: must start with /, got "api"`},
		{"add prefix relative", func(c *Config) { c.Routes[0].Rewrite.AddPrefix = "v1" },
			`http.routes[0].rewrite.add_prefix: must start with /, got "v1"`},
		{"add prefix space", func(c *Config) { c.Routes[0].Rewrite.AddPrefix = "/v 1" },
			`http.routes[0].rewrite.add_prefix: must not contain spaces, control characters, ? or #, got "/v 1"`},
		{"replacement query", func(c *Config) { c.Routes[0].Rewrite.Regex, c.Routes[0].Rewrite.Replacement = "^/x", "/y?z" },
			`http.routes[0].rewrite.replacement: must not contain spaces, control characters, ? or #, got "/y?z"`},
		{"replacement CR", func(c *Config) { c.Routes[0].Rewrite.Regex, c.Routes[0].Rewrite.Replacement = "^/x", "/y\r\nX: 1" },
			`http.routes[0].rewrite.replacement: must not contain spaces, control characters, ? or #, got "/y\r\nX: 1"`},
		{"rewrite regex", func(c *Config) { c.Routes[0].Rewrite.Regex = "a)" },
			"http.routes[0].rewrite.regex: error parsing regexp: unexpected ): `a)`"},
		{"replacement without regex", func(c *Config) { c.Routes[0].Rewrite.Replacement = "/x" },
			`http.routes[0].rewrite.replacement: set only with regex`},

		// Headers.
		{"set name", func(c *Config) { c.Routes[0].Headers.RequestSet = map[string]string{"X(": "1"} },
			`http.routes[0].headers.request_set: "X(" is not a valid header name`},
		{"add name", func(c *Config) { c.Routes[0].Headers.ResponseAdd = map[string]string{"": "1"} },
			`http.routes[0].headers.response_add: "" is not a valid header name`},
		{"set framing", func(c *Config) { c.Routes[0].Headers.ResponseSet = map[string]string{"content-length": "0"} },
			`http.routes[0].headers.response_set: "content-length" frames the message and cannot be set`},
		{"add framing", func(c *Config) { c.Routes[0].Headers.RequestAdd = map[string]string{"Transfer-Encoding": "chunked"} },
			`http.routes[0].headers.request_add: "Transfer-Encoding" frames the message and cannot be set`},
		{"unknown placeholder", func(c *Config) { c.Routes[0].Headers.RequestSet = map[string]string{"X-A": "{nope}"} },
			`http.routes[0].headers.request_set.X-A: unknown placeholder {nope} in "{nope}"`},
		{"unclosed placeholder", func(c *Config) { c.Routes[0].Headers.ResponseSet = map[string]string{"X-A": "a{host"} },
			`http.routes[0].headers.response_set.X-A: unclosed { at offset 1 in "a{host"`},
		{"unmatched brace", func(c *Config) { c.Routes[0].Headers.ResponseAdd = map[string]string{"X-A": "a}}b}"} },
			`http.routes[0].headers.response_add.X-A: unmatched } at offset 4 in "a}}b}"`},
		{"control character", func(c *Config) { c.Routes[0].Headers.RequestAdd = map[string]string{"X-A": "a\x01b"} },
			`http.routes[0].headers.request_add.X-A: control character in "a\x01b"`},
		{"newline", func(c *Config) { c.Routes[0].Headers.RequestSet = map[string]string{"X-A": "a\r\nX-Evil: 1"} },
			`http.routes[0].headers.request_set.X-A: control character in "a\r\nX-Evil: 1"`},
		{"backend in request", func(c *Config) { c.Routes[0].Headers.RequestAdd = map[string]string{"X-B": "to {backend}"} },
			`http.routes[0].headers.request_add.X-B: {backend} is known only for responses`},
		{"remove name", func(c *Config) { c.Routes[0].Headers.RequestRemove = []string{"X-Ok", "a b"} },
			`http.routes[0].headers.request_remove[1]: "a b" is not a valid header name`},
		{"response remove name", func(c *Config) { c.Routes[0].Headers.ResponseRemove = []string{"x:y"} },
			`http.routes[0].headers.response_remove[0]: "x:y" is not a valid header name`},

		// Upstream and access log.
		{"connect timeout", func(c *Config) { c.Upstream.ConnectTimeout = -time.Second },
			`http.upstream.connect_timeout: must not be negative, got -1s`},
		{"response timeout", func(c *Config) { c.Upstream.ResponseTimeout = -time.Second },
			`http.upstream.response_timeout: must not be negative, got -1s`},
		{"upstream write timeout", func(c *Config) { c.Upstream.WriteTimeout = -time.Second },
			`http.upstream.write_timeout: must not be negative, got -1s`},
		{"upstream idle timeout", func(c *Config) { c.Upstream.IdleTimeout = -time.Second },
			`http.upstream.idle_timeout: must not be negative, got -1s`},
		{"max conn wait", func(c *Config) { d := -time.Second; c.Upstream.MaxConnWait = &d },
			`http.upstream.max_conn_wait: must not be negative, got -1s`},
		{"upstream max conns", func(c *Config) { c.Upstream.MaxConns = -1 },
			`http.upstream.max_conns: must be at least 1, got -1`},
		{"retries negative", func(c *Config) { n := -1; c.Upstream.Retries = &n },
			`http.upstream.retries: must be 0 to 10, got -1`},
		{"retries many", func(c *Config) { n := 11; c.Upstream.Retries = &n },
			`http.upstream.retries: must be 0 to 10, got 11`},
		{"response header bytes", func(c *Config) { c.Upstream.MaxResponseHeaderBytes = 1000 },
			`http.upstream.max_response_header_bytes: must be at least 1024, got 1000`},
		{"access log format", func(c *Config) { c.AccessLog.Format = "xml" },
			`http.access_log.format: want "common" or "json", got "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			err := c.Validate("http", testPools)
			if err == nil {
				t.Fatalf("got no error; want %q", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %q;\nwant %q", got, tc.want)
			}
		})
	}
}

// TestConfigValidateReportsAll checks that every problem is reported at
// once, one per line, in config order.
func TestConfigValidateReportsAll(t *testing.T) {
	c := validConfig()
	c.Listeners[0].Address = "nope"
	c.Routes[0].Match.Methods = []string{"get"}
	c.Routes[0].Headers.ResponseSet = map[string]string{"X-A": "{x}"}
	c.Routes[1].Redirect.Status = 200
	c.Routes = append(c.Routes, RouteConfig{Name: "api", Pool: "api"})
	ninetyNine := 99
	c.Upstream.Retries = &ninetyNine
	c.AccessLog.Format = "csv"
	err := c.Validate("http", testPools)
	if err == nil {
		t.Fatal("got no error; want seven")
	}
	want := []string{
		`http.listeners[0].address: want host:port, got "nope"`,
		`http.routes[0].match.methods[0]: want an upper-case method, got "get"`,
		`http.routes[0].headers.response_set.X-A: unknown placeholder {x} in "{x}"`,
		`http.routes[1].redirect.status: want 301, 302, 307 or 308, got 200`,
		`http.routes[2].pool: pool "api" is not defined`,
		`http.upstream.retries: must be 0 to 10, got 99`,
		`http.access_log.format: want "common" or "json", got "csv"`,
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestConfigValidateListenersOnPortZero pins that two listeners on port 0
// (each gets its own port) are not reported as sharing an address.
func TestConfigValidateListenersOnPortZero(t *testing.T) {
	c := validConfig()
	c.Listeners = []ListenerConfig{{Address: "127.0.0.1:0"}, {Address: "127.0.0.1:0"}}
	c.SetDefaults()
	if err := c.Validate("http", testPools); err != nil {
		t.Fatalf("got %v; want no error", err)
	}
}
