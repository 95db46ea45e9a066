package lb

import "math"

// p2cPolicy is the power of two choices (Mitzenmacher, "The Power of Two
// Choices in Randomized Load Balancing", 2001): draw two distinct backends at
// random in proportion to their weights and take the one with the lower
// cost, in-flight / weight (the first drawn on a tie). With latency on, the
// cost is (in-flight + 1) / weight times the backend's peak-EWMA latency
// of successful work (as Finagle and
// Linkerd do), so that a slow backend gets less; a failure counts as a
// latency of p2c.decay. A backend not yet measured costs least, so it is
// tried. Two reads per pick whatever the pool's size.
type p2cPolicy struct {
	rand    func() uint64
	latency bool
}

func (p p2cPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	return &p2c{set: set, alias: newAliasTable(set), rand: p.rand, latency: p.latency}, nil
}

type p2c struct {
	set     []Weighted
	alias   *aliasTable // nil: equal weights
	rand    func() uint64
	latency bool
}

var _ Picker = (*p2c)(nil)

func (p *p2c) Pick(Key) (*Backend, error) {
	n := len(p.set)
	if n == 1 {
		return p.set[0].Backend, nil
	}
	r := p.rand() | 1
	i := p.alias.sample(r, n)
	r = xorshift(r)
	var j int
	if p.alias == nil {
		j = (i + 1 + below(r, n-1)) % n // uniform over the others
	} else if j = p.alias.sample(r, n); j == i {
		r = xorshift(r)
		if j = p.alias.sample(r, n); j == i {
			j = (i + 1 + below(r, n-1)) % n
		}
	}
	// a was drawn first, in proportion to weight: it wins ties.
	a, b := &p.set[i], &p.set[j]
	la, lb := a.Backend.hot.inflight.Load(), b.Backend.hot.inflight.Load()
	if p.latency {
		ca := float64(la+1) * latencyOf(a.Backend) / float64(a.Weight)
		cb := float64(lb+1) * latencyOf(b.Backend) / float64(b.Weight)
		if cb < ca {
			return b.Backend, nil
		}
		return a.Backend, nil
	}
	if lb*int64(a.Weight) < la*int64(b.Weight) {
		return b.Backend, nil
	}
	return a.Backend, nil
}

func latencyOf(b *Backend) float64 { return math.Float64frombits(b.hot.latency.Load()) }
