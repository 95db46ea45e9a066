package conntrack

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// shard is one owner's part of the table.
type shard struct {
	_ [64]byte

	// Hot: read by every Touch and AddBytes of the shard's flows.
	now      atomic.Int64  // coarse clock, unix ns: the latest Insert, SetState or sweep
	bytesIn  atomic.Uint64 // bytes AddBytes counted since the last sweep
	bytesOut atomic.Uint64
	active   atomic.Int64 // live flows; written under mu

	mu    sync.Mutex
	dir   atomic.Pointer[[]*chunk] // grows under mu; chunks never move or go away
	used  int                      // slots handed out so far; guarded by mu
	free  []int32                  // slots free for reuse, LIFO; guarded by mu
	wheel wheel                    // guarded by mu

	_ [64]byte
}

type chunk [chunkLen]entry

// entry is one flow. It holds no pointers, so a chunk is not scanned by the
// garbage collector.
type entry struct {
	// gen is odd while the slot holds a live flow (the generation in its
	// ID) and even while it is free. Written under the shard's lock, read
	// without it.
	gen atomic.Uint32

	// Guarded by the shard's lock.
	listener ListenerID
	state    State
	flags    uint8
	backend  BackendID
	next     int32 // wheel bucket list; -1 ends it
	prev     int32
	port     uint16
	client   [16]byte // IPv4 as IPv4-mapped IPv6
	start    int64    // unix ns
	since    int64    // when state was set, unix ns
	due      int64    // wheel tick the entry is filed under

	// Written by the owner without the lock.
	last atomic.Int64 // unix ns (the shard's coarse clock)
	in   atomic.Uint64
	out  atomic.Uint64
}

const (
	flagClient  = 1 << iota // client holds an address
	flagV4                  // the client address is IPv4
	flagCounted             // counted against the listener's per-client limit
	flagFiled               // in the wheel
	flagExpired             // returned by AppendExpired; waits for Remove
)

// lookup finds the entry of a live flow without locking; it returns a nil
// entry when id is stale or was never issued. The entry may be removed
// concurrently unless the caller owns id; callers that read guarded fields
// check the generation again under the lock.
func (t *Table) lookup(id ID) (*shard, *entry) {
	si := id.Shard()
	if si >= len(t.shards) {
		return nil, nil
	}
	s := &t.shards[si]
	d := *s.dir.Load()
	slot := id.slot()
	if slot>>chunkBits >= len(d) {
		return s, nil
	}
	e := &d[slot>>chunkBits][slot&(chunkLen-1)]
	if g := id.gen(); g&1 == 0 || e.gen.Load() != g {
		return s, nil
	}
	return s, e
}

// info copies e; the caller holds the shard's lock.
func (t *Table) info(id ID, e *entry) FlowInfo {
	c := e.copy()
	return c.info(id, *t.listeners.Load(), *t.backends.Load())
}

// entryCopy is an entry's fields, copied under its shard's lock.
type entryCopy struct {
	listener     ListenerID
	state        State
	flags        uint8
	backend      BackendID
	port         uint16
	client       [16]byte
	start, since int64
	last         int64
	in, out      uint64
}

func (e *entry) copy() entryCopy {
	return entryCopy{
		listener: e.listener, state: e.state, flags: e.flags, backend: e.backend,
		port: e.port, client: e.client, start: e.start, since: e.since,
		last: e.last.Load(), in: e.in.Load(), out: e.out.Load(),
	}
}

// info names c's listener and backend from ls and bs.
func (c *entryCopy) info(id ID, ls []*listener, bs []*backend) FlowInfo {
	fi := FlowInfo{
		ID:         id,
		Listener:   ls[c.listener].name,
		Client:     c.clientAddr(),
		State:      c.state,
		Start:      time.Unix(0, c.start),
		StateSince: time.Unix(0, c.since),
		LastActive: time.Unix(0, max(c.last, c.start)),
		BytesIn:    c.in,
		BytesOut:   c.out,
	}
	if c.backend != 0 {
		fi.Pool, fi.Backend = bs[c.backend].pool, bs[c.backend].name
	}
	return fi
}

func (c *entryCopy) clientAddr() netip.AddrPort {
	switch {
	case c.flags&flagClient == 0:
		return netip.AddrPort{}
	case c.flags&flagV4 != 0:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(c.client[12:])), c.port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(c.client), c.port)
}

// entry returns the entry of a slot below s.used.
func (s *shard) entry(slot int) *entry {
	return &(*s.dir.Load())[slot>>chunkBits][slot&(chunkLen-1)]
}

// alloc takes a free slot, growing the shard by a chunk when none is left;
// the caller holds the lock.
func (s *shard) alloc() (int, bool) {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return int(slot), true
	}
	if s.used == MaxFlowsPerShard {
		return 0, false
	}
	if d := *s.dir.Load(); s.used == len(d)*chunkLen {
		// Readers hold the old header and never index past its length, so
		// writing the spare capacity of the same array races with none of
		// them; the new header is published after the write.
		d = append(d, new(chunk))
		s.dir.Store(&d)
	}
	s.used++
	return s.used - 1, true
}

// deadline returns when e expires under cfg, in unix ns, and why;
// math.MaxInt64 when no timeout applies. The caller holds the shard's lock.
func deadline(e *entry, cfg *ListenerConfig) (int64, Reason) {
	at, why := int64(math.MaxInt64), ReasonIdle
	to := &cfg.Timeouts
	switch {
	case e.state == StateHandshake && to.Handshake > 0:
		at, why = addSat(e.since, to.Handshake), ReasonHandshake
	case e.state == StateConnecting && to.Connect > 0:
		at, why = addSat(e.since, to.Connect), ReasonConnect
	case to.Idle > 0:
		at = addSat(max(e.last.Load(), e.since), to.Idle)
	}
	if to.Lifetime > 0 {
		if end := addSat(e.start, to.Lifetime); end < at {
			at, why = end, ReasonLifetime
		}
	}
	return at, why
}

// addSat is t + d, saturating at math.MaxInt64.
func addSat(t int64, d time.Duration) int64 {
	if s := t + int64(d); s >= t {
		return s
	}
	return math.MaxInt64
}
