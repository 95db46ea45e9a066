// Package lb decides which backend of a pool gets each new connection (L4) or
// request (L7). Both paths use it; neither keeps balancing code of its own.
//
// # Shape
//
// A Pool is built from a PoolConfig (the `[pools.NAME]` section). It holds
// its backends, their live state (in-flight count, health, draining) and an
// immutable snapshot: the members and a Picker built by the pool's Policy
// over the backends that may take new work, with their effective weights.
// Every membership, weight or state change builds a new snapshot and swaps
// it in with one atomic pointer store; Pick never takes a lock and never
// allocates.
//
// Pool.Pick returns a Lease: the backend, counted in flight until the caller
// calls Lease.Release with the outcome of the work. The in-flight counts
// drive least_conn, p2c and bounded load; the outcomes drive passive health
// checks and p2c's latency average.
//
// # Policies
//
// Each policy is one file: round_robin (roundrobin.go), weighted_round_robin
// (weighted.go, NGINX's smooth weighted round robin), random (random.go,
// weighted, Vose's alias method), least_conn (leastconn.go, weighted, ties
// broken at random), p2c (p2c.go, power of two choices on in-flight count,
// optionally times a peak-EWMA latency), ring_hash (ringhash.go, Ketama-style
// with virtual nodes) and maglev (maglev.go, the lookup table of the Maglev
// paper, section 3.4). Bounded-load consistent hashing (bounded.go, Mirrokni,
// Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018)
// wraps either hashing policy: no backend takes new work above c times its
// weighted share of the pool's load.
//
// # Health
//
// Active checks (health.go) connect over TCP or GET an HTTP path on every
// backend at an interval, with rise and fall thresholds. Passive checks
// (outlier.go) eject a backend after consecutive failed outcomes, for a time
// that doubles while it keeps failing. A backend that comes back ramps its
// weight up over the slow-start window. A draining backend gets no new work;
// work in flight finishes. When no backend may take work, Pick fails at once
// with an error wrapping ErrNoBackend, unless the pool opts into panic mode.
//
// # Cost
//
// Pool.Pick plus Lease.Release in ns/op: go test -bench Pick -benchmem
// -count 3, the least of the three, on 2 vCPUs of an AMD EPYC (GOMAXPROCS=2,
// so parallel is two goroutines in RunParallel). Every case is 0 B/op and
// 0 allocs/op; TestPickAllocs keeps it so. Hashing policies get a new key
// each pick; picks are released at once, so in-flight counts stay low.
//
//	policy                   backends=3        backends=100      backends=1000
//	                         serial  parallel  serial  parallel  serial  parallel
//	round_robin                10.9      26.7    10.1      26.2    10.3      24.3
//	weighted_round_robin       10.5      28.6    11.1      14.0    11.6      11.4
//	random                     13.1      11.7    13.4       8.8    14.3      14.8
//	least_conn                 23.6      98.9     183       202    1567       866
//	p2c                        26.7      21.6    18.8      16.9    18.6      17.3
//	p2c, latency = true         109      90.2     104       104     109      95.7
//	ring_hash                  20.7      22.2    24.3      24.1    35.1      17.9
//	ring_hash, bounded_load    23.5      36.8    27.7      27.9    37.6      41.8
//	maglev                      9.4      10.7    10.4      10.0    12.7      15.1
//	maglev, bounded_load       13.3      20.1    16.3      25.0    17.5      35.4
//
// least_conn reads every backend's count, so it grows with the pool; p2c
// reads two. p2c with latency reads the clock at pick and release. The
// round-robin counters and bounded load's pool total are shared cache lines
// under parallel load. Build (on every membership, weight or health change)
// at 1000 backends of weights 1 to 10: maglev 3 ms, ring_hash 76 ms (880k
// points), weighted_round_robin 5 ms.
package lb

// Key carries what a pick may depend on.
type Key struct {
	// Hash is the request's affinity key hashed with Hash or HashString (see
	// HashKey). Only ring_hash and maglev use it. 0 means the request has no
	// key; hashing policies then pick at random.
	Hash uint64
	// Attempt counts earlier tries of the same request: 0 on the first. A
	// retry is steered away from the first choice where the policy can.
	Attempt uint32
}

// Picker chooses a backend. A Picker is built by a Policy and is read-only
// afterwards: Pick is safe for concurrent use and does not allocate. It
// returns one of the backends it was built over, or an error wrapping
// ErrNoBackend.
type Picker interface {
	Pick(key Key) (*Backend, error)
}

// Policy builds Pickers. Build runs whenever the set of backends that may
// take work, or their effective weights, change; it is never on the pick
// path. set is not empty and is not modified after Build returns; the Picker
// may keep it.
type Policy interface {
	Build(set []Weighted) (Picker, error)
}

// Weighted is a backend and its effective weight, in units of 1/WeightScale
// of a configured weight: weight × WeightScale normally, less during slow
// start. Weight is at least 1.
type Weighted struct {
	Backend *Backend
	Weight  uint32
}

// WeightScale is the number of Weighted.Weight units in one unit of a
// configured backend weight.
const WeightScale = 100

// Outcome is how a leased piece of work ended, as far as the backend is
// concerned.
type Outcome uint8

const (
	// Success: the backend did its part (for HTTP, any status below 500).
	Success Outcome = iota
	// Failure: the backend refused the connection, timed out, reset it, or
	// answered 5xx. Consecutive failures eject the backend when the pool has
	// passive checks.
	Failure
	// Canceled: the work ended for a reason that is not the backend's, such
	// as the client going away or a local limit. It counts neither way.
	Canceled
)

// Lease is a backend picked for one connection or request. The work is
// counted in flight on the backend until Release. A Lease is a small value:
// copy it freely, but call Release exactly once.
type Lease struct {
	*Backend
	// start is when the work began, in nanoseconds on the package's
	// monotonic clock, when the pool tracks latency; 0 otherwise.
	start int64
}

// Release ends the lease: the backend's in-flight count drops by one and the
// outcome feeds passive health checks and latency tracking. It is safe for
// concurrent use and does not allocate.
func (l Lease) Release(o Outcome) {
	b := l.Backend
	b.hot.inflight.Add(-1)
	p := b.pool
	if p.bounded {
		p.total.Add(-1)
	}
	if l.start != 0 {
		switch now := nanotime(); o {
		case Success:
			b.observeLatency(now-l.start, now, p.latencyDecay)
		case Failure:
			// A failure counts as a latency of one time constant, so that
			// a backend that fails fast does not look fast.
			b.observeLatency(int64(p.latencyDecay), now, p.latencyDecay)
		}
	}
	switch o {
	case Success:
		if b.hot.fails.Load() != 0 {
			b.hot.fails.Store(0)
		}
	case Failure:
		if p.ejectAfter > 0 && b.hot.fails.Add(1) == p.ejectAfter {
			p.eject(b)
		}
	}
}
