package l7

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// counter is the part of *metrics.Counter the request path uses.
type counter interface{ Inc() }

// serverMetrics owns the L7 metrics. Metrics are created when a snapshot is
// built, with full labels; the request path only increments them.
type serverMetrics struct {
	set      *metrics.Set
	bytesIn  *metrics.Counter
	bytesOut *metrics.Counter
	conns    atomic.Int64

	// open holds the client connections not yet closed, so that the end
	// of a drain can cut them; touched once per connection, not per request.
	openMu sync.Mutex
	open   map[*countConn]struct{}
}

// routeMetrics are one route's request counters by status class and its
// duration histogram.
type routeMetrics struct {
	name     string
	byClass  [6]*metrics.Counter // index status/100; 0 unused
	duration *metrics.PrometheusHistogram
}

func newServerMetrics(set *metrics.Set) *serverMetrics {
	m := &serverMetrics{
		set:      set,
		bytesIn:  set.GetOrCreateCounter(`portico_http_bytes_received_total`),
		bytesOut: set.GetOrCreateCounter(`portico_http_bytes_sent_total`),
		open:     map[*countConn]struct{}{},
	}
	set.GetOrCreateGauge(`portico_http_connections_active`, func() float64 { return float64(m.conns.Load()) })
	return m
}

func (m *serverMetrics) route(name string) *routeMetrics {
	r := &routeMetrics{name: name}
	q := quoteLabel(name)
	for c := 1; c <= 5; c++ {
		r.byClass[c] = m.set.GetOrCreateCounter(`portico_http_requests_total{route=` + q + `,code="` + string(rune('0'+c)) + `xx"}`)
	}
	r.duration = m.set.GetOrCreatePrometheusHistogram(`portico_http_request_duration_seconds{route=` + q + `}`)
	return r
}

func (m *serverMetrics) upstreamError(pool, backend, kind string) counter {
	return m.set.GetOrCreateCounter(`portico_http_upstream_errors_total{pool=` + quoteLabel(pool) +
		`,backend=` + quoteLabel(backend) + `,kind="` + kind + `"}`)
}

func (r *routeMetrics) observe(status int, seconds float64) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 5
	}
	r.byClass[c].Inc()
	r.duration.Update(seconds)
}

// quoteLabel quotes a label value for the Prometheus text format.
func quoteLabel(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return `"` + v + `"`
}

// countingListener counts active connections and bytes in both directions,
// and keeps the open connections for cutConns.
func (m *serverMetrics) countingListener(ln net.Listener) net.Listener {
	return &countListener{Listener: ln, m: m}
}

type countListener struct {
	net.Listener
	m *serverMetrics
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: c, m: l.m, ip: appendIP(nil, c.RemoteAddr())}
	l.m.conns.Add(1)
	l.m.openMu.Lock()
	l.m.open[cc] = struct{}{}
	l.m.openMu.Unlock()
	return cc, nil
}

// cutConns closes every client connection still open, tunnels included:
// the end of a drain.
func (m *serverMetrics) cutConns() {
	m.openMu.Lock()
	conns := make([]*countConn, 0, len(m.open))
	for c := range m.open {
		conns = append(conns, c)
	}
	m.openMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type countConn struct {
	net.Conn
	m      *serverMetrics
	ip     []byte // the client's IP as text, for appendClientIP; read-only
	closed atomic.Bool
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.m.bytesIn.Add(n)
	}
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.m.bytesOut.Add(n)
	}
	return n, err
}

func (c *countConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.m.conns.Add(-1)
		c.m.openMu.Lock()
		delete(c.m.open, c)
		c.m.openMu.Unlock()
	}
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection, for tunnels.
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
