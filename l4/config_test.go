package l4

import (
	"strings"
	"testing"
	"time"

	"portico/lb"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{Listeners: []ListenerConfig{{Address: "127.0.0.1:7000", Pool: "p"}}}
	c.SetDefaults()
	l := c.Listeners[0]
	if l.Name != "127.0.0.1:7000" || l.ConnectTimeout != 5*time.Second || *l.ConnectRetries != 2 ||
		*l.IdleTimeout != 10*time.Minute || l.ClientHelloTimeout != 5*time.Second || l.MaxLifetime != 0 ||
		l.HighWater != 4<<20 || l.LowWater != 2<<20 || l.MaxFlowBuffer != 16<<20 || l.Loops != 0 {
		t.Fatalf("defaults: got %+v", l)
	}
	if err := c.Validate("tcp", map[string]bool{"p": true}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	pools := map[string]bool{"p": true, "q": true}
	for _, tc := range []struct {
		name string
		mod  func(*ListenerConfig)
		want string
	}{
		{"address", func(l *ListenerConfig) { l.Address = "7000" }, `tcp.listeners[0].address: want host:port, got "7000"`},
		{"no pool", func(l *ListenerConfig) { l.Pool = "" }, `tcp.listeners[0].pool: required (or set routes or default_pool for TLS passthrough)`},
		{"unknown pool", func(l *ListenerConfig) { l.Pool = "nope" }, `tcp.listeners[0].pool: pool "nope" is not defined`},
		{"both", func(l *ListenerConfig) { l.DefaultPool = "q" }, `tcp.listeners[0]: set either pool, or routes and default_pool (TLS passthrough), not both`},
		{"route name", func(l *ListenerConfig) {
			l.Pool = ""
			l.Routes = []RouteConfig{{ServerNames: []string{"a.*.com"}, Pool: "p"}}
		}, `tcp.listeners[0].routes[0].server_names[0]: want a host name or *.suffix, got "a.*.com"`},
		{"route dup", func(l *ListenerConfig) {
			l.Pool = ""
			l.Routes = []RouteConfig{{ServerNames: []string{"a.com"}, Pool: "p"}, {ServerNames: []string{"A.com"}, Pool: "q"}}
		}, `tcp.listeners[0].routes[1].server_names[0]: "a.com" is also a name of routes[0]`},
		{"route pool", func(l *ListenerConfig) {
			l.Pool = ""
			l.Routes = []RouteConfig{{ServerNames: []string{"a.com"}, Pool: "x"}}
		}, `tcp.listeners[0].routes[0].pool: pool "x" is not defined`},
		{"low", func(l *ListenerConfig) { l.LowWater = 8 << 20 }, `tcp.listeners[0].low_water: must be at least 1 and below high_water (4194304), got 8388608`},
		{"high", func(l *ListenerConfig) { l.HighWater = 1024 }, `tcp.listeners[0].high_water: must be 65536 to 1073741824, got 1024`},
		{"cap", func(l *ListenerConfig) { l.MaxFlowBuffer = 1 << 20 }, `tcp.listeners[0].max_flow_buffer: must be 2 × (high_water + 65536) = 8519680 to 1073741824, got 1048576`},
		{"retries", func(l *ListenerConfig) { n := 11; l.ConnectRetries = &n }, `tcp.listeners[0].connect_retries: must be 0 to 10, got 11`},
		{"idle", func(l *ListenerConfig) { d := -time.Second; l.IdleTimeout = &d }, `tcp.listeners[0].idle_timeout: must not be negative, got -1s`},
		{"loops", func(l *ListenerConfig) { l.Loops = -1 }, `tcp.listeners[0].loops: must be 0 (one per CPU) to 1024, got -1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ListenerConfig{Address: "127.0.0.1:7000", Pool: "p"}
			tc.mod(&l)
			c := Config{Listeners: []ListenerConfig{l}}
			c.SetDefaults()
			err := c.Validate("tcp", pools)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want %q", err, tc.want)
			}
		})
	}
}

func TestRouteMatch(t *testing.T) {
	// Pools are only compared by identity here.
	s := &Server{}
	c := Config{Listeners: []ListenerConfig{{Name: "t", Routes: []RouteConfig{
		{ServerNames: []string{"a.example.com", "*.example.com"}, Pool: "x"},
		{ServerNames: []string{"*.b.example.com"}, Pool: "y"},
	}, DefaultPool: "z"}}}
	x, y, z := newTestPool(t, "x", "round_robin", "127.0.0.1:1"), newTestPool(t, "y", "round_robin", "127.0.0.1:1"), newTestPool(t, "z", "round_robin", "127.0.0.1:1")
	if err := s.Swap(&c, map[string]*lb.Pool{"x": x, "y": y, "z": z}); err != nil {
		t.Fatal(err)
	}
	rt := s.snap.Load().routes[0]
	for name, want := range map[string]*lb.Pool{
		"a.example.com":     x,
		"c.example.com":     x,
		"c.b.example.com":   y,
		"d.c.b.example.com": y,
		"example.com":       z,
		"":                  z,
		"b.example.com":     x,
	} {
		if got := rt.match(name); got != want {
			t.Errorf("match(%q): got %s; want %s", name, got.Name, want.Name)
		}
	}
}
