package lb

import (
	"strings"
	"testing"
	"time"
)

func TestPoolConfigDefaults(t *testing.T) {
	c := PoolConfig{
		Policy:      PolicyMaglev,
		HashKey:     "client_ip",
		BoundedLoad: BoundedLoadConfig{Enabled: true},
		HealthCheck: HealthCheckConfig{Type: "http"},
		Outlier:     OutlierConfig{ConsecutiveFailures: 5},
		Backends:    []BackendConfig{{Address: "127.0.0.1:9001"}},
	}
	c.SetDefaults()
	want := PoolConfig{
		Policy:      PolicyMaglev,
		HashKey:     "client_ip",
		BoundedLoad: BoundedLoadConfig{Enabled: true, Factor: 1.25},
		Maglev:      MaglevConfig{TableSize: 65537},
		HealthCheck: HealthCheckConfig{Type: "http", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3, Path: "/", ExpectStatus: "200-399"},
		Outlier:     OutlierConfig{ConsecutiveFailures: 5, BaseEjection: 10 * time.Second, MaxEjection: 5 * time.Minute, MaxEjectedPercent: 50},
		Backends:    []BackendConfig{{Name: "127.0.0.1:9001", Address: "127.0.0.1:9001", Weight: 1}},
	}
	if got := c; !configEqual(got, want) {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if err := c.Validate("pools.web"); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// An empty section is round robin with nothing else on.
	var e PoolConfig
	e.SetDefaults()
	if e.Policy != PolicyRoundRobin || e.RingHash != (RingHashConfig{}) || e.HealthCheck != (HealthCheckConfig{}) {
		t.Errorf("empty section after SetDefaults: %+v; want round_robin and no feature settings", e)
	}
}

func configEqual(a, b PoolConfig) bool {
	return a.Policy == b.Policy && a.HashKey == b.HashKey && a.BoundedLoad == b.BoundedLoad &&
		a.RingHash == b.RingHash && a.Maglev == b.Maglev && a.P2C == b.P2C && a.SlowStart == b.SlowStart &&
		a.PanicMode == b.PanicMode && a.SendProxy == b.SendProxy && a.HealthCheck == b.HealthCheck && a.Outlier == b.Outlier && equal(a.Backends, b.Backends)
}

// TestPoolConfigValidate pins every message: each case edits a valid
// section and expects exactly the listed errors, in order.
func TestPoolConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *PoolConfig)
		want []string
	}{
		{"valid", func(c *PoolConfig) {}, nil},
		{"unknown policy", func(c *PoolConfig) { c.Policy = "fastest" },
			[]string{`pools.web.policy: unknown policy "fastest" (want round_robin, weighted_round_robin, random, least_conn, p2c, ring_hash or maglev)`}},
		{"hash key missing", func(c *PoolConfig) { c.Policy = PolicyRingHash; c.RingHash.VirtualNodes = 160 },
			[]string{`pools.web.hash_key: policy "ring_hash" needs a hash key (client_ip, sni, host, uri, path, header:NAME, cookie:NAME or query:NAME)`}},
		{"hash key unused", func(c *PoolConfig) { c.HashKey = "uri" },
			[]string{`pools.web.hash_key: policy "weighted_round_robin" does not hash; remove hash_key or use ring_hash or maglev`}},
		{"hash key bad", func(c *PoolConfig) { c.HashKey = "header:" },
			[]string{`pools.web.hash_key: header name must be a non-empty token, got ""`}},
		{"hash key unknown", func(c *PoolConfig) { c.HashKey = "body" },
			[]string{`pools.web.hash_key: want client_ip, sni, host, uri, path, header:NAME, cookie:NAME or query:NAME, got "body"`}},
		{"bounded without hashing", func(c *PoolConfig) { c.BoundedLoad = BoundedLoadConfig{Enabled: true, Factor: 1.25} },
			[]string{`pools.web.bounded_load.enabled: needs policy ring_hash or maglev, got "weighted_round_robin"`}},
		{"bounded factor while off", func(c *PoolConfig) { c.BoundedLoad.Factor = 2 },
			[]string{`pools.web.bounded_load.factor: set, but bounded_load.enabled is false`}},
		{"bounded factor low", func(c *PoolConfig) { maglevOn(c); c.BoundedLoad = BoundedLoadConfig{Enabled: true, Factor: 0.5} },
			[]string{`pools.web.bounded_load.factor: must be 1 to 100, got 0.5`}},
		{"maglev not prime", func(c *PoolConfig) { maglevOn(c); c.Maglev.TableSize = 8 },
			[]string{`pools.web.maglev.table_size: must be prime, got 8`}},
		{"maglev too small", func(c *PoolConfig) { maglevOn(c); c.Maglev.TableSize = 2 },
			[]string{`pools.web.maglev.table_size: must be 3 (the number of backends, at least 2) to 16777213, got 2`}},
		{"maglev table for another policy", func(c *PoolConfig) { c.Maglev.TableSize = 65537 },
			[]string{`pools.web.maglev: set, but policy is "weighted_round_robin"`}},
		{"ring points", func(c *PoolConfig) {
			c.Policy, c.HashKey, c.RingHash.VirtualNodes = PolicyRingHash, "uri", 10000
			c.Backends[0].Weight = 1000
		}, []string{`pools.web.ring_hash.virtual_nodes: 10000 × total weight 1002 is 10020000 ring points, more than 10000000`}},
		{"ring virtual nodes", func(c *PoolConfig) { c.Policy, c.HashKey, c.RingHash.VirtualNodes = PolicyRingHash, "uri", -1 },
			[]string{`pools.web.ring_hash.virtual_nodes: must be 1 to 10000, got -1`}},
		{"p2c decay without latency", func(c *PoolConfig) { c.Policy, c.P2C.Decay = PolicyP2C, time.Second },
			[]string{`pools.web.p2c.decay: set, but p2c.latency is false`}},
		{"p2c decay range", func(c *PoolConfig) { c.Policy, c.P2C = PolicyP2C, P2CConfig{Latency: true, Decay: time.Microsecond} },
			[]string{`pools.web.p2c.decay: must be 1ms to 1h, got 1µs`}},
		{"slow start with round robin", func(c *PoolConfig) {
			c.Policy, c.SlowStart = PolicyRoundRobin, time.Second
			for i := range c.Backends {
				c.Backends[i].Weight = 1
			}
		}, []string{`pools.web.slow_start: policy "round_robin" ignores weights; use weighted_round_robin`}},
		{"round robin weights", func(c *PoolConfig) { c.Policy = PolicyRoundRobin; c.Backends[1].Weight = 3 },
			[]string{`pools.web.backends[1].weight: policy "round_robin" ignores weights; use weighted_round_robin, got 3 (backends[0] has 1)`}},
		{"send proxy v2", func(c *PoolConfig) { c.SendProxy = "v2" }, nil},
		{"send proxy unknown", func(c *PoolConfig) { c.SendProxy = "V2" },
			[]string{`pools.web.send_proxy: want "v1", "v2" or "", got "V2"`}},
		{"health settings without type", func(c *PoolConfig) { c.HealthCheck = HealthCheckConfig{Path: "/healthz"} },
			[]string{`pools.web.health_check: settings given, but type is not set (want "tcp" or "http")`}},
		{"health type", func(c *PoolConfig) { c.HealthCheck.Type = "icmp" },
			[]string{`pools.web.health_check.type: want "tcp" or "http", got "icmp"`}},
		{"health ranges", func(c *PoolConfig) {
			c.HealthCheck = HealthCheckConfig{Type: "http", Interval: time.Millisecond, Timeout: 2 * time.Hour, Rise: 101, Fall: -1, Path: "healthz", ExpectStatus: "300-200"}
		}, []string{
			`pools.web.health_check.interval: must be 10ms to 1h, got 1ms`,
			`pools.web.health_check.timeout: must be 1ms to 1h, got 2h0m0s`,
			`pools.web.health_check.rise: must be 1 to 100, got 101`,
			`pools.web.health_check.fall: must be 1 to 100, got -1`,
			`pools.web.health_check.path: must start with "/" and hold no spaces, got "healthz"`,
			`pools.web.health_check.expect_status: want a status or a range of statuses from 100 to 599 such as "200-399", got "300-200"`,
		}},
		{"tcp with http settings", func(c *PoolConfig) { c.HealthCheck = HealthCheckConfig{Type: "tcp", Path: "/x"} },
			[]string{`pools.web.health_check.path: only for type "http"`}},
		{"outlier settings while off", func(c *PoolConfig) { c.Outlier.BaseEjection = time.Second },
			[]string{`pools.web.outlier: settings given, but consecutive_failures is 0 (passive checks off)`}},
		{"outlier ranges", func(c *PoolConfig) {
			c.Outlier = OutlierConfig{ConsecutiveFailures: 5, BaseEjection: time.Minute, MaxEjection: time.Second, MaxEjectedPercent: 101}
		}, []string{
			`pools.web.outlier.max_ejection: must be base_ejection (1m0s) to 1h, got 1s`,
			`pools.web.outlier.max_ejected_percent: must be 1 to 100, got 101`,
		}},
		{"slow start negative", func(c *PoolConfig) { c.SlowStart = -time.Second },
			[]string{`pools.web.slow_start: must be 0s to 1h, got -1s`}},
		{"backends", func(c *PoolConfig) {
			c.Backends[0].Address = "nowhere"
			c.Backends[1].Weight = 1001
			c.Backends[2].Name = c.Backends[0].Name
		}, []string{
			`pools.web.backends[0].address: want host:port, got "nowhere"`,
			`pools.web.backends[1].weight: must be 1 to 1000, got 1001`,
			`pools.web.backends[2].name: "b0" is also the name of backends[0]`,
		}},
		{"no backends", func(c *PoolConfig) { c.Backends = nil },
			[]string{`pools.web.backends: a pool needs at least one backend`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := PoolConfig{Policy: PolicyWeightedRoundRobin, Backends: backendConfigs(3, nil)}
			tc.edit(&c)
			c.SetDefaults()
			var got []string
			if err := c.Validate("pools.web"); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !equal(got, tc.want) {
				t.Errorf("got %q;\nwant %q", got, tc.want)
			}
		})
	}
}

func maglevOn(c *PoolConfig) {
	c.Policy, c.HashKey, c.Maglev.TableSize = PolicyMaglev, "client_ip", 65537
}

// TestNewPoolValidates: NewPool fills defaults and refuses a bad section
// rather than building half a pool.
func TestNewPoolValidates(t *testing.T) {
	_, err := NewPool("web", PoolConfig{Policy: PolicyMaglev, HashKey: "sni", Maglev: MaglevConfig{TableSize: 8}, Backends: backendConfigs(2, nil)})
	want := `cannot build pool "web": pools.web.maglev.table_size: must be prime, got 8`
	if err == nil || err.Error() != want {
		t.Errorf("got %v; want %q", err, want)
	}
}
