package lb

import (
	"slices"
	"sync/atomic"
)

// weightedPolicy is NGINX's smooth weighted round robin
// (ngx_http_upstream_get_peer): each pick adds every backend's weight to
// its current weight, takes the backend with the largest current weight
// (the first on a tie) and subtracts the total from it. For weights 5, 1, 1
// the sequence is a a b a c a a: heavy backends are spread out, not sent
// bursts.
//
// The sequence is periodic, with period the sum of the weights divided by
// their gcd. Build runs the algorithm once over a period into a table, and
// Pick reads the table at an atomic counter: no lock, O(1). When the period
// is too long to build (more than 2^20 picks, or 2^25 steps of the O(n)
// algorithm) the weights are first apportioned to a shorter period by
// largest remainder, each backend keeping at least one slot; a share then
// moves by less than 1/period.
type weightedPolicy struct{}

const (
	wrrMaxPeriod = 1 << 20
	wrrMaxWork   = 1 << 25
)

func (weightedPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	counts := make([]uint64, len(set))
	var g uint64
	for i, w := range set {
		counts[i] = uint64(w.Weight)
		g = gcd(g, counts[i])
	}
	var total uint64
	for i := range counts {
		counts[i] /= g
		total += counts[i]
	}
	n := uint64(len(set))
	if total > wrrMaxPeriod || n*total > wrrMaxWork {
		counts = apportion(counts, min(wrrMaxPeriod, max(wrrMaxWork/n, n)))
	}
	return &weightedRR{backends: backendsOf(set), seq: smoothSequence(counts)}, nil
}

type weightedRR struct {
	backends []*Backend
	seq      []uint32 // one period of the smooth sequence: indices into backends
	_        [64]byte
	next     atomic.Uint64
}

var _ Picker = (*weightedRR)(nil)

// Pick returns the next backend of the sequence. A retry (Attempt > 0)
// skips entries equal to the one before its own, which was most likely the
// first try's, so that a heavy backend's run does not take the retry too.
func (w *weightedRR) Pick(key Key) (*Backend, error) {
	n := uint64(len(w.seq))
	i := (w.next.Add(1) - 1) % n
	if key.Attempt > 0 && len(w.backends) > 1 {
		prev := w.seq[(i+n-1)%n]
		for w.seq[i] == prev {
			i = (i + 1) % n
		}
	}
	return w.backends[w.seq[i]], nil
}

// smoothSequence runs NGINX's algorithm for one period of counts.
func smoothSequence(counts []uint64) []uint32 {
	var total int64
	for _, c := range counts {
		total += int64(c)
	}
	cur := make([]int64, len(counts))
	seq := make([]uint32, total)
	for s := range seq {
		best := 0
		for i, c := range counts {
			cur[i] += int64(c)
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq[s] = uint32(best)
	}
	return seq
}

// apportion scales weights to counts that sum to about period (exactly,
// unless the one-slot minimum pushes it over), by largest remainder.
func apportion(weights []uint64, period uint64) []uint64 {
	var total uint64
	for _, w := range weights {
		total += w
	}
	counts := make([]uint64, len(weights))
	var sum uint64
	for i, w := range weights {
		counts[i] = max(1, w*period/total)
		sum += counts[i]
	}
	if sum < period {
		order := make([]int, len(weights))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			ra, rb := weights[a]*period%total, weights[b]*period%total
			switch {
			case ra > rb:
				return -1
			case ra < rb:
				return 1
			}
			return 0
		})
		for _, i := range order[:period-sum] {
			counts[i]++
		}
	}
	return counts
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
