package lb

import "sync/atomic"

// roundRobin hands out backends in turn, ignoring weights.
type roundRobin struct {
	backends []*Backend
	next     atomic.Uint64
}

var _ Picker = (*roundRobin)(nil)

func newRoundRobin(backends []*Backend) *roundRobin {
	return &roundRobin{backends: backends}
}

// Pick returns the next backend in turn; Attempt shifts the choice so that a
// retry of the same request does not get the same backend again.
func (r *roundRobin) Pick(key Key) (*Backend, error) {
	n := uint64(len(r.backends))
	if n == 0 {
		return nil, ErrNoBackend
	}
	i := r.next.Add(1) - 1 + uint64(key.Attempt)
	return r.backends[i%n], nil
}
