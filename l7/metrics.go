package l7

import (
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
	parked   atomic.Int64 // of conns, those parked (park.go)

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
	set.GetOrCreateGauge(`portico_http_connections_parked`, func() float64 { return float64(m.parked.Load()) })
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
