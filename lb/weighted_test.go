package lb

import (
	"math"
	"testing"
)

// TestWeightedNginxSequence checks the example given with NGINX's change
// to smooth weighted round robin: weights a=5, b=1, c=1 give "a a b a c a
// a", not "c b a a a a a".
func TestWeightedNginxSequence(t *testing.T) {
	bs := backendConfigs(3, func(i int) int { return []int{5, 1, 1}[i] })
	bs[0].Name, bs[1].Name, bs[2].Name = "a", "b", "c"
	p := newTestPool(t, poolConfig(PolicyWeightedRoundRobin, bs))
	var got []string
	for range 14 {
		l, _ := p.Pick(Key{})
		got = append(got, l.Name)
		l.Release(Success)
	}
	want := []string{"a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"}
	if !equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestWeightedRetrySkipsTheRun(t *testing.T) {
	bs := backendConfigs(2, func(i int) int { return []int{9, 1}[i] })
	p := newTestPool(t, poolConfig(PolicyWeightedRoundRobin, bs))
	first, _ := p.Pick(Key{})
	first.Release(Failure)
	retry, _ := p.Pick(Key{Attempt: 1})
	retry.Release(Success)
	if first.Name != "b0" || retry.Name != "b1" {
		t.Errorf("first try %s, retry %s; want b0 then b1", first.Name, retry.Name)
	}
}

// TestWeightedLongPeriod covers the apportioned table: 1000 backends of
// weights 1 to 1000 have a period of 500500 and a build of 5×10^8 steps, so
// the period is cut to about 2^25/1000 slots. Each backend must keep a
// slot, and each share must stay within 2/period of its weight's: one slot
// of rounding, and up to one more for the one-slot minimum's push.
func TestWeightedLongPeriod(t *testing.T) {
	bs := backendConfigs(1000, func(i int) int { return i + 1 })
	set := weightedSet(bs)
	pk := mustBuild(t, weightedPolicy{}, set).(*weightedRR)
	period := float64(len(pk.seq))
	if period > wrrMaxWork/1000+1000 {
		t.Fatalf("period %v; want at most %d", period, wrrMaxWork/1000+1000)
	}
	counts := make([]float64, len(bs))
	for _, i := range pk.seq {
		counts[i]++
	}
	worst := 0.0
	for i, c := range counts {
		if c == 0 {
			t.Fatalf("backend %d has no slot", i)
		}
		want := float64(i+1) / 500500
		worst = max(worst, math.Abs(c/period-want))
	}
	t.Logf("period %v; worst share error %.5f%%", period, 100*worst)
	if worst > 2/period {
		t.Errorf("worst share error %v; want <= %v", worst, 2/period)
	}
}

func TestApportion(t *testing.T) {
	got := apportion([]uint64{1, 1, 1}, 10)
	var sum uint64
	for _, c := range got {
		sum += c
	}
	if sum != 10 || got[0] != 4 || got[1] != 3 || got[2] != 3 {
		t.Errorf("apportion(1,1,1 into 10) = %v; want [4 3 3]", got)
	}
}
