package conntrack

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// BackendID names a backend in the table: a small index issued by
// Table.Backend, stored in every entry in place of the names. 0 means no
// backend.
type BackendID uint32

type backendKey struct{ pool, name string }

// backend is a backend's live state.
type backend struct {
	pool, name  string
	connectErrs *metrics.Counter

	// active moves on every SetBackend and Remove of the backend's flows,
	// on every loop; it gets a cache line of its own.
	_      [64]byte
	active atomic.Int64
	_      [64]byte
}

// Backend returns the ID of the named backend of a pool, issuing one and
// creating the backend's metrics the first time. IDs are never reused or
// removed: callers look them up once per backend (say, in a slice indexed by
// lb.Backend.Index) rather than per flow. Safe for concurrent use.
//
// The table's per-backend counts serve draining and the admin API. They do
// not feed least_conn: lb counts the work in flight itself, from Pick to
// Lease.Release, so the flow holds its lease until it closes.
func (t *Table) Backend(pool, name string) BackendID {
	k := backendKey{pool, name}
	t.bmu.Lock()
	defer t.bmu.Unlock()
	if id, ok := t.bnames[k]; ok {
		return id
	}
	q := `pool=` + quoteLabel(pool) + `,backend=` + quoteLabel(name)
	b := &backend{
		pool:        pool,
		name:        name,
		connectErrs: t.set.GetOrCreateCounter(`portico_conntrack_connect_errors_total{` + q + `}`),
	}
	t.set.GetOrCreateGauge(`portico_conntrack_backend_flows_active{`+q+`}`, func() float64 { return float64(b.active.Load()) })
	old := *t.backends.Load()
	id := BackendID(len(old))
	bs := append(old[:len(old):len(old)], b)
	t.backends.Store(&bs)
	t.bnames[k] = id
	return id
}

// ConnectError counts a failed dial of backend b (a refusal, a reset, a
// connect timeout). It takes no lock and does not allocate. IDs this table
// did not issue, and 0, are ignored.
func (t *Table) ConnectError(b BackendID) {
	if bs := *t.backends.Load(); b != 0 && int(b) < len(bs) {
		bs[b].connectErrs.Inc()
	}
}

// BackendFlows is the number of live flows going to backend b. Safe for
// concurrent use.
func (t *Table) BackendFlows(b BackendID) int {
	if bs := *t.backends.Load(); b != 0 && int(b) < len(bs) {
		return int(bs[b].active.Load())
	}
	return 0
}

// AppendBackendFlows appends to dst the IDs of the live flows in shard
// (taken modulo Shards) that go to backend b (0: that have none yet), and
// returns the extended slice. To drain a backend by force, each shard's owner closes the flows
// this returns for its shard; to drain it gently, stop picking it (lb's
// Pool.SetDraining) and watch BackendFlows fall. It scans the whole shard
// under its lock: an admin operation, not a per-flow one. Safe for
// concurrent use.
func (t *Table) AppendBackendFlows(dst []ID, shard int, b BackendID) []ID {
	si := int(uint(shard) % uint(len(t.shards)))
	s := &t.shards[si]
	s.mu.Lock()
	defer s.mu.Unlock()
	d := *s.dir.Load()
	for slot := range s.used {
		e := &d[slot>>chunkBits][slot&(chunkLen-1)]
		if g := e.gen.Load(); g&1 != 0 && e.backend == b {
			dst = append(dst, makeID(g, si, slot))
		}
	}
	return dst
}
