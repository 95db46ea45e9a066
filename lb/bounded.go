package lb

import (
	"math"
	"sync/atomic"
)

// Bounded-load consistent hashing (Mirrokni, Thorup and Zadimoghaddam,
// "Consistent Hashing with Bounded Loads", SODA 2018), as a wrapper around
// either hashing policy. With c the factor and T the pool's leases in
// flight counting this pick, a backend of effective weight w (of W in all)
// may take a new lease only while its own count is below ceil(c × T × w/W).
// The key's first choice is tried first, then the policy's further probes
// (ring_hash walks clockwise, as the paper does; maglev rehashes), then every
// backend in turn from a point the key picks. Since the bounds sum to at
// least c × T > T - 1, some backend is always under its bound.
//
// The check and the increment are one compare-and-swap on the backend's
// in-flight count, so no backend exceeds its bound even under concurrent
// picks: the picker reserves its pick itself, and Pool.Pick does not count it
// again.

// hashTable is what bounded load needs of a hashing policy's picker.
type hashTable interface {
	Picker
	// probe returns the i-th candidate for hash h; probe(h, 0) is Pick's
	// first choice for a key with hash h.
	probe(h uint64, i uint32) *Backend
}

type boundedPolicy struct {
	inner  Policy // ring_hash or maglev: its pickers are hashTables
	factor float64
	total  *atomic.Int64
	rand   func() uint64
}

// boundedProbes is how many of the policy's probes are tried before the
// scan of every backend.
const boundedProbes = 32

func (p boundedPolicy) Build(set []Weighted) (Picker, error) {
	in, err := p.inner.Build(set)
	if err != nil {
		return nil, err
	}
	t, ok := in.(hashTable)
	if !ok {
		panic("BUG: bounded load around a policy that does not hash")
	}
	var total float64
	maxIndex := 0
	for _, w := range set {
		total += float64(w.Weight)
		maxIndex = max(maxIndex, w.Backend.Index)
	}
	share := make([]float64, maxIndex+1)
	for _, w := range set {
		share[w.Backend.Index] = p.factor * float64(w.Weight) / total
	}
	return &bounded{table: t, backends: backendsOf(set), share: share, total: p.total, rand: p.rand}, nil
}

type bounded struct {
	table    hashTable
	backends []*Backend
	share    []float64 // by Backend.Index: c × w / W
	total    *atomic.Int64
	rand     func() uint64
}

var _ Picker = (*bounded)(nil)

func (*bounded) reserves() {}

// Pick returns a backend with the lease already counted on it.
func (b *bounded) Pick(key Key) (*Backend, error) {
	b.total.Add(1)
	h := key.Hash
	if h == 0 {
		h = b.rand()
	}
	for i := range uint32(boundedProbes) {
		if be := b.table.probe(h, key.Attempt+i); b.tryAcquire(be) {
			return be, nil
		}
	}
	n := len(b.backends)
	start := below(mix64(h), n)
	// Each pass fails only if other picks or releases changed the counts
	// meanwhile, so the loop is lock-free; the cap only guards against a
	// bug.
	for pass := 0; pass < 1000; pass++ {
		for j := range n {
			if be := b.backends[(start+j)%n]; b.tryAcquire(be) {
				return be, nil
			}
		}
	}
	panic("BUG: bounded load found every backend at its bound")
}

// tryAcquire counts a lease on be if be is below its bound.
func (b *bounded) tryAcquire(be *Backend) bool {
	limit := int64(math.Ceil(b.share[be.Index] * float64(b.total.Load())))
	for {
		cur := be.hot.inflight.Load()
		if cur >= limit {
			return false
		}
		if be.hot.inflight.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}
