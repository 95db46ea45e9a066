package conntrack

// wheel is a shard's hashed timer wheel (Varghese and Lauck, "Hashed and
// Hierarchical Timing Wheels", 1987, scheme 6): bucket k mod n lists the
// entries due at tick k, k + n, k + 2n... as a doubly linked list threaded
// through the entries by slot index, so filing and unfiling cost O(1) and
// no allocation. An entry is never filed more than one turn ahead, so a
// sweep sees every entry at least once per turn and picks up changed
// timeouts within a turn.
type wheel struct {
	buckets []int32 // first slot of each bucket's list; -1 when empty
	cur     int64   // the last tick swept
}

func (w *wheel) init(n int, now int64) {
	w.buckets = make([]int32, n)
	for i := range w.buckets {
		w.buckets[i] = -1
	}
	w.cur = now
}

// clamp turns a due tick into one the wheel can file: after the last tick
// swept and at most one turn ahead.
func (w *wheel) clamp(due int64) int64 {
	return min(max(due, w.cur+1), w.cur+int64(len(w.buckets)))
}

// file links e (at slot) into the bucket of tick due; the caller holds the
// lock and e is not filed.
func (s *shard) file(slot int, e *entry, due int64) {
	b := &s.wheel.buckets[due&int64(len(s.wheel.buckets)-1)]
	e.due, e.prev, e.next = due, -1, *b
	if *b >= 0 {
		s.entry(int(*b)).prev = int32(slot)
	}
	*b = int32(slot)
	e.flags |= flagFiled
}

// unfile unlinks e (at slot) from its bucket if it is filed; the caller
// holds the lock.
func (s *shard) unfile(slot int, e *entry) {
	if e.flags&flagFiled == 0 {
		return
	}
	if e.prev >= 0 {
		s.entry(int(e.prev)).next = e.next
	} else {
		s.wheel.buckets[e.due&int64(len(s.wheel.buckets)-1)] = e.next
	}
	if e.next >= 0 {
		s.entry(int(e.next)).prev = e.prev
	}
	e.flags &^= flagFiled
}

// Expired is a flow that AppendExpired found past a deadline.
type Expired struct {
	ID     ID
	Reason Reason
}

// AppendExpired sweeps shard (taken modulo Shards) at the current time: it
// appends the flows whose deadline has passed to dst and returns the
// extended slice, oldest tick first. Each expired flow is returned once and
// stays in the table, counted, until its owner closes it and calls Remove.
// It also refreshes the shard's clock (see Touch) and adds the bytes
// counted since the last sweep to the byte metrics.
//
// The shard's owner calls it once per tick (WithTick); a late call catches
// up. It costs the entries filed under the ticks passed since the last
// call, and allocates only to grow dst. Safe for concurrent use, but an
// expired flow is returned to one caller only: let the owner sweep.
func (t *Table) AppendExpired(dst []Expired, shard int) []Expired {
	si := int(uint(shard) % uint(len(t.shards)))
	s := &t.shards[si]
	now := t.now()
	s.now.Store(now)
	target := now / t.tick

	s.mu.Lock()
	// Loaded under the lock: every flow in the shard was inserted with a
	// listener this slice holds.
	ls := *t.listeners.Load()
	w := &s.wheel
	n := int64(len(w.buckets))
	from := max(w.cur+1, target-n+1) // a full turn at most: that is every bucket
	d := *s.dir.Load()
	for k := from; k <= target; k++ {
		slot := w.buckets[k&(n-1)]
		for slot >= 0 {
			e := &d[slot>>chunkBits][slot&(chunkLen-1)]
			next := e.next
			if e.due <= target {
				l := ls[e.listener]
				at, why := deadline(e, l.cfg.Load())
				s.unfile(int(slot), e)
				if at <= now {
					e.flags |= flagExpired
					dst = append(dst, Expired{makeID(e.gen.Load(), si, int(slot)), why})
					l.expired[why].Inc()
				} else {
					// Filed after target, so this sweep passes it by even
					// when it lands in a bucket still to come.
					s.file(int(slot), e, min(max(at/t.tick, target+1), target+n))
				}
			}
			slot = next
		}
	}
	if target > w.cur {
		w.cur = target
	}
	in, out := s.bytesIn.Swap(0), s.bytesOut.Swap(0)
	s.mu.Unlock()

	if in != 0 {
		t.bytesIn.AddInt64(int64(in))
	}
	if out != 0 {
		t.bytesOut.AddInt64(int64(out))
	}
	return dst
}
