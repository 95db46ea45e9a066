package lb

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// State is a backend's standing for new work.
type State uint32

const (
	stateUnset State = iota
	// Up: the backend takes new work.
	Up
	// Down: an active check failed fall times in a row, or passive checks
	// ejected the backend; it takes no new work until it recovers.
	Down
	// Draining: the backend takes no new work; work in flight finishes.
	Draining
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	case Draining:
		return "draining"
	}
	return "unset"
}

// Backend is one member of a pool. Name, Address and Index never change;
// the live state is kept in atomics (read anywhere) and in fields guarded by
// the pool's mutex (written on state changes only). A Backend is created by
// its Pool and belongs to it.
type Backend struct {
	// Name is unique within the pool; it labels metrics and logs, and places
	// the backend in the hashing policies' tables.
	Name string
	// Address is host:port.
	Address string
	// Index is unique within the pool and never reused: 0 to n-1 for the
	// backends a pool is built with, in config order; then counting up for
	// backends that SetBackends adds. Callers keep per-backend state in
	// slices indexed by it.
	Index int

	pool   *Pool
	state  atomic.Uint32 // State, as of the last snapshot
	weight atomic.Int32  // configured weight
	m      backendMetrics

	// hot is written by every Pick and Release of this backend; it has a
	// cache line of its own so that neighbours do not share the traffic.
	hot struct {
		_        [64]byte
		inflight atomic.Int64
		fails    atomic.Int32  // consecutive Failure outcomes
		latency  atomic.Uint64 // float64 bits: peak-EWMA latency in ns
		latStamp atomic.Int64  // nanotime of the last latency sample
		_        [64]byte
	}

	h health // guarded by pool.mu
}

// health is a backend's state-machine inputs; guarded by the pool's mutex.
type health struct {
	draining bool
	down     bool // the active check says down
	fresh    bool // no active check has finished yet
	passes   int  // consecutive passed active checks
	fails    int  // consecutive failed active checks

	ejectedUntil time.Time // passive ejection; zero: not ejected
	ejections    int       // ejections in a row, for the back-off
	returned     time.Time // when the last ejection ended

	rampFrom time.Time // start of slow start; zero: full weight
	reason   string    // why the state last changed, for the log

	stopCheck func() // stops the active checker; nil when none
}

// backendMetrics are one backend's series, created with full labels when
// the backend is.
type backendMetrics struct {
	up         *metrics.Gauge
	toUp       *metrics.Counter
	toDown     *metrics.Counter
	toDraining *metrics.Counter
	checkPass  *metrics.Counter
	checkFail  *metrics.Counter
	ejections  *metrics.Counter
	notEjected *metrics.Counter
}

// State returns the backend's state as of the pool's current snapshot.
func (b *Backend) State() State { return State(b.state.Load()) }

// Weight returns the configured weight (slow start does not change it).
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// InFlight is the number of leases on the backend not yet released.
func (b *Backend) InFlight() int64 { return b.hot.inflight.Load() }

// Latency is the peak-EWMA latency of successful work, when the pool tracks
// it (p2c with latency = true); 0 otherwise or before the first sample.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.hot.latency.Load()))
}

// observeLatency folds one sample d (ns), taken at now (nanotime), into the
// peak EWMA: a sample above the average replaces it at once; below, the
// average decays towards it with time constant decay. Concurrent updates
// may lose a sample, never corrupt the value.
func (b *Backend) observeLatency(d, now int64, decay time.Duration) {
	last := b.hot.latStamp.Swap(now)
	v := float64(d)
	if prev := math.Float64frombits(b.hot.latency.Load()); prev > v && last != 0 {
		w := math.Exp(-float64(now-last) / float64(decay))
		v = prev*w + v*(1-w)
	}
	b.hot.latency.Store(math.Float64bits(v))
}
