package lb

import (
	"slices"
	"testing"
)

// TestRingHashIndependentOfOrder: the ring depends on the backends' names,
// not on their order in the config.
func TestRingHashIndependentOfOrder(t *testing.T) {
	set := weightedSet(backendConfigs(20, nil))
	rev := slices.Clone(set)
	slices.Reverse(rev)
	pol := ringHashPolicy{virtualNodes: 160, rand: seeded(1)}
	a, b := mustBuild(t, pol, set), mustBuild(t, pol, rev)
	r := seeded(2)
	for range 10_000 {
		k := Key{Hash: r() | 1}
		ba, _ := a.Pick(k)
		bb, _ := b.Pick(k)
		if ba != bb {
			t.Fatalf("key %x: %s in config order, %s reversed", k.Hash, ba.Name, bb.Name)
		}
	}
}

// TestRingHashWeightOnlyAddsPoints: raising one backend's weight moves keys
// to it and nowhere else.
func TestRingHashWeightOnlyAddsPoints(t *testing.T) {
	set := weightedSet(backendConfigs(10, nil))
	pol := ringHashPolicy{virtualNodes: 160, rand: seeded(1)}
	before := mustBuild(t, pol, set)
	heavier := slices.Clone(set)
	heavier[3].Weight *= 2
	after := mustBuild(t, pol, heavier)
	r := seeded(3)
	moved := 0
	for range 20_000 {
		k := Key{Hash: r() | 1}
		b1, _ := before.Pick(k)
		b2, _ := after.Pick(k)
		if b1 != b2 {
			moved++
			if b2 != set[3].Backend {
				t.Fatalf("key %x moved from %s to %s; want only moves to b3", k.Hash, b1.Name, b2.Name)
			}
		}
	}
	if moved == 0 {
		t.Error("no key moved to the heavier backend")
	}
}

func TestRingHashRetryTakesNextOwner(t *testing.T) {
	pk := mustBuild(t, ringHashPolicy{virtualNodes: 160, rand: seeded(1)}, weightedSet(backendConfigs(5, nil)))
	r := seeded(4)
	for range 1000 {
		h := r() | 1
		first, _ := pk.Pick(Key{Hash: h})
		retry, _ := pk.Pick(Key{Hash: h, Attempt: 1})
		again, _ := pk.Pick(Key{Hash: h})
		if retry == first || again != first {
			t.Fatalf("key %x: first %s, retry %s, first again %s; want retry elsewhere and the first stable", h, first.Name, retry.Name, again.Name)
		}
	}
}
