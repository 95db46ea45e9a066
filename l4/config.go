package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config is the `[tcp]` section: the L4 listeners.
type Config struct {
	// Listeners accept TCP connections and proxy each to a backend. Empty:
	// no L4 path.
	Listeners []ListenerConfig `toml:"listeners"`
}

// ListenerConfig is one `[[tcp.listeners]]` entry. A listener either sends
// every connection to Pool, or, with Routes or DefaultPool, reads the TLS
// ClientHello and picks the pool by its server name (TLS passthrough: the
// TLS session runs between client and backend; portico never decrypts it).
type ListenerConfig struct {
	// Name labels the listener in logs and metrics. Default: its address.
	Name string `toml:"name"`
	// Address is host:port to listen on. Required.
	Address string `toml:"address"`
	// Pool names the `[pools.NAME]` that takes every connection. Set either
	// Pool, or Routes and/or DefaultPool.
	Pool string `toml:"pool"`
	// Routes route TLS connections by the server name (SNI) of their
	// ClientHello: exact names first, then the longest matching wildcard.
	Routes []RouteConfig `toml:"routes"`
	// DefaultPool takes TLS connections whose server name no route matches,
	// or that send none. "" (default): such connections are closed. A
	// connection that does not start with a TLS ClientHello is always closed.
	DefaultPool string `toml:"default_pool"`

	// ConnectTimeout bounds dialing a backend, per attempt. Default "5s".
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// ConnectRetries is how many other backends a connection tries after a
	// failed connect. 0 to 10. Default 2.
	ConnectRetries *int `toml:"connect_retries"`
	// IdleTimeout closes a connection when no byte has moved either way for
	// this long. "0s": never. Default "10m". Once one side has closed and
	// the rest of the other direction is spliced, each MiB of it must move
	// within this time.
	IdleTimeout *time.Duration `toml:"idle_timeout"`
	// ClientHelloTimeout bounds the time a TLS passthrough connection has to
	// send its whole ClientHello, and a trusted load balancer its PROXY
	// header. Default "5s".
	ClientHelloTimeout time.Duration `toml:"client_hello_timeout"`
	// MaxLifetime closes a connection this long after it was accepted,
	// busy or not. "0s" (default): no limit.
	MaxLifetime time.Duration `toml:"max_lifetime"`

	// HighWater is the number of bytes queued for one side of a connection
	// above which portico stops reading from the other side, so that TCP
	// flow control slows the sender down. Default 4194304 (4 MiB).
	HighWater int `toml:"high_water"`
	// LowWater is the queued byte count below which reading resumes.
	// Below HighWater. Default 2097152 (2 MiB).
	LowWater int `toml:"low_water"`
	// MaxFlowBuffer is the hard cap on the bytes queued for both sides of
	// one connection together; a connection above it is closed and
	// counted. It is a last resort: backpressure normally keeps a
	// connection under 2 × (high_water + 64 KiB). Default 16777216 (16 MiB).
	MaxFlowBuffer int `toml:"max_flow_buffer"`

	// Loops is the number of event loops (threads) for this listener, each
	// with its own SO_REUSEPORT socket. 0 (default): one per CPU.
	Loops int `toml:"loops"`

	// MaxFlows is the most connections open at once on this listener;
	// more are refused at accept and counted. 0 (default): no limit.
	MaxFlows int `toml:"max_flows"`
	// MaxFlowsPerClient is the most connections open at once from one
	// client IP address (IPv6: one /64) on this listener; more are refused
	// at accept and counted. 0 (default): no limit.
	MaxFlowsPerClient int `toml:"max_flows_per_client"`

	// SendProxy sends a PROXY protocol header to the backend before any
	// byte of the client, so that it sees the client's address: "v1"
	// (text) or "v2" (binary), whatever the pool's own send_proxy says.
	// "" (default): as the pool says (`[pools.NAME] send_proxy`).
	SendProxy string `toml:"send_proxy"`
	// AcceptProxyFrom lists the networks (CIDR, such as "10.0.0.0/8") of
	// load balancers in front of portico that must send a PROXY protocol
	// header, v1 or v2; the client address it gives is the one portico
	// logs, limits, hashes and passes on. A connection from elsewhere that
	// starts with a PROXY header is closed. Empty (default): headers are
	// not accepted from anyone.
	AcceptProxyFrom []string `toml:"accept_proxy_from"`
}

// RouteConfig is one `[[tcp.listeners.routes]]` entry.
type RouteConfig struct {
	// ServerNames are exact names ("db.example.com") or a leading wildcard
	// ("*.example.com": one or more labels before example.com, not
	// example.com itself). Case-insensitive. Required.
	ServerNames []string `toml:"server_names"`
	// Pool names the pool for these names. Required.
	Pool string `toml:"pool"`
}

// readChunk is the most gnet reads from a socket at once (its read buffer);
// the overshoot of a queue above HighWater is at most this.
const readChunk = 64 << 10

// Limits enforced by Validate.
const (
	maxLoops      = 1024
	maxRetries    = 10
	minHighWater  = 64 << 10
	maxBufferSize = 1 << 30
)

