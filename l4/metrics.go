package l4

import (
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// closeReason is why a flow ended; it labels portico_l4_flows_closed_total.
type closeReason uint8

const (
	closeDone          closeReason = iota // both sides finished
	closeReset                            // a side reset or failed
	closeNoRoute                          // TLS server name matched no route and no default
	closeBadHello                         // not a TLS ClientHello (or a malformed one)
	closeHelloTimeout                     // the ClientHello did not arrive in time
	closeNoBackend                        // the pool had no backend to pick
	closeConnectFailed                    // every connect attempt failed
	closeIdle                             // idle_timeout
	closeLifetime                         // max_lifetime
	closeBufferCap                        // max_flow_buffer: the last-resort cap
	closeEnrollTimeout                    // a socket handed to the loop never opened
	closeShutdown                         // the server stopped
	closeRefused                          // max_flows, max_flows_per_client, or accepted during Shutdown's drain
	closeBadProxy                         // a bad PROXY header, or one from an untrusted peer
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"done", "reset", "no_route", "bad_hello", "hello_timeout", "no_backend",
	"connect_failed", "idle_timeout", "max_lifetime", "buffer_cap", "enroll_timeout", "shutdown",
	"refused", "bad_proxy",
}

func (r closeReason) String() string { return closeReasonNames[r] }

// listenerMetrics are one listener's series, created once with full labels;
// the event loops only add to them.
type listenerMetrics struct {
	accepted      *metrics.Counter
	active        atomic.Int64
	bytesIn       *metrics.Counter // client to backend
	bytesOut      *metrics.Counter // backend to client
	connectErrors *metrics.Counter
	parks         *metrics.Counter
	splices       *metrics.Counter
	closed        [numCloseReasons]*metrics.Counter
}

func (m *listenerMetrics) init(set *metrics.Set, name string) {
	q := `listener=` + quoteLabel(name)
	*m = listenerMetrics{
		accepted:      set.GetOrCreateCounter(`portico_l4_flows_accepted_total{` + q + `}`),
		bytesIn:       set.GetOrCreateCounter(`portico_l4_bytes_total{` + q + `,direction="client_to_backend"}`),
		bytesOut:      set.GetOrCreateCounter(`portico_l4_bytes_total{` + q + `,direction="backend_to_client"}`),
		connectErrors: set.GetOrCreateCounter(`portico_l4_connect_errors_total{` + q + `}`),
		parks:         set.GetOrCreateCounter(`portico_l4_backpressure_pauses_total{` + q + `}`),
		splices:       set.GetOrCreateCounter(`portico_l4_splices_total{` + q + `}`),
	}
	for r := range numCloseReasons {
		m.closed[r] = set.GetOrCreateCounter(`portico_l4_flows_closed_total{` + q + `,reason="` + r.String() + `"}`)
	}
	set.GetOrCreateGauge(`portico_l4_flows_active{`+q+`}`, func() float64 { return float64(m.active.Load()) })
}

// quoteLabel quotes a label value for the Prometheus text format.
func quoteLabel(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return `"` + v + `"`
}
