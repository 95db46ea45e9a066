package lb

import (
	"math"
	"testing"
)

// TestBoundedHotKey holds 100 leases of one key over 4 equal backends: with
// c = 1.25 the key's first choice takes ceil(1.25 × T / 4) and the rest
// spill over, where without the bound all 100 would land on one backend.
func TestBoundedHotKey(t *testing.T) {
	for _, policy := range []string{PolicyMaglev, PolicyRingHash} {
		c := poolConfig(policy, backendConfigs(4, nil))
		c.BoundedLoad.Enabled = true
		p := newTestPool(t, c)
		key := Key{Hash: HashString("203.0.113.7")}
		first, _ := p.Pick(key)
		leases := []Lease{first}
		for range 99 {
			l, err := p.Pick(key)
			if err != nil {
				t.Fatal(err)
			}
			leases = append(leases, l)
		}
		if got, want := first.InFlight(), int64(math.Ceil(1.25*100/4)); got != want {
			t.Errorf("%s: the key's backend has %d in flight; want %d (the bound)", policy, got, want)
		}
		for _, b := range p.Backends() {
			if b.InFlight() > 32 {
				t.Errorf("%s: backend %s has %d in flight; want at most 32", policy, b.Name, b.InFlight())
			}
		}
		for _, l := range leases {
			l.Release(Success)
		}
		// Idle again: the key goes back to its own backend.
		l, _ := p.Pick(key)
		if l.Backend != first.Backend {
			t.Errorf("%s: idle pick went to %s; want the key's backend %s", policy, l.Name, first.Name)
		}
		l.Release(Success)
	}
}