// SetDefaults fills unset fields with their defaults.
func (c *Config) SetDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = l.Address
		}
		if l.ConnectTimeout == 0 {
			l.ConnectTimeout = 5 * time.Second
		}
		if l.ConnectRetries == nil {
			n := 2
			l.ConnectRetries = &n
		}
		if l.IdleTimeout == nil {
			d := 10 * time.Minute
			l.IdleTimeout = &d
		}
		if l.ClientHelloTimeout == 0 {
			l.ClientHelloTimeout = 5 * time.Second
		}
		if l.HighWater == 0 {
			l.HighWater = 4 << 20
		}
		if l.LowWater == 0 {
			l.LowWater = 2 << 20
		}
		if l.MaxFlowBuffer == 0 {
			l.MaxFlowBuffer = 16 << 20
		}
		for j := range l.Routes {
			r := &l.Routes[j]
			for k, n := range r.ServerNames {
				r.ServerNames[k] = strings.ToLower(n)
			}
		}
	}
}

// Validate reports every problem in the section. path is the section's name
// in the config file ("tcp"); pools is the set of defined pool names.
// Call SetDefaults first.
func (c *Config) Validate(path string, pools map[string]bool) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	names := map[string]int{}
	addrs := map[string]int{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("%s.listeners[%d]", path, i)
		if _, port, err := net.SplitHostPort(l.Address); err != nil || l.Address == "" || port == "" {
			add("%s.address: want host:port, got %q", p, l.Address)
		}
		if j, dup := addrs[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			add("%s.address: %q is also the address of listeners[%d]", p, l.Address, j)
		}
		addrs[l.Address] = i
		if j, dup := names[l.Name]; dup {
			add("%s.name: %q is also the name of listeners[%d]", p, l.Name, j)
		}
		names[l.Name] = i
		checkPool := func(key, name string) {
			if !pools[name] {
				add("%s.%s: pool %q is not defined", p, key, name)
			}
		}
		tls := len(l.Routes) > 0 || l.DefaultPool != ""
		switch {
		case l.Pool != "" && tls:
			add("%s: set either pool, or routes and default_pool (TLS passthrough), not both", p)
		case l.Pool == "" && !tls:
			add("%s.pool: required (or set routes or default_pool for TLS passthrough)", p)
		case l.Pool != "":
			checkPool("pool", l.Pool)
		}
		if l.DefaultPool != "" {
			checkPool("default_pool", l.DefaultPool)
		}
		seen := map[string]int{}
		for j, r := range l.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			if len(r.ServerNames) == 0 {
				add("%s.server_names: at least one name is required", rp)
			}
			for k, n := range r.ServerNames {
				if !validRouteName(n) {
					add("%s.server_names[%d]: want a host name or *.suffix, got %q", rp, k, n)
				}
				if prev, dup := seen[n]; dup {
					add("%s.server_names[%d]: %q is also a name of routes[%d]", rp, k, n, prev)
				}
				seen[n] = j
			}
			if r.Pool == "" {
				add("%s.pool: required", rp)
			} else {
				checkPool("routes["+fmt.Sprint(j)+"].pool", r.Pool)
			}
		}
		if l.ConnectTimeout < 0 {
			add("%s.connect_timeout: must be positive, got %s", p, l.ConnectTimeout)
		}
		if n := *l.ConnectRetries; n < 0 || n > maxRetries {
			add("%s.connect_retries: must be 0 to %d, got %d", p, maxRetries, n)
		}
		if *l.IdleTimeout < 0 {
			add("%s.idle_timeout: must not be negative, got %s", p, *l.IdleTimeout)
		}
		if l.ClientHelloTimeout < 0 {
			add("%s.client_hello_timeout: must be positive, got %s", p, l.ClientHelloTimeout)
		}
		if l.MaxLifetime < 0 {
			add("%s.max_lifetime: must not be negative, got %s", p, l.MaxLifetime)
		}
		switch {
		case l.HighWater < minHighWater || l.HighWater > maxBufferSize:
			add("%s.high_water: must be %d to %d, got %d", p, minHighWater, maxBufferSize, l.HighWater)
		case l.LowWater <= 0 || l.LowWater >= l.HighWater:
			add("%s.low_water: must be at least 1 and below high_water (%d), got %d", p, l.HighWater, l.LowWater)
		case l.MaxFlowBuffer < 2*(l.HighWater+readChunk) || l.MaxFlowBuffer > maxBufferSize:
			add("%s.max_flow_buffer: must be 2 × (high_water + 65536) = %d to %d, got %d", p, 2*(l.HighWater+readChunk), maxBufferSize, l.MaxFlowBuffer)
		}
		if l.MaxFlows < 0 {
			add("%s.max_flows: must not be negative, got %d", p, l.MaxFlows)
		}
		if l.MaxFlowsPerClient < 0 {
			add("%s.max_flows_per_client: must not be negative, got %d", p, l.MaxFlowsPerClient)
		}
		switch l.SendProxy {
		case "", "v1", "v2":
		default:
			add("%s.send_proxy: want \"v1\", \"v2\" or \"\", got %q", p, l.SendProxy)
		}
		for j, cidr := range l.AcceptProxyFrom {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				add("%s.accept_proxy_from[%d]: want a network such as \"10.0.0.0/8\", got %q", p, j, cidr)
			}
		}
		if l.Loops < 0 || l.Loops > maxLoops {
			add("%s.loops: must be 0 (one per CPU) to %d, got %d", p, maxLoops, l.Loops)
		}
	}
	return errors.Join(errs...)
}

// validRouteName reports whether n is a lower-case host name or "*." and a
// host name.
func validRouteName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > maxHostNameLen {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > maxHostLabelLen {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
