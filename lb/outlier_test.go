package lb

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// failUntilEjected releases Failure on name's leases (Success on the
// others') until name is down.
func failUntilEjected(t *testing.T, p *Pool, name string) {
	t.Helper()
	for range 100 {
		l, err := p.Pick(Key{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Name == name {
			l.Release(Failure)
			if l.State() == Down {
				return
			}
		} else {
			l.Release(Success)
		}
	}
	t.Fatalf("backend %s not ejected after 100 picks", name)
}

// TestOutlierBackoff: consecutive failures eject a backend; ejections that
// follow one another double, up to max_ejection; once the backend has been
// back for base_ejection the back-off starts over.
func TestOutlierBackoff(t *testing.T) {
	log, lines := newLogRecorder()
	set := metrics.NewSet()
	c := poolConfig(PolicyWeightedRoundRobin, backendConfigs(4, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 3, BaseEjection: 20 * time.Millisecond, MaxEjection: 50 * time.Millisecond, MaxEjectedPercent: 50}
	p := newTestPool(t, c, WithLogger(log), WithMetrics(set))
	for i, want := range []string{"20ms", "40ms", "50ms"} {
		failUntilEjected(t, p, "b0")
		waitLog(t, lines, time.Second, "backend down", "backend=b0", "reason=ejected for "+want+" after 3 consecutive failures")
		waitLog(t, lines, time.Second, "backend up", "backend=b0", "reason=ejection ended")
		if i == 2 {
			break
		}
	}
	if got := set.GetOrCreateCounter(`portico_lb_ejections_total{pool="test",backend="b0"}`).Get(); got != 3 {
		t.Errorf("ejections counted %d; want 3", got)
	}
	// Back for longer than base_ejection: the next ejection is base again.
	p.mu.Lock()
	p.Backends()[0].h.returned = time.Now().Add(-time.Second)
	p.mu.Unlock()
	failUntilEjected(t, p, "b0")
	waitLog(t, lines, time.Second, "backend down", "backend=b0", "reason=ejected for 20ms after 3 consecutive failures (ejection 1 in a row)")
}

func TestOutlierSuccessResetsCount(t *testing.T) {
	c := poolConfig(PolicyRoundRobin, backendConfigs(1, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 3, BaseEjection: time.Hour, MaxEjectedPercent: 100}
	p := newTestPool(t, c)
	for _, o := range []Outcome{Failure, Failure, Success, Failure, Failure, Canceled} {
		l, err := p.Pick(Key{})
		if err != nil {
			t.Fatal(err)
		}
		l.Release(o)
	}
	if s := p.Backends()[0].State(); s != Up {
		t.Errorf("after F F S F F C: %s; want up (never 3 failures in a row)", s)
	}
}

// TestOutlierMaxEjectedPercent: with 4 backends and 50%, a third failing
// backend stays in, and the skip is counted.
func TestOutlierMaxEjectedPercent(t *testing.T) {
	set := metrics.NewSet()
	c := poolConfig(PolicyWeightedRoundRobin, backendConfigs(4, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 2, BaseEjection: time.Hour, MaxEjectedPercent: 50}
	p := newTestPool(t, c, WithMetrics(set))
	failUntilEjected(t, p, "b0")
	failUntilEjected(t, p, "b1")
	for range 8 {
		l, _ := p.Pick(Key{})
		if l.Name == "b2" {
			l.Release(Failure)
		} else {
			l.Release(Success)
		}
	}
	if s := p.Backends()[2].State(); s != Up {
		t.Errorf("third failing backend: %s; want up (2 of 4 already ejected)", s)
	}
	if got := set.GetOrCreateCounter(`portico_lb_ejections_skipped_total{pool="test",backend="b2"}`).Get(); got == 0 {
		t.Error("skipped ejection not counted")
	}
}

func TestEjectionTime(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 5: time.Minute, 100: time.Minute} {
		if got := ejectionTime(10*time.Second, time.Minute, n); got != want {
			t.Errorf("ejection %d: %s; want %s", n, got, want)
		}
	}
}
