package lb

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Pool is a built `[pools.NAME]` section: its backends, their live state and
// the snapshot that picks read. Pick and Lease.Release are safe for
// concurrent use, lock-free and allocation-free; the methods that change
// membership or state take the pool's mutex and publish a new snapshot.
//
// A pool with active health checks, passive checks or slow start runs
// background work (one goroutine per checked backend, one timer); Close
// stops it. Picks keep working after Close, on the last snapshot.
type Pool struct {
	// Name is the pool's name in the config, logs and metrics.
	Name string

	cfg     PoolConfig
	hashKey HashKey
	policy  Policy
	rand    func() uint64
	log     *slog.Logger
	set     *metrics.Set
	checker *checker // nil: no active checks

	// Fixed at construction; read by Pick and Release.
	bounded      bool          // total is maintained
	ejectAfter   int32         // outlier.consecutive_failures; 0: off
	trackLatency bool          // leases carry their start time
	latencyDecay time.Duration // p2c.decay

	snap atomic.Pointer[snapshot]

	// total is written by every pick and release of a bounded pool; it has
	// a cache line of its own.
	_     [64]byte
	total atomic.Int64 // leases in flight on the pool's backends
	_     [64]byte

	mu        sync.Mutex
	members   []*Backend
	nextIndex int
	panicking bool
	timer     *time.Timer
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// snapshot is what a pick reads: immutable once published.
type snapshot struct {
	members  []*Backend
	set      []Weighted // what picker was built over
	picker   Picker     // nil when no backend may take work
	reserves bool       // picker counts its picks in flight itself
	err      error      // returned by Pick when picker is nil
}

// reserver is implemented by pickers whose Pick also counts the pick in
// flight on the backend (bounded load does so atomically with its check).
type reserver interface{ reserves() }

// Option adjusts NewPool; see the With functions.
type Option func(*options)

// options are the settings of a pool that do not come from its config.
// Every field's zero value is usable.
type options struct {
	// log gets state changes (warn for down, info otherwise) and check
	// details (debug). nil: discard.
	log *slog.Logger
	// metrics gets the pool's series. nil: a private set.
	metrics *metrics.Set
	// rand is the source of randomness for picks. nil: math/rand/v2.
	rand func() uint64
	// previous is the pool this one replaces on a reload. nil: none.
	previous *Pool
}

// WithLogger sends the pool's log lines to l.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics registers the pool's metrics in s.
func WithMetrics(s *metrics.Set) Option { return func(o *options) { o.metrics = s } }

// WithRand makes f the source of randomness of random, least_conn, p2c and
// of hashing policies for keyless picks. f must be safe for concurrent use;
// tests pass a seeded one to make picks repeatable.
func WithRand(f func() uint64) Option { return func(o *options) { o.rand = f } }

// WithPrevious carries the health of prev's backends over to the backends
// of the new pool with the same name and address (down, ejected, in slow
// start), so that a reload neither revives a dead backend nor forgets a
// ramp. In-flight counts are not carried: leases taken from prev are
// released on prev's backends. The caller still closes prev.
func WithPrevious(prev *Pool) Option { return func(o *options) { o.previous = prev } }

// NewPool builds a pool from a config section, filling its defaults and
// validating it, and starts its background work if it has any.
func NewPool(name string, c PoolConfig, opts ...Option) (*Pool, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	c.Backends = slices.Clone(c.Backends)
	c.SetDefaults()
	if err := c.Validate("pools." + name); err != nil {
		return nil, fmt.Errorf("cannot build pool %q: %w", name, err)
	}
	p := &Pool{Name: name, cfg: c, rand: o.rand, log: o.log, set: o.metrics}
	if p.rand == nil {
		p.rand = defaultRand
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.set == nil {
		p.set = metrics.NewSet()
	}
	p.hashKey, _ = ParseHashKey(c.HashKey)
	p.bounded = c.BoundedLoad.Enabled
	p.ejectAfter = int32(c.Outlier.ConsecutiveFailures)
	p.trackLatency = c.Policy == PolicyP2C && c.P2C.Latency
	p.latencyDecay = c.P2C.Decay
	p.policy = c.policy(p)
	if c.HealthCheck.Type != "" {
		p.checker = newChecker(c.HealthCheck)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())

	p.mu.Lock()
	defer p.mu.Unlock()
	for _, bc := range c.Backends {
		b := p.newBackendLocked(bc)
		if o.previous != nil {
			p.inherit(b, o.previous)
		}
		p.members = append(p.members, b)
	}
	now := time.Now()
	if err := p.rebuildLocked(now); err != nil {
		p.cancel()
		return nil, fmt.Errorf("cannot build pool %q: %w", name, err)
	}
	p.scheduleLocked(now)
	for _, b := range p.members {
		p.startCheckLocked(b)
	}
	return p, nil
}

// HashKey is the parsed hash_key setting: what the caller hashes into
// Key.Hash for this pool. Its Source is HashNone when the policy does not
// hash.
func (p *Pool) HashKey() HashKey { return p.hashKey }

// SendProxy is the pool's send_proxy setting: "v1", "v2" or "" (none).
// Package l4 sends the header; l7 ignores it.
func (p *Pool) SendProxy() string { return p.cfg.SendProxy }

// Policy is the pool's policy name, such as "maglev".
func (p *Pool) Policy() string { return p.cfg.Policy }

// Backends returns the pool's members, in config order, as of the current
// snapshot: up, down and draining alike. The slice is shared; do not modify
// it.
func (p *Pool) Backends() []*Backend { return p.snap.Load().members }

// Pick chooses a backend for one connection or request and counts the work
// in flight on it; the caller must call Release on the returned Lease
// exactly once. When no backend may take work, the error wraps
// ErrNoBackend and says why. A pick that races a state change may still
// return a backend that has just gone down or started draining.
func (p *Pool) Pick(key Key) (Lease, error) {
	s := p.snap.Load()
	if s.picker == nil {
		return Lease{}, s.err
	}
	b, err := s.picker.Pick(key)
	if err != nil {
		return Lease{}, err
	}
	if !s.reserves {
		b.hot.inflight.Add(1)
	}
	l := Lease{Backend: b}
	if p.trackLatency {
		l.start = nanotime()
	}
	return l, nil
}

// SetBackends replaces the pool's membership and weights with bs, which is
// defaulted and validated like the config's backends. A backend with the
// same name and address as a current one is kept, with its state and work
// in flight (its weight and drain flag are updated); new backends get new
// indices (never reused) and start in slow start; removed ones simply get
// no new work, and their leases release as usual.
//
// Callers that keep per-backend slices by Index must size them from
// Backends after SetBackends returns and before using a picked backend.
func (p *Pool) SetBackends(bs []BackendConfig) error {
	c := p.cfg
	c.Backends = slices.Clone(bs)
	c.SetDefaults()
	if err := c.Validate("pools." + p.Name); err != nil {
		return fmt.Errorf("cannot set backends of pool %q: %w", p.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("cannot set backends of pool %q: pool closed", p.Name)
	}
	old := make(map[string]*Backend, len(p.members))
	for _, b := range p.members {
		old[b.Name] = b
	}
	now := time.Now()
	members := make([]*Backend, 0, len(c.Backends))
	var added []*Backend
	for _, bc := range c.Backends {
		if b, ok := old[bc.Name]; ok && b.Address == bc.Address {
			delete(old, bc.Name)
			b.weight.Store(int32(bc.Weight))
			if b.h.draining != bc.Drain {
				b.h.draining = bc.Drain
				b.h.reason = "drain set by SetBackends"
			}
			members = append(members, b)
			continue
		}
		b := p.newBackendLocked(bc)
		p.startRampLocked(b, now)
		members = append(members, b)
		added = append(added, b)
	}
	prev := p.members
	p.members = members
	if err := p.rebuildLocked(now); err != nil {
		p.members = prev
		return fmt.Errorf("cannot set backends of pool %q: %w", p.Name, err)
	}
	for _, b := range old {
		if b.h.stopCheck != nil {
			b.h.stopCheck()
			b.h.stopCheck = nil
		}
		b.m.up.Set(0)
		p.logf(slog.LevelInfo, "backend removed", b, "")
	}
	for _, b := range added {
		p.startCheckLocked(b)
		p.logf(slog.LevelInfo, "backend added", b, "")
	}
	p.scheduleLocked(now)
	return nil
}

// SetDraining starts (on) or ends draining of the named backend. A draining
// backend gets no new work from picks that start after SetDraining returns;
// its leases in flight finish as usual (watch Backend.InFlight).
func (p *Pool) SetDraining(name string, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.memberLocked(name)
	if b == nil {
		return fmt.Errorf("pool %q: backend %q: %w", p.Name, name, ErrUnknownBackend)
	}
	if b.h.draining == on {
		return nil
	}
	b.h.draining = on
	b.h.reason = "drain ended"
	if on {
		b.h.reason = "drain started"
	}
	return p.rebuildLocked(time.Now())
}

// Close stops the pool's health checks and timers and waits for them. It is
// safe to call more than once. Picks and releases keep working.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	if p.checker != nil {
		p.checker.close()
	}
	return nil
}

func (p *Pool) memberLocked(name string) *Backend {
	for _, b := range p.members {
		if b.Name == name {
			return b
		}
	}
	return nil
}

func (p *Pool) newBackendLocked(bc BackendConfig) *Backend {
	b := &Backend{Name: bc.Name, Address: bc.Address, Index: p.nextIndex, pool: p}
	p.nextIndex++
	b.weight.Store(int32(bc.Weight))
	b.h.draining = bc.Drain
	b.h.fresh = p.checker != nil
	b.m = p.newBackendMetrics(b)
	return b
}

// inherit copies the health of prev's backend of the same name and address,
// for the features this pool has.
func (p *Pool) inherit(b *Backend, prev *Pool) {
	prev.mu.Lock()
	defer prev.mu.Unlock()
	old := prev.memberLocked(b.Name)
	if old == nil || old.Address != b.Address {
		return
	}
	if p.checker != nil && prev.checker != nil {
		b.h.down, b.h.fresh = old.h.down, old.h.fresh
		b.h.passes, b.h.fails = old.h.passes, old.h.fails
	}
	if p.ejectAfter > 0 {
		b.h.ejectedUntil, b.h.ejections, b.h.returned = old.h.ejectedUntil, old.h.ejections, old.h.returned
	}
	if p.cfg.SlowStart > 0 {
		b.h.rampFrom = old.h.rampFrom
	}
	b.hot.latency.Store(old.hot.latency.Load())
	b.hot.latStamp.Store(old.hot.latStamp.Load())
}

// stateLocked is the backend's state from its health inputs.
func (b *Backend) stateLocked() State {
	switch {
	case b.h.draining:
		return Draining
	case b.h.down, !b.h.ejectedUntil.IsZero():
		return Down
	}
	return Up
}

// effectiveWeightLocked is the backend's weight in WeightScale units, less
// during slow start: 10%, 20%, ... 100% over ten equal steps. It ends the
// ramp once the window has passed.
func (p *Pool) effectiveWeightLocked(b *Backend, now time.Time) uint32 {
	w := uint32(b.Weight()) * WeightScale
	if b.h.rampFrom.IsZero() {
		return w
	}
	elapsed, window := now.Sub(b.h.rampFrom), p.cfg.SlowStart
	if elapsed >= window || window <= 0 {
		b.h.rampFrom = time.Time{}
		return w
	}
	step := uint32(max(elapsed, 0) * 10 / window) // 0 to 9
	return max(1, w*(step+1)/10)
}

func (p *Pool) startRampLocked(b *Backend, now time.Time) {
	if p.cfg.SlowStart > 0 {
		b.h.rampFrom = now
	}
}

// rebuildLocked builds and publishes a snapshot from the members' current
// state, then logs and counts each backend whose state changed.
func (p *Pool) rebuildLocked(now time.Time) error {
	set := make([]Weighted, 0, len(p.members))
	states := make([]State, len(p.members))
	var down, draining int
	for i, b := range p.members {
		states[i] = b.stateLocked()
		switch states[i] {
		case Up:
			set = append(set, Weighted{Backend: b, Weight: p.effectiveWeightLocked(b, now)})
		case Down:
			down++
		case Draining:
			draining++
		}
	}
	panicking := false
	if len(set) == 0 && p.cfg.PanicMode {
		for _, b := range p.members {
			if !b.h.draining {
				set = append(set, Weighted{Backend: b, Weight: uint32(b.Weight()) * WeightScale})
			}
		}
		panicking = len(set) > 0
	}
	s := &snapshot{members: slices.Clip(slices.Clone(p.members)), set: set}
	if len(set) == 0 {
		s.err = p.noBackendError(down, draining)
	} else {
		picker, err := p.policy.Build(set)
		if err != nil {
			return fmt.Errorf("cannot build %s picker: %w", p.cfg.Policy, err)
		}
		s.picker = picker
		_, s.reserves = picker.(reserver)
	}
	p.snap.Store(s)
	for i, b := range p.members {
		p.publishLocked(b, states[i])
	}
	if panicking != p.panicking {
		p.panicking = panicking
		if panicking {
			p.log.Warn("pool in panic mode: every backend is down; sending work to all that are not draining", "pool", p.Name)
		} else {
			p.log.Info("pool out of panic mode", "pool", p.Name)
		}
	}
	return nil
}

func (p *Pool) noBackendError(down, draining int) error {
	var why string
	switch n := len(p.members); {
	case n == 0:
		why = "no backends"
	case down == n:
		why = fmt.Sprintf("all %d backends down", n)
	case draining == n:
		why = fmt.Sprintf("all %d backends draining", n)
	default:
		why = fmt.Sprintf("%d backends down, %d draining", down, draining)
	}
	return fmt.Errorf("pool %q: %s: %w", p.Name, why, ErrNoBackend)
}

// publishLocked records a backend's state; a change is logged once and
// counted.
func (p *Pool) publishLocked(b *Backend, st State) {
	old := State(b.state.Swap(uint32(st)))
	if old == st {
		return
	}
	up := 0.0
	if st == Up {
		up = 1
	}
	b.m.up.Set(up)
	if old == stateUnset {
		return // the backend's first state is not a change
	}
	switch st {
	case Up:
		b.m.toUp.Inc()
		p.logf(slog.LevelInfo, "backend up", b, b.h.reason)
	case Down:
		b.m.toDown.Inc()
		p.logf(slog.LevelWarn, "backend down", b, b.h.reason)
	case Draining:
		b.m.toDraining.Inc()
		p.logf(slog.LevelInfo, "backend draining", b, b.h.reason)
	}
}

func (p *Pool) logf(level slog.Level, msg string, b *Backend, reason string) {
	if !p.log.Enabled(context.Background(), level) {
		return
	}
	if reason == "" {
		p.log.Log(context.Background(), level, msg, "pool", p.Name, "backend", b.Name, "address", b.Address)
		return
	}
	p.log.Log(context.Background(), level, msg, "pool", p.Name, "backend", b.Name, "address", b.Address, "reason", reason)
}

// scheduleLocked arms the pool's timer for the next ejection end or
// slow-start step.
func (p *Pool) scheduleLocked(now time.Time) {
	if p.closed {
		return
	}
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, b := range p.members {
		if !b.h.ejectedUntil.IsZero() {
			earlier(b.h.ejectedUntil)
		}
		if window := p.cfg.SlowStart; !b.h.rampFrom.IsZero() {
			if elapsed := now.Sub(b.h.rampFrom); elapsed >= window {
				b.h.rampFrom = time.Time{} // ended while the backend was not up
			} else {
				earlier(b.h.rampFrom.Add((elapsed*10/window + 1) * window / 10))
			}
		}
	}
	if next.IsZero() {
		if p.timer != nil {
			p.timer.Stop()
		}
		return
	}
	d := max(next.Sub(now), 0)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.onTimer)
	} else {
		p.timer.Reset(d)
	}
}

