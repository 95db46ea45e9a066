package lb

import (
	"strings"
	"testing"
)

// TestMaglevTableEven: with equal weights every backend claims one slot per
// turn, so slot counts differ by at most one (the paper's guarantee).
func TestMaglevTableEven(t *testing.T) {
	for _, n := range []int{3, 10, 1000} {
		pk := mustBuild(t, maglevPolicy{tableSize: 65537, rand: seeded(1)}, weightedSet(backendConfigs(n, nil))).(*maglev)
		shares := tableShares(pk, n)
		lo, hi := shares[0], shares[0]
		for _, s := range shares {
			lo, hi = min(lo, s), max(hi, s)
		}
		if hi-lo > 1 {
			t.Errorf("backends=%d: slots per backend from %v to %v; want a spread of at most 1", n, lo, hi)
		}
	}
}

// TestMaglevTableWeighted: slot counts follow weights to within a turn.
func TestMaglevTableWeighted(t *testing.T) {
	ws := []int{1, 2, 3, 10}
	pk := mustBuild(t, maglevPolicy{tableSize: 65537, rand: seeded(1)}, weightedSet(backendConfigs(4, func(i int) int { return ws[i] }))).(*maglev)
	shares := tableShares(pk, len(ws))
	for i, w := range ws {
		want := 65537 * float64(w) / 16
		if d := shares[i] - want; d > 10 || d < -10 {
			t.Errorf("backend %d (weight %d): %v slots; want %.0f ± 10", i, w, shares[i], want)
		}
	}
}

func TestMaglevRetryTakesAnotherBackend(t *testing.T) {
	pk := mustBuild(t, maglevPolicy{tableSize: 251, rand: seeded(1)}, weightedSet(backendConfigs(3, nil)))
	r := seeded(5)
	for range 1000 {
		h := r() | 1
		first, _ := pk.Pick(Key{Hash: h})
		retry, _ := pk.Pick(Key{Hash: h, Attempt: 1})
		if retry == first {
			t.Fatalf("key %x: retry got %s again", h, first.Name)
		}
	}
}

func TestMaglevTooManyBackends(t *testing.T) {
	_, err := maglevPolicy{tableSize: 7}.Build(weightedSet(backendConfigs(8, nil)))
	if err == nil || !strings.Contains(err.Error(), "8 backends do not fit a table of 7") {
		t.Errorf("got %v; want an error about 8 backends in a table of 7", err)
	}
}
