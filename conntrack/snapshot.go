package conntrack

import (
	"slices"
	"time"
)

// Snapshot is a copy of the table for the admin API.
type Snapshot struct {
	// Time is when the snapshot began.
	Time time.Time `json:"time"`
	// Active is the number of flows seen, which may exceed len(Flows).
	Active int `json:"active"`
	// Flows are the oldest flows seen, at most the limit asked for, by
	// Start then ID.
	Flows []FlowInfo `json:"flows"`
	// Listeners are in the order they were added.
	Listeners []ListenerStats `json:"listeners"`
	// Backends are in the order they were first named.
	Backends []BackendStats `json:"backends"`
}

// ListenerStats are a listener's counters.
type ListenerStats struct {
	Name     string `json:"name"`
	Active   int    `json:"active"`
	Accepted uint64 `json:"accepted"`
	// Refused counts the flows Insert refused, for every reason.
	Refused uint64 `json:"refused"`
	// Expired counts the flows AppendExpired returned, for every reason.
	Expired uint64 `json:"expired"`
}

// BackendStats are a backend's counters.
type BackendStats struct {
	Pool          string `json:"pool"`
	Name          string `json:"name"`
	Active        int    `json:"active"`
	ConnectErrors uint64 `json:"connect_errors"`
}

// snapRec is an entry copied under its shard's lock; it holds no pointers.
type snapRec struct {
	id ID
	e  entryCopy
}

// older orders records by start time, then ID.
func (r *snapRec) older(o *snapRec) bool {
	return r.e.start < o.e.start || r.e.start == o.e.start && r.id < o.id
}

// Snapshot copies the table: the counts, and the limit oldest flows (none
// when limit <= 0). Each flow is copied whole under its shard's lock, one
// shard at a time, so every entry is consistent but the snapshot is not an
// instant of the whole table: flows inserted or removed meanwhile in shards
// not yet copied may or may not appear. It holds a shard's lock while it
// scans the shard, and keeps at most limit flows in memory. Safe for
// concurrent use.
func (t *Table) Snapshot(limit int) Snapshot {
	snap := Snapshot{Time: time.Unix(0, t.now())}
	// keep is a max-heap by age: keep[0] is the newest flow kept, the
	// first to go when an older one turns up.
	keep := make([]snapRec, 0, max(0, min(limit, t.Len()+64)))
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		d := *s.dir.Load()
		for slot := range s.used {
			e := &d[slot>>chunkBits][slot&(chunkLen-1)]
			g := e.gen.Load()
			if g&1 == 0 {
				continue
			}
			snap.Active++
			if limit <= 0 {
				continue
			}
			r := snapRec{id: makeID(g, si, slot), e: e.copy()}
			switch {
			case len(keep) < limit:
				keep = append(keep, r)
				heapUp(keep, len(keep)-1)
			case r.older(&keep[0]):
				keep[0] = r
				heapDown(keep, 0)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(keep, func(a, b snapRec) int {
		switch {
		case a.older(&b):
			return -1
		case b.older(&a):
			return 1
		}
		return 0
	})

	ls, bs := *t.listeners.Load(), *t.backends.Load()
	snap.Flows = make([]FlowInfo, len(keep))
	for i := range keep {
		snap.Flows[i] = keep[i].e.info(keep[i].id, ls, bs)
	}

	snap.Listeners = make([]ListenerStats, len(ls))
	for i, l := range ls {
		st := ListenerStats{Name: l.name, Active: int(l.active.Load()), Accepted: l.accepted.Get()}
		for _, c := range l.refused {
			st.Refused += c.Get()
		}
		for _, c := range l.expired {
			st.Expired += c.Get()
		}
		snap.Listeners[i] = st
	}
	snap.Backends = make([]BackendStats, 0, len(bs)-1)
	for _, b := range bs[1:] {
		snap.Backends = append(snap.Backends, BackendStats{
			Pool: b.pool, Name: b.name, Active: int(b.active.Load()), ConnectErrors: b.connectErrs.Get(),
		})
	}
	return snap
}

// heapUp and heapDown keep h a max-heap by age (the newest at the root).
func heapUp(h []snapRec, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[p].older(&h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []snapRec, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c].older(&h[c+1]) {
			c++
		}
		if !h[i].older(&h[c]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
