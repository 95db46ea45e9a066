package lb

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Policy names accepted in PoolConfig.Policy.
const (
	PolicyRoundRobin         = "round_robin"
	PolicyWeightedRoundRobin = "weighted_round_robin"
	PolicyRandom             = "random"
	PolicyLeastConn          = "least_conn"
	PolicyP2C                = "p2c"
	PolicyRingHash           = "ring_hash"
	PolicyMaglev             = "maglev"
)

const policyList = "round_robin, weighted_round_robin, random, least_conn, p2c, ring_hash or maglev"

// Limits enforced by Validate.
const (
	maxWeight       = 1000
	maxVirtualNodes = 10000
	maxRingPoints   = 10_000_000
	maxTableSize    = 16777213 // the largest prime below 2^24
	minInterval     = 10 * time.Millisecond
	maxDuration     = time.Hour
)

// PoolConfig is one `[pools.NAME]` section, shared by the L4 and L7 paths.
// Call SetDefaults, then Validate.
type PoolConfig struct {
	// Policy selects the balancing policy: round_robin, weighted_round_robin,
	// random, least_conn, p2c, ring_hash or maglev. Default "round_robin".
	Policy string `toml:"policy"`
	// HashKey is what the hashing policies hash: client_ip, sni, host, uri,
	// path, header:NAME, cookie:NAME (sticky sessions) or query:NAME.
	// Required by ring_hash and maglev, refused by the others. Default "".
	HashKey string `toml:"hash_key"`
	// BoundedLoad caps each backend's share of a hashing policy's load.
	BoundedLoad BoundedLoadConfig `toml:"bounded_load"`
	// RingHash tunes ring_hash; only with that policy.
	RingHash RingHashConfig `toml:"ring_hash"`
	// Maglev tunes maglev; only with that policy.
	Maglev MaglevConfig `toml:"maglev"`
	// P2C tunes p2c; only with that policy.
	P2C P2CConfig `toml:"p2c"`
	// SlowStart is the window over which a backend that comes back up (or
	// is added at run time) ramps from 10% to its full weight, in ten steps.
	// 0 turns it off. Not with round_robin, which ignores weights. Default 0.
	SlowStart time.Duration `toml:"slow_start"`
	// PanicMode, when every backend is down, sends work to all backends
	// that are not draining rather than failing. Default false: fail fast.
	PanicMode bool `toml:"panic_mode"`
	// SendProxy sends a PROXY protocol header to the backend of each TCP
	// connection before any byte of the client, so that it sees the
	// client's address: "v1" (text), "v2" (binary) or "" (default: none).
	// TCP listeners only; HTTP listeners ignore it. A TCP listener's own
	// send_proxy, when set, takes precedence.
	SendProxy string `toml:"send_proxy"`
	// HealthCheck configures active checks. Default: none.
	HealthCheck HealthCheckConfig `toml:"health_check"`
	// Outlier configures passive checks. Default: none.
	Outlier OutlierConfig `toml:"outlier"`
	// Backends are the pool's members, in order.
	Backends []BackendConfig `toml:"backends"`
}

// BackendConfig is one `[[pools.NAME.backends]]` entry.
type BackendConfig struct {
	// Name labels the backend in logs and metrics and places it in the
	// hashing policies' tables. Default: its address.
	Name string `toml:"name"`
	// Address is host:port. Required.
	Address string `toml:"address"`
	// Weight is the relative share of traffic, 1 to 1000. Default 1.
	// round_robin needs equal weights.
	Weight int `toml:"weight"`
	// Drain stops new work going to the backend; work in flight finishes.
	// Default false.
	Drain bool `toml:"drain"`
}

// BoundedLoadConfig is `[pools.NAME.bounded_load]`: consistent hashing with
// bounded loads (Mirrokni et al.), for ring_hash and maglev.
type BoundedLoadConfig struct {
	// Enabled turns the bound on. Default false.
	Enabled bool `toml:"enabled"`
	// Factor is c: no backend takes new work while its in-flight count is
	// at c times its weighted share of the pool's in-flight total (rounded
	// up). 1 to 100; lower is more even and less sticky. Default 1.25.
	Factor float64 `toml:"factor"`
}

// RingHashConfig is `[pools.NAME.ring_hash]`.
type RingHashConfig struct {
	// VirtualNodes is the number of points on the ring per unit of weight;
	// more points spread keys more evenly and cost memory (8 bytes each).
	// 1 to 10000, and at most 10,000,000 points in all. Default 160.
	VirtualNodes int `toml:"virtual_nodes"`
}

