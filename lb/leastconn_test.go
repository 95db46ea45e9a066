package lb

import (
	"math"
	"testing"
)

func TestLeastConnPicksLeastLoaded(t *testing.T) {
	bs := backendConfigs(3, func(i int) int { return []int{1, 3, 1}[i] })
	p := newTestPool(t, poolConfig(PolicyLeastConn, bs))
	members := p.Backends()
	members[0].hot.inflight.Store(1) // 1 per unit of weight
	members[1].hot.inflight.Store(2) // 2/3
	members[2].hot.inflight.Store(4) // 4
	l, _ := p.Pick(Key{})
	if l.Name != "b1" {
		t.Errorf("got %s; want b1 (2 in flight at weight 3)", l.Name)
	}
	l.Release(Success)
}

// TestLeastConnTiesByWeight: an idle pool is shared in proportion to weight.
func TestLeastConnTiesByWeight(t *testing.T) {
	ws := []int{1, 1, 2}
	p := newTestPool(t, poolConfig(PolicyLeastConn, backendConfigs(3, func(i int) int { return ws[i] })))
	const picks = 40_000
	counts := drive(p, picks, 0, seeded(3))
	for i, w := range ws {
		want := float64(w) / 4
		if got := float64(counts[i]) / picks; math.Abs(got-want) > 0.01 {
			t.Errorf("backend %d: share %.4f; want %.2f ± 0.01", i, got, want)
		}
	}
}

func TestLeastConnRetryIsRandom(t *testing.T) {
	p := newTestPool(t, poolConfig(PolicyLeastConn, backendConfigs(4, nil)))
	p.Backends()[0].hot.inflight.Store(-1000) // b0 would win every first try
	seen := map[string]bool{}
	for range 200 {
		l, _ := p.Pick(Key{Attempt: 1})
		seen[l.Name] = true
		l.Release(Success)
	}
	p.Backends()[0].hot.inflight.Store(0)
	if len(seen) != 4 {
		t.Errorf("retries went to %v; want all 4 backends", seen)
	}
}
