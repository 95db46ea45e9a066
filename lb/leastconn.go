package lb

// leastConnPolicy picks the backend with the fewest leases in flight per
// unit of weight. Ties are broken at random in proportion to weight, so an
// idle pool (every count 0) is shared by weight too, and a busy one settles
// with counts in proportion to weights. Pick reads every backend's count:
// O(n).
//
// A retry (Attempt > 0) goes to a backend chosen at random instead: the
// least-loaded backend is likely the one that just failed.
type leastConnPolicy struct{ rand func() uint64 }

func (p leastConnPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	return &leastConn{set: set, rand: p.rand}, nil
}

type leastConn struct {
	set  []Weighted
	rand func() uint64
}

var _ Picker = (*leastConn)(nil)

func (l *leastConn) Pick(key Key) (*Backend, error) {
	r := l.rand()
	set := l.set
	if key.Attempt > 0 {
		return set[below(r, len(set))].Backend, nil
	}
	// Pass one: the least load per unit of weight, and the total weight of
	// the backends tied at it.
	best := 0
	bestLoad, bestW := set[0].Backend.hot.inflight.Load(), int64(set[0].Weight)
	tieW := bestW
	for i := 1; i < len(set); i++ {
		load, w := set[i].Backend.hot.inflight.Load(), int64(set[i].Weight)
		// load/w against bestLoad/bestW, without division.
		switch a, b := load*bestW, bestLoad*w; {
		case a < b:
			best, bestLoad, bestW, tieW = i, load, w, w
		case a == b:
			tieW += w
		}
	}
	if tieW == bestW {
		return set[best].Backend, nil
	}
	// Pass two: one draw in proportion to weight among the ties. Counts may
	// have moved since pass one; if no tie is left, keep pass one's best.
	x := int64(below(r, int(tieW)))
	for i := best; i < len(set); i++ {
		load, w := set[i].Backend.hot.inflight.Load(), int64(set[i].Weight)
		if load*bestW == bestLoad*w {
			if x -= w; x < 0 {
				return set[i].Backend, nil
			}
		}
	}
	return set[best].Backend, nil
}