// MaglevConfig is `[pools.NAME.maglev]`.
type MaglevConfig struct {
	// TableSize is the lookup table's size M: a prime, at least the number of
	// backends and at most 16777213. The paper advises M > 100 × backends
	// for an imbalance under 1%; each entry costs 4 bytes. Default 65537.
	TableSize int `toml:"table_size"`
}

// P2CConfig is `[pools.NAME.p2c]`.
type P2CConfig struct {
	// Latency weighs each of the two choices' in-flight count by its
	// peak-EWMA latency of successful work. Default false.
	Latency bool `toml:"latency"`
	// Decay is the latency average's time constant, only with latency =
	// true. 1ms to 1h. Default "10s".
	Decay time.Duration `toml:"decay"`
}

// HealthCheckConfig is `[pools.NAME.health_check]`: active checks.
type HealthCheckConfig struct {
	// Type is "tcp" (a connect), "http" (a GET), or "" for no active checks.
	// Default "".
	Type string `toml:"type"`
	// Interval is the time between the end of one check of a backend and
	// the start of the next. 10ms to 1h. Default "5s".
	Interval time.Duration `toml:"interval"`
	// Timeout bounds one check: the connect, or the whole HTTP exchange.
	// 1ms to 1h. Default "2s".
	Timeout time.Duration `toml:"timeout"`
	// Rise is the number of passes in a row that bring a down backend up.
	// 1 to 100. Default 2.
	Rise int `toml:"rise"`
	// Fall is the number of failures in a row that take an up backend down.
	// 1 to 100. Default 3. A backend's very first check takes it down alone.
	Fall int `toml:"fall"`
	// Path is the path and query the http check requests. Default "/".
	Path string `toml:"path"`
	// Host is the Host header of the http check. Default: the address.
	Host string `toml:"host"`
	// ExpectStatus is the range of statuses that pass an http check: "200"
	// or "200-399". Default "200-399".
	ExpectStatus string `toml:"expect_status"`
}

// OutlierConfig is `[pools.NAME.outlier]`: passive checks on the outcomes
// that callers report with Lease.Release.
type OutlierConfig struct {
	// ConsecutiveFailures is how many Failure outcomes in a row eject a
	// backend; 0 turns passive checks off. 0 to 1000. Default 0.
	ConsecutiveFailures int `toml:"consecutive_failures"`
	// BaseEjection is the first ejection's length; each ejection that
	// follows within base_ejection of the last one's end doubles it. Default
	// "10s".
	BaseEjection time.Duration `toml:"base_ejection"`
	// MaxEjection caps an ejection's length; at least base_ejection, at most
	// 1h. Default: "5m", or base_ejection if that is longer.
	MaxEjection time.Duration `toml:"max_ejection"`
	// MaxEjectedPercent caps the share of the pool's backends ejected at
	// once (at least one may always be). 1 to 100. Default 50.
	MaxEjectedPercent int `toml:"max_ejected_percent"`
}

