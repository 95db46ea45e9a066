package lb

import "sync/atomic"

// roundRobinPolicy hands out backends in turn, ignoring weights (Validate
// refuses unequal ones).
type roundRobinPolicy struct{}

func (roundRobinPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	return &roundRobin{backends: backendsOf(set)}, nil
}

type roundRobin struct {
	backends []*Backend
	_        [64]byte // next is written by every pick; keep it off backends' line
	next     atomic.Uint64
}

var _ Picker = (*roundRobin)(nil)

// Pick returns the next backend in turn. It ignores the key: a retry is
// itself the next pick, so it gets the next backend.
func (r *roundRobin) Pick(Key) (*Backend, error) {
	i := r.next.Add(1) - 1
	return r.backends[i%uint64(len(r.backends))], nil
}
