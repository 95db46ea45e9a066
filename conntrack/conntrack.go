// Package conntrack is the table of Portico's live L4 flows: one entry per
// client connection from accept to close, with its listener, client
// address, backend, state, start time, last activity and bytes each way.
//
// The table enforces per-listener and per-client connection limits at
// accept (a refused flow is counted, never inserted), keeps per-backend flow
// counts for draining and the admin API, expires flows that overstay a
// timeout (handshake, connect, idle, lifetime) with a hashed timer wheel, and
// copies a bounded, sorted [Snapshot] for the admin API.
//
// # Ownership
//
// The table is built for an event-loop proxy: each event loop owns one
// shard (give the table as many shards as there are loops) and inserts the
// flows it accepts into it. A flow's [ID] then belongs to that loop: only
// the owner calls SetState, SetBackend, SetClient, Touch, AddBytes and
// Remove for it, and calls Remove exactly once. The owner also sweeps its
// shard with [Table.AppendExpired] once per tick and closes the flows it
// returns.
// Snapshot, AppendBackendFlows and the counters may be called from any
// goroutine. Every method is safe for concurrent use; the ownership rule is
// what makes the answers meaningful (an expired ID goes to the loop that
// can close it) and keeps the shard locks uncontended.
//
// # Cost
//
// Entries are pointer-free value structs in per-shard chunks of 256 that
// never move, so a million flows add a few thousand pointers to the heap the
// garbage collector scans, and an ID (generation, shard, slot) finds its
// entry with two indexes and no map. Insert and Remove take the shard's
// lock, an atomic add on the listener's count and, for listeners with a
// per-client limit, a lock of one of 64 client-count shards; they do not
// allocate once the shard has grown. Touch and AddBytes take no lock: a few
// atomic operations on the entry and on the shard, which its owner alone
// writes. They record the shard's coarse clock, which Insert, SetState and
// each sweep refresh, rather than reading the time: activity is known to
// the resolution of the sweep tick.
//
// Expiry is lazy: Touch never moves an entry in the wheel. When the wheel
// reaches an entry, the sweep recomputes its deadline from its state, its
// last activity and its listener's current timeouts, and either returns it
// as expired or files it again. A sweep therefore costs the entries filed
// under the ticks it passes, not the size of the table, and a flow expires
// between its deadline and one tick after it.
package conntrack

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// ID identifies a flow from Insert to Remove; it is never 0. It packs a
// generation (high 32 bits), the shard (8 bits) and a slot in the shard (24
// bits): the generation changes when the slot is reused, so an ID kept past
// Remove is recognized as stale (best effort: it is not, after 2^31 reuses of
// the same slot).
type ID uint64

const (
	slotBits  = 24
	shardBits = 8

	// MaxShards is the largest number of shards a table may have.
	MaxShards = 1 << shardBits
	// MaxFlowsPerShard is the most live flows one shard holds; Insert
	// refuses more with ErrTableFull.
	MaxFlowsPerShard = 1 << slotBits

	chunkBits = 8
	chunkLen  = 1 << chunkBits
)

func makeID(gen uint32, shard, slot int) ID {
	return ID(uint64(gen)<<32 | uint64(shard)<<slotBits | uint64(slot))
}

// Shard is the index of the shard that holds the flow, the one whose owner
// must close it.
func (id ID) Shard() int { return int(id>>slotBits) & (MaxShards - 1) }

func (id ID) slot() int   { return int(id & (MaxFlowsPerShard - 1)) }
func (id ID) gen() uint32 { return uint32(id >> 32) }

// State is where a flow is in its life. The timeouts that apply depend on it
// (see Timeouts).
type State uint8

const (
	// StateHandshake: accepted; the proxy reads what routes the flow (a
	// PROXY protocol header, a TLS ClientHello) before it picks a backend.
	// The zero State.
	StateHandshake State = iota
	// StateConnecting: a backend is picked and being dialled.
	StateConnecting
	// StateEstablished: bytes flow both ways.
	StateEstablished
	// StateHalfClosed: one side has shut down its writes; the other
	// direction still flows.
	StateHalfClosed
	// StateParked: backpressure; the proxy stopped reading one side until
	// the other drains.
	StateParked
	// StateClosing: the proxy is flushing what is queued before it closes
	// both legs.
	StateClosing

	numStates
)