// SetDefaults fills unset fields with their defaults. Settings of a feature
// that is off (another policy's table, health checks without a type) are
// left alone, so that Validate can point them out.
func (c *PoolConfig) SetDefaults() {
	if c.Policy == "" {
		c.Policy = PolicyRoundRobin
	}
	if c.Policy == PolicyRingHash && c.RingHash.VirtualNodes == 0 {
		c.RingHash.VirtualNodes = 160
	}
	if c.Policy == PolicyMaglev && c.Maglev.TableSize == 0 {
		c.Maglev.TableSize = 65537
	}
	if c.Policy == PolicyP2C && c.P2C.Latency && c.P2C.Decay == 0 {
		c.P2C.Decay = 10 * time.Second
	}
	if c.BoundedLoad.Enabled && c.BoundedLoad.Factor == 0 {
		c.BoundedLoad.Factor = 1.25
	}
	if h := &c.HealthCheck; h.Type != "" {
		setDur(&h.Interval, 5*time.Second)
		setDur(&h.Timeout, 2*time.Second)
		setInt(&h.Rise, 2)
		setInt(&h.Fall, 3)
		if h.Type == "http" {
			if h.Path == "" {
				h.Path = "/"
			}
			if h.ExpectStatus == "" {
				h.ExpectStatus = "200-399"
			}
		}
	}
	if o := &c.Outlier; o.ConsecutiveFailures > 0 {
		setDur(&o.BaseEjection, 10*time.Second)
		setDur(&o.MaxEjection, max(5*time.Minute, o.BaseEjection))
		setInt(&o.MaxEjectedPercent, 50)
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Name == "" {
			b.Name = b.Address
		}
		if b.Weight == 0 {
			b.Weight = 1
		}
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Validate reports every problem in the section; path is the section's name
// in the config file, such as "pools.web". Each error starts with the key's
// full path.
func (c *PoolConfig) Validate(path string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	hashing := c.Policy == PolicyRingHash || c.Policy == PolicyMaglev
	switch c.Policy {
	case PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyRandom, PolicyLeastConn, PolicyP2C, PolicyRingHash, PolicyMaglev:
	default:
		bad("policy", "unknown policy %q (want %s)", c.Policy, policyList)
	}

	if _, err := ParseHashKey(c.HashKey); err != nil {
		bad("hash_key", "%v", err)
	} else if hashing && c.HashKey == "" {
		bad("hash_key", "policy %q needs a hash key (%s)", c.Policy, hashKeyForms)
	} else if !hashing && c.HashKey != "" {
		bad("hash_key", "policy %q does not hash; remove hash_key or use ring_hash or maglev", c.Policy)
	}

	bl := c.BoundedLoad
	switch {
	case bl.Enabled && !hashing:
		bad("bounded_load.enabled", "needs policy ring_hash or maglev, got %q", c.Policy)
	case !bl.Enabled && bl.Factor != 0:
		bad("bounded_load.factor", "set, but bounded_load.enabled is false")
	case bl.Enabled && (!(bl.Factor >= 1) || bl.Factor > 100):
		bad("bounded_load.factor", "must be 1 to 100, got %v", bl.Factor)
	}

	total := 0
	for _, b := range c.Backends {
		if b.Weight > 0 {
			total += b.Weight
		}
	}
	if c.Policy != PolicyRingHash && c.RingHash != (RingHashConfig{}) {
		bad("ring_hash", "set, but policy is %q", c.Policy)
	} else if vn := c.RingHash.VirtualNodes; c.Policy == PolicyRingHash {
		if vn < 1 || vn > maxVirtualNodes {
			bad("ring_hash.virtual_nodes", "must be 1 to %d, got %d", maxVirtualNodes, vn)
		} else if vn*total > maxRingPoints {
			bad("ring_hash.virtual_nodes", "%d × total weight %d is %d ring points, more than %d", vn, total, vn*total, maxRingPoints)
		}
	}
	if c.Policy != PolicyMaglev && c.Maglev != (MaglevConfig{}) {
		bad("maglev", "set, but policy is %q", c.Policy)
	} else if m := c.Maglev.TableSize; c.Policy == PolicyMaglev {
		switch n := max(len(c.Backends), 2); {
		case m < n || m > maxTableSize:
			bad("maglev.table_size", "must be %d (the number of backends, at least 2) to %d, got %d", n, maxTableSize, m)
		case !isPrime(m):
			bad("maglev.table_size", "must be prime, got %d", m)
		}
	}
	if c.Policy != PolicyP2C && c.P2C != (P2CConfig{}) {
		bad("p2c", "set, but policy is %q", c.Policy)
	} else if !c.P2C.Latency && c.P2C.Decay != 0 {
		bad("p2c.decay", "set, but p2c.latency is false")
	} else if d := c.P2C.Decay; c.P2C.Latency && (d < time.Millisecond || d > maxDuration) {
		bad("p2c.decay", "must be 1ms to 1h, got %s", d)
	}

	switch {
	case c.SlowStart < 0 || c.SlowStart > maxDuration:
		bad("slow_start", "must be 0s to 1h, got %s", c.SlowStart)
	case c.SlowStart > 0 && c.Policy == PolicyRoundRobin:
		bad("slow_start", "policy %q ignores weights; use weighted_round_robin", c.Policy)
	}

	switch c.SendProxy {
	case "", "v1", "v2":
	default:
		bad("send_proxy", "want \"v1\", \"v2\" or \"\", got %q", c.SendProxy)
	}

	errs = append(errs, c.HealthCheck.validate(path+".health_check")...)
	errs = append(errs, c.Outlier.validate(path+".outlier")...)

	if len(c.Backends) == 0 {
		bad("backends", "a pool needs at least one backend")
	}
	errs = append(errs, validateBackends(path+".backends", c.Backends, c.Policy)...)
	return errors.Join(errs...)
}

func validateBackends(path string, bs []BackendConfig, policy string) []error {
	var errs []error
	names := make(map[string]int, len(bs))
	for i, b := range bs {
		p := path + "[" + strconv.Itoa(i) + "]"
		if _, _, err := net.SplitHostPort(b.Address); err != nil || b.Address == "" {
			errs = append(errs, fmt.Errorf("%s.address: want host:port, got %q", p, b.Address))
		}
		if b.Weight < 1 || b.Weight > maxWeight {
			errs = append(errs, fmt.Errorf("%s.weight: must be 1 to %d, got %d", p, maxWeight, b.Weight))
		} else if policy == PolicyRoundRobin && b.Weight != bs[0].Weight {
			errs = append(errs, fmt.Errorf("%s.weight: policy %q ignores weights; use weighted_round_robin, got %d (backends[0] has %d)", p, policy, b.Weight, bs[0].Weight))
		}
		if j, dup := names[b.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of backends[%d]", p, b.Name, j))
		} else {
			names[b.Name] = i
		}
	}
	return errs
}

func (h *HealthCheckConfig) validate(path string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	switch h.Type {
	case "":
		if *h != (HealthCheckConfig{}) {
			errs = append(errs, fmt.Errorf(`%s: settings given, but type is not set (want "tcp" or "http")`, path))
		}
		return errs
	case "tcp", "http":
	default:
		bad("type", `want "tcp" or "http", got %q`, h.Type)
		return errs
	}
	if h.Interval < minInterval || h.Interval > maxDuration {
		bad("interval", "must be 10ms to 1h, got %s", h.Interval)
	}
	if h.Timeout < time.Millisecond || h.Timeout > maxDuration {
		bad("timeout", "must be 1ms to 1h, got %s", h.Timeout)
	}
	if h.Rise < 1 || h.Rise > 100 {
		bad("rise", "must be 1 to 100, got %d", h.Rise)
	}
	if h.Fall < 1 || h.Fall > 100 {
		bad("fall", "must be 1 to 100, got %d", h.Fall)
	}
	if h.Type == "tcp" {
		for _, kv := range [...][2]string{{"path", h.Path}, {"host", h.Host}, {"expect_status", h.ExpectStatus}} {
			if kv[1] != "" {
				bad(kv[0], `only for type "http"`)
			}
		}
		return errs
	}
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n") {
		bad("path", `must start with "/" and hold no spaces, got %q`, h.Path)
	}
	if strings.ContainsAny(h.Host, " \t\r\n/") {
		bad("host", "must be a host name or host:port, got %q", h.Host)
	}
	if _, _, err := parseStatusRange(h.ExpectStatus); err != nil {
		bad("expect_status", "%v", err)
	}
	return errs
}

// parseStatusRange parses "200" or "200-399".
func parseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf(`want a status or a range of statuses from 100 to 599 such as "200-399", got %q`, s)
	}
	return lo, hi, nil
}