// onTimer ends due ejections and steps slow starts.
func (p *Pool) onTimer() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := time.Now()
	for _, b := range p.members {
		if !b.h.ejectedUntil.IsZero() && !now.Before(b.h.ejectedUntil) {
			b.h.ejectedUntil = time.Time{}
			b.h.returned = now
			b.h.reason = "ejection ended"
			p.startRampLocked(b, now)
		}
	}
	p.rebuildAndScheduleLocked(now)
}

func (p *Pool) rebuildAndScheduleLocked(now time.Time) {
	if err := p.rebuildLocked(now); err != nil {
		p.log.Error("cannot rebuild pool; the previous snapshot stays", "pool", p.Name, "error", err)
	}
	p.scheduleLocked(now)
}

// newBackendMetrics creates a backend's series with full labels; counters
// for features the pool lacks are left nil and never touched.
func (p *Pool) newBackendMetrics(b *Backend) backendMetrics {
	labels := `pool=` + quoteLabel(p.Name) + `,backend=` + quoteLabel(b.Name)
	s := p.set
	m := backendMetrics{
		up:         s.GetOrCreateGauge(`portico_lb_backend_up{`+labels+`}`, nil),
		toUp:       s.GetOrCreateCounter(`portico_lb_backend_state_changes_total{` + labels + `,state="up"}`),
		toDown:     s.GetOrCreateCounter(`portico_lb_backend_state_changes_total{` + labels + `,state="down"}`),
		toDraining: s.GetOrCreateCounter(`portico_lb_backend_state_changes_total{` + labels + `,state="draining"}`),
	}
	if p.checker != nil {
		m.checkPass = s.GetOrCreateCounter(`portico_lb_health_checks_total{` + labels + `,result="pass"}`)
		m.checkFail = s.GetOrCreateCounter(`portico_lb_health_checks_total{` + labels + `,result="fail"}`)
	}
	if p.ejectAfter > 0 {
		m.ejections = s.GetOrCreateCounter(`portico_lb_ejections_total{` + labels + `}`)
		m.notEjected = s.GetOrCreateCounter(`portico_lb_ejections_skipped_total{` + labels + `}`)
	}
	return m
}

// quoteLabel quotes a label value for the Prometheus text format.
func quoteLabel(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return `"` + v + `"`
}

// backendsOf lists the backends of a set.
func backendsOf(set []Weighted) []*Backend {
	bs := make([]*Backend, len(set))
	for i, w := range set {
		bs[i] = w.Backend
	}
	return bs
}