var stateNames = [numStates]string{"handshake", "connecting", "established", "half_closed", "parked", "closing"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText encodes the state as its name, for JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reason is why AppendExpired returned a flow.
type Reason uint8

const (
	// ReasonHandshake: longer than Timeouts.Handshake in StateHandshake.
	ReasonHandshake Reason = iota
	// ReasonConnect: longer than Timeouts.Connect in StateConnecting.
	ReasonConnect
	// ReasonIdle: no activity for Timeouts.Idle.
	ReasonIdle
	// ReasonLifetime: older than Timeouts.Lifetime.
	ReasonLifetime

	numReasons
)

var reasonNames = [numReasons]string{"handshake_timeout", "connect_timeout", "idle_timeout", "lifetime"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Flow is what Insert records about a new flow.
type Flow struct {
	// Listener is the listener that accepted the flow, from AddListener.
	Listener ListenerID
	// Client is the client's address: the peer's, or the one its PROXY
	// header gave. A zone is not kept. The zero value is allowed and
	// exempts the flow from the per-client limit.
	Client netip.AddrPort
	// Backend is the backend the flow goes to, from Table.Backend; 0 when
	// none is picked yet (see SetBackend).
	Backend BackendID
	// State is the flow's first state; the zero value is StateHandshake.
	State State
}

// FlowInfo is a copy of a flow's entry, for logs and the admin API.
type FlowInfo struct {
	ID       ID             `json:"id"`
	Listener string         `json:"listener"`
	Client   netip.AddrPort `json:"client"`
	// Pool and Backend are empty while no backend is picked.
	Pool    string `json:"pool,omitempty"`
	Backend string `json:"backend,omitempty"`
	State   State  `json:"state"`
	// Start is when Insert ran; StateSince when the flow entered State;
	// LastActive the shard's clock at the latest Touch or AddBytes (Start
	// before any).
	Start      time.Time `json:"start"`
	StateSince time.Time `json:"state_since"`
	LastActive time.Time `json:"last_active"`
	// BytesIn counts bytes received from the client, BytesOut bytes sent
	// to it, as reported with AddBytes.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// Table is the flow table. Create it with New; see the package doc for the
// ownership rule that every method's contract refers to.
type Table struct {
	shards []shard
	now    func() int64 // unix ns
	tick   int64        // wheel resolution, ns
	wheelN int          // buckets per shard's wheel, a power of two
	v6Bits int

	set      *metrics.Set
	bytesIn  *metrics.Counter
	bytesOut *metrics.Counter

	lmu       sync.Mutex // serializes AddListener and SetListener
	listeners atomic.Pointer[[]*listener]
	lnames    map[string]ListenerID // guarded by lmu

	bmu      sync.Mutex // serializes Backend
	backends atomic.Pointer[[]*backend]
	bnames   map[backendKey]BackendID // guarded by bmu

	clients [clientShards]clientShard
}

// New creates an empty table, or fails naming the option that is out of
// range.
func New(opts ...Option) (*Table, error) {
	o := options{
		shards:     runtime.GOMAXPROCS(0),
		tick:       100 * time.Millisecond,
		wheelSlots: 1024,
		v6Bits:     64,
	}
	for _, f := range opts {
		f(&o)
	}
	switch {
	case o.shards < 1 || o.shards > MaxShards:
		return nil, fmt.Errorf("cannot create conntrack table: shards must be 1 to %d, got %d", MaxShards, o.shards)
	case o.tick < time.Millisecond:
		return nil, fmt.Errorf("cannot create conntrack table: tick must be at least 1ms, got %s", o.tick)
	case o.wheelSlots < 16 || o.wheelSlots > 1<<20 || o.wheelSlots&(o.wheelSlots-1) != 0:
		return nil, fmt.Errorf("cannot create conntrack table: wheel slots must be a power of two from 16 to %d, got %d", 1<<20, o.wheelSlots)
	case o.v6Bits < 1 || o.v6Bits > 128:
		return nil, fmt.Errorf("cannot create conntrack table: IPv6 client prefix must be 1 to 128 bits, got %d", o.v6Bits)
	}
	t := &Table{
		shards: make([]shard, o.shards),
		tick:   int64(o.tick),
		wheelN: o.wheelSlots,
		v6Bits: o.v6Bits,
		set:    o.set,
		lnames: map[string]ListenerID{},
		bnames: map[backendKey]BackendID{},
	}
	if o.clock != nil {
		clock := o.clock
		t.now = func() int64 { return clock().UnixNano() }
	} else {
		// Unix time that follows the monotonic clock, so that a step of
		// the wall clock does not expire every flow at once.
		base := time.Now()
		unix := base.UnixNano()
		t.now = func() int64 { return unix + int64(time.Since(base)) }
	}
	if t.set == nil {
		t.set = metrics.NewSet()
	}
	t.bytesIn = t.set.GetOrCreateCounter(`portico_conntrack_bytes_total{direction="in"}`)
	t.bytesOut = t.set.GetOrCreateCounter(`portico_conntrack_bytes_total{direction="out"}`)

	now := t.now()
	for i := range t.shards {
		s := &t.shards[i]
		s.now.Store(now)
		s.dir.Store(new([]*chunk))
		s.wheel.init(o.wheelSlots, now/t.tick)
	}
	ls := []*listener{}
	t.listeners.Store(&ls)
	bs := []*backend{{}} // BackendID 0: none
	t.backends.Store(&bs)
	for i := range t.clients {
		t.clients[i].m = map[clientKey]int32{}
	}
	return t, nil
}

// Shards is the number of shards.
func (t *Table) Shards() int { return len(t.shards) }

// Len is the number of live flows. Safe for concurrent use; under
// concurrent Insert and Remove it is a recent value, not an exact one.
func (t *Table) Len() int {
	n := int64(0)
	for i := range t.shards {
		n += t.shards[i].active.Load()
	}
	return int(n)
}

// Insert records a new flow in shard (taken modulo Shards, so an event loop
// may pass its index) and returns its ID, owned by the caller. It refuses
// the flow, and counts the refusal, with ErrListenerLimit or ErrClientLimit
// when the listener's limits are reached, or ErrTableFull. It fails with
// ErrUnknownListener or ErrUnknownBackend for IDs this table did not issue.
//
// Safe for concurrent use. It does not allocate once the shard has grown to
// the number of flows it holds (and, for listeners with a per-client limit,
// once the client-count maps have).
func (t *Table) Insert(shard int, f Flow) (ID, error) {
	ls := *t.listeners.Load()
	if int(f.Listener) >= len(ls) {
		return 0, ErrUnknownListener
	}
	if f.Backend != 0 && int(f.Backend) >= len(*t.backends.Load()) {
		return 0, ErrUnknownBackend
	}
	l := ls[f.Listener]
	cfg := l.cfg.Load()

	if n := l.active.Add(1); cfg.MaxFlows > 0 && n > int64(cfg.MaxFlows) {
		l.active.Add(-1)
		l.refused[refusedListener].Inc()
		return 0, ErrListenerLimit
	}
	var flags uint8
	var ck clientKey
	if f.Client.Addr().IsValid() {
		flags |= flagClient
		if f.Client.Addr().Unmap().Is4() {
			flags |= flagV4
		}
		if cfg.MaxFlowsPerClient > 0 {
			ck = t.clientKey(f.Listener, f.Client.Addr())
			if !t.acquireClient(ck, cfg.MaxFlowsPerClient) {
				l.active.Add(-1)
				l.refused[refusedClient].Inc()
				return 0, ErrClientLimit
			}
			flags |= flagCounted
		}
	}

	si := int(uint(shard) % uint(len(t.shards)))
	s := &t.shards[si]
	now := t.now()
	s.now.Store(now)
	s.mu.Lock()
	slot, ok := s.alloc()
	if !ok {
		s.mu.Unlock()
		if flags&flagCounted != 0 {
			t.releaseClient(ck)
		}
		l.active.Add(-1)
		l.refused[refusedFull].Inc()
		return 0, ErrTableFull
	}
	e := s.entry(slot)
	gen := e.gen.Load() + 1
	e.listener = f.Listener
	e.state = f.State
	e.flags = flags
	e.backend = f.Backend
	e.port = f.Client.Port()
	e.client = f.Client.Addr().As16()
	e.start = now
	e.since = now
	e.last.Store(now)
	e.in.Store(0)
	e.out.Store(0)
	e.gen.Store(gen)
	s.active.Add(1)
	at, _ := deadline(e, cfg)
	s.file(slot, e, s.wheel.clamp(at/t.tick))
	s.mu.Unlock()

	if f.Backend != 0 {
		(*t.backends.Load())[f.Backend].active.Add(1)
	}
	l.accepted.Inc()
	return makeID(gen, si, slot), nil
}

// Remove deletes the flow and returns its final entry, or false when id is
// not a live flow. Only the flow's owner may call it, once.
func (t *Table) Remove(id ID) (FlowInfo, bool) {
	s, e := t.lookup(id)
	if e == nil {
		return FlowInfo{}, false
	}
	s.mu.Lock()
	if e.gen.Load() != id.gen() {
		s.mu.Unlock()
		return FlowInfo{}, false
	}
	info := t.info(id, e)
	s.unfile(id.slot(), e)
	e.gen.Store(id.gen() + 1)
	s.free = append(s.free, int32(id.slot()))
	s.active.Add(-1)
	lid, b, flags := e.listener, e.backend, e.flags
	var ck clientKey
	if flags&flagCounted != 0 {
		ck = t.clientKey(lid, info.Client.Addr())
	}
	s.mu.Unlock()

	(*t.listeners.Load())[lid].active.Add(-1)
	if flags&flagCounted != 0 {
		t.releaseClient(ck)
	}
	if b != 0 {
		(*t.backends.Load())[b].active.Add(-1)
	}
	return info, true
}

// SetState moves the flow to state st and restarts the time spent in a
// state; it returns false when id is not a live flow. A state change counts
// as activity. Only the flow's owner may call it.
func (t *Table) SetState(id ID, st State) bool {
	s, e := t.lookup(id)
	if e == nil {
		return false
	}
	now := t.now()
	s.now.Store(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gen.Load() != id.gen() {
		return false
	}
	e.state, e.since = st, now
	if e.flags&flagExpired == 0 {
		// The new state's deadline may come sooner than the tick the
		// entry is filed under; a later one is found lazily.
		at, _ := deadline(e, (*t.listeners.Load())[e.listener].cfg.Load())
		if due := s.wheel.clamp(at / t.tick); due < e.due {
			s.unfile(id.slot(), e)
			s.file(id.slot(), e, due)
		}
	}
	return true
}

// SetClient replaces the flow's client address with c, the one a PROXY
// protocol header gives, and moves the flow to c's per-client count. When c
// is at the listener's per-client limit it refuses with ErrClientLimit,
// counted, and leaves the flow as it was: its owner then closes it. It
// fails with ErrUnknownFlow when id is not a live flow. Only the flow's
// owner may call it.
func (t *Table) SetClient(id ID, c netip.AddrPort) error {
	s, e := t.lookup(id)
	if e == nil {
		return ErrUnknownFlow
	}
	s.mu.Lock()
	if e.gen.Load() != id.gen() {
		s.mu.Unlock()
		return ErrUnknownFlow
	}
	lid, oldCounted := e.listener, e.flags&flagCounted != 0
	old := e.copy()
	s.mu.Unlock()
	// The owner alone changes the client, so it can count unlocked.

	l := (*t.listeners.Load())[lid]
	var oldKey, newKey clientKey
	if oldCounted {
		oldKey = t.clientKey(lid, old.clientAddr().Addr())
	}
	var flags uint8
	if c.Addr().IsValid() {
		flags |= flagClient
		if c.Addr().Unmap().Is4() {
			flags |= flagV4
		}
		if limit := l.cfg.Load().MaxFlowsPerClient; limit > 0 {
			newKey = t.clientKey(lid, c.Addr())
			if !oldCounted || newKey != oldKey {
				if !t.acquireClient(newKey, limit) {
					l.refused[refusedClient].Inc()
					return ErrClientLimit
				}
				if oldCounted {
					t.releaseClient(oldKey)
				}
			}
			flags |= flagCounted
		}
	}
	if oldCounted && flags&flagCounted == 0 {
		t.releaseClient(oldKey)
	}

	s.mu.Lock()
	e.flags = e.flags&^(flagClient|flagV4|flagCounted) | flags
	e.client, e.port = c.Addr().As16(), c.Port()
	s.mu.Unlock()
	return nil
}

// SetBackend records the backend the flow goes to (0: none) and moves the
// flow between the backends' counts; it returns false when id is not a live
// flow or b was not issued by this table. Only the flow's owner may call it.
func (t *Table) SetBackend(id ID, b BackendID) bool {
	bs := *t.backends.Load()
	if int(b) >= len(bs) {
		return false
	}
	s, e := t.lookup(id)
	if e == nil {
		return false
	}
	s.mu.Lock()
	if e.gen.Load() != id.gen() {
		s.mu.Unlock()
		return false
	}
	old := e.backend
	e.backend = b
	s.mu.Unlock()
	if old != 0 {
		bs[old].active.Add(-1)
	}
	if b != 0 {
		bs[b].active.Add(1)
	}
	return true
}

// Touch records activity on the flow at the shard's clock and returns false
// when id is not a live flow. It takes no lock and does not allocate. Only
// the flow's owner may call it.
func (t *Table) Touch(id ID) bool {
	s, e := t.lookup(id)
	if e == nil {
		return false
	}
	e.last.Store(s.now.Load())
	return true
}

// AddBytes adds in bytes received from the client and out bytes sent to it
// (neither negative) and records activity like Touch; it returns false when
// id is not a live flow. It takes no lock and does not allocate: call it
// per read. Only the flow's owner may call it. The byte metrics catch up at
// the shard's next sweep.
func (t *Table) AddBytes(id ID, in, out int) bool {
	s, e := t.lookup(id)
	if e == nil {
		return false
	}
	if in != 0 {
		e.in.Add(uint64(in))
		s.bytesIn.Add(uint64(in))
	}
	if out != 0 {
		e.out.Add(uint64(out))
		s.bytesOut.Add(uint64(out))
	}
	e.last.Store(s.now.Load())
	return true
}

// Get returns a copy of the flow's entry, or false when id is not a live
// flow. Safe for concurrent use.
func (t *Table) Get(id ID) (FlowInfo, bool) {
	s, e := t.lookup(id)
	if e == nil {
		return FlowInfo{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gen.Load() != id.gen() {
		return FlowInfo{}, false
	}
	return t.info(id, e), true
}
