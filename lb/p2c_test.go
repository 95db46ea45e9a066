package lb

import (
	"testing"
	"time"
)

func TestP2CPicksLessLoadedOfTwo(t *testing.T) {
	p := newTestPool(t, poolConfig(PolicyP2C, backendConfigs(2, nil)))
	p.Backends()[0].hot.inflight.Store(5)
	for range 100 {
		l, _ := p.Pick(Key{})
		if l.Name != "b1" {
			t.Fatalf("got %s; want b1 (b0 has 5 in flight)", l.Name)
		}
		l.Release(Canceled)
	}
}

func TestP2CLatency(t *testing.T) {
	c := poolConfig(PolicyP2C, backendConfigs(2, nil))
	c.P2C.Latency = true
	p := newTestPool(t, c)
	slow, fast := p.Backends()[0], p.Backends()[1]
	slow.observeLatency(int64(100*time.Millisecond), nanotime(), time.Second)
	fast.observeLatency(int64(time.Millisecond), nanotime(), time.Second)
	fast.hot.inflight.Store(20) // 21 × 1ms still costs less than 1 × 100ms
	for range 100 {
		l, _ := p.Pick(Key{})
		if l.Backend != fast {
			t.Fatalf("got %s; want b1, 100 times faster", l.Name)
		}
		l.Release(Canceled)
	}
	fast.hot.inflight.Store(0)
}

// TestP2CFailureCountsAsSlow pins that a backend failing fast does not
// look fast: a Failure counts as a latency of p2c.decay.
func TestP2CFailureCountsAsSlow(t *testing.T) {
	c := poolConfig(PolicyP2C, backendConfigs(2, nil))
	c.P2C = P2CConfig{Latency: true, Decay: 3 * time.Second}
	p := newTestPool(t, c)
	l, _ := p.Pick(Key{})
	l.Release(Failure)
	if got := l.Latency(); got != 3*time.Second {
		t.Errorf("latency after a failure %s; want 3s", got)
	}
}

func TestPeakEWMA(t *testing.T) {
	b := &Backend{}
	b.observeLatency(int64(10*time.Millisecond), nanotime(), time.Hour)
	b.observeLatency(int64(50*time.Millisecond), nanotime(), time.Hour)
	if got := b.Latency(); got != 50*time.Millisecond {
		t.Errorf("after a higher sample: %s; want 50ms (peak taken at once)", got)
	}
	b.observeLatency(int64(time.Millisecond), nanotime(), time.Hour)
	if got := b.Latency(); got < 49*time.Millisecond {
		t.Errorf("after a lower sample, decay 1h: %s; want still about 50ms", got)
	}
}