func (o *OutlierConfig) validate(path string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if o.ConsecutiveFailures == 0 {
		if *o != (OutlierConfig{}) {
			errs = append(errs, fmt.Errorf("%s: settings given, but consecutive_failures is 0 (passive checks off)", path))
		}
		return errs
	}
	if o.ConsecutiveFailures < 0 || o.ConsecutiveFailures > 1000 {
		bad("consecutive_failures", "must be 0 to 1000, got %d", o.ConsecutiveFailures)
	}
	if o.BaseEjection < time.Millisecond || o.BaseEjection > maxDuration {
		bad("base_ejection", "must be 1ms to 1h, got %s", o.BaseEjection)
	}
	if o.MaxEjection < o.BaseEjection || o.MaxEjection > maxDuration {
		bad("max_ejection", "must be base_ejection (%s) to 1h, got %s", o.BaseEjection, o.MaxEjection)
	}
	if o.MaxEjectedPercent < 1 || o.MaxEjectedPercent > 100 {
		bad("max_ejected_percent", "must be 1 to 100, got %d", o.MaxEjectedPercent)
	}
	return errs
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// policy returns the Policy the config selects, for a pool whose in-flight
// total is total (bounded load reads it).
func (c *PoolConfig) policy(p *Pool) Policy {
	var hp Policy
	switch c.Policy {
	case PolicyRoundRobin:
		return roundRobinPolicy{}
	case PolicyWeightedRoundRobin:
		return weightedPolicy{}
	case PolicyRandom:
		return randomPolicy{rand: p.rand}
	case PolicyLeastConn:
		return leastConnPolicy{rand: p.rand}
	case PolicyP2C:
		return p2cPolicy{rand: p.rand, latency: c.P2C.Latency}
	case PolicyRingHash:
		hp = ringHashPolicy{virtualNodes: c.RingHash.VirtualNodes, rand: p.rand}
	case PolicyMaglev:
		hp = maglevPolicy{tableSize: c.Maglev.TableSize, rand: p.rand}
	default:
		panic("BUG: policy not validated: " + c.Policy)
	}
	if c.BoundedLoad.Enabled {
		return boundedPolicy{inner: hp, factor: c.BoundedLoad.Factor, total: &p.total, rand: p.rand}
	}
	return hp
}
