package lb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// TestPoolRace runs picks and releases (some failing, so that backends are
// ejected and come back through slow start) against membership, weight and
// drain changes, for every policy. Run with -race. Every lease is released
// at the end, so every count must be back to 0.
func TestPoolRace(t *testing.T) {
	type variant struct {
		policy  string
		bounded bool
	}
	var variants []variant
	for _, p := range []string{PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyRandom, PolicyLeastConn, PolicyP2C, PolicyRingHash, PolicyMaglev} {
		variants = append(variants, variant{p, false})
	}
	variants = append(variants, variant{PolicyRingHash, true}, variant{PolicyMaglev, true})
	for _, v := range variants {
		t.Run(fmt.Sprintf("%s/bounded=%v", v.policy, v.bounded), func(t *testing.T) {
			weight := func(i int) int { return 1 + i%3 }
			if v.policy == PolicyRoundRobin {
				weight = nil
			}
			c := poolConfig(v.policy, backendConfigs(8, weight))
			c.BoundedLoad.Enabled = v.bounded
			c.Outlier = OutlierConfig{ConsecutiveFailures: 3, BaseEjection: 2 * time.Millisecond, MaxEjection: 10 * time.Millisecond, MaxEjectedPercent: 50}
			if v.policy != PolicyRoundRobin {
				c.SlowStart = 20 * time.Millisecond
			}
			if v.policy == PolicyP2C {
				c.P2C.Latency = true
			}
			p := newTestPool(t, c)

			const pickers, picks = 4, 3000
			var seen sync.Map // every *Backend ever leased
			var wg sync.WaitGroup
			errs := make(chan error, pickers)
			for g := range pickers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(g), 1))
					var held []Lease
					for i := range picks {
						l, err := p.Pick(Key{Hash: r.Uint64() | 1, Attempt: uint32(i % 2)})
						if err != nil {
							if !errors.Is(err, ErrNoBackend) {
								errs <- err
								return
							}
							continue
						}
						seen.Store(l.Backend, true)
						held = append(held, l)
						for len(held) > r.IntN(8) {
							o := Success
							if r.IntN(10) == 0 {
								o = Failure
							}
							held[0].Release(o)
							held = held[1:]
						}
					}
					for _, l := range held {
						l.Release(Canceled)
					}
				}()
			}
			done := make(chan struct{})
			var mut sync.WaitGroup
			mut.Add(2)
			go func() { // membership and weights
				defer mut.Done()
				base := backendConfigs(10, weight)
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					bs := append([]BackendConfig(nil), base[i%3:8+i%3]...)
					if v.policy != PolicyRoundRobin {
						bs[0].Weight = 1 + i%5
					}
					if err := p.SetBackends(bs); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() { // drains, and readers of the state
				defer mut.Done()
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					for _, b := range p.Backends() {
						_, _, _ = b.State(), b.InFlight(), b.Latency()
					}
					_ = p.SetDraining(fmt.Sprintf("b%d", 2+i%4), i%2 == 0)
				}
			}()
			wg.Wait()
			close(done)
			mut.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			seen.Range(func(k, _ any) bool {
				if b := k.(*Backend); b.InFlight() != 0 {
					t.Errorf("backend %s: %d in flight after every release; want 0", b.Name, b.InFlight())
				}
				return true
			})
			if n := p.total.Load(); n != 0 {
				t.Errorf("pool total %d after every release; want 0", n)
			}
		})
	}
}

func TestDraining(t *testing.T) {
	log, lines := newLogRecorder()
	set := metrics.NewSet()
	p := newTestPool(t, poolConfig(PolicyWeightedRoundRobin, backendConfigs(3, nil)), WithLogger(log), WithMetrics(set))
	held, _ := p.Pick(Key{})
	if held.Name != "b0" {
		t.Fatalf("first pick %s; want b0", held.Name)
	}
	if err := p.SetDraining("b0", true); err != nil {
		t.Fatal(err)
	}
	waitLog(t, lines, time.Second, "backend draining", "backend=b0", "reason=drain started")
	for range 100 {
		l, _ := p.Pick(Key{})
		if l.Name == "b0" {
			t.Fatal("a draining backend got a new pick")
		}
		l.Release(Success)
	}
	b0 := held.Backend
	if b0.State() != Draining || b0.InFlight() != 1 {
		t.Errorf("b0: %s with %d in flight; want draining with 1", b0.State(), b0.InFlight())
	}
	held.Release(Success)
	if b0.InFlight() != 0 {
		t.Errorf("b0: %d in flight after release; want 0", b0.InFlight())
	}
	if got := set.GetOrCreateCounter(`portico_lb_backend_state_changes_total{pool="test",backend="b0",state="draining"}`).Get(); got != 1 {
		t.Errorf("draining transitions counted %d; want 1", got)
	}
	if got := set.GetOrCreateGauge(`portico_lb_backend_up{pool="test",backend="b0"}`, nil).Get(); got != 0 {
		t.Errorf("portico_lb_backend_up for b0 %v; want 0", got)
	}

	p.SetDraining("b1", true)
	p.SetDraining("b2", true)
	_, err := p.Pick(Key{})
	if want := `pool "test": all 3 backends draining: lb: no backend available`; err == nil || err.Error() != want || !errors.Is(err, ErrNoBackend) {
		t.Errorf("got %v; want %q wrapping ErrNoBackend", err, want)
	}
	if err := p.SetDraining("b9", true); !errors.Is(err, ErrUnknownBackend) {
		t.Errorf("draining an unknown backend: got %v; want ErrUnknownBackend", err)
	}
	p.SetDraining("b1", false)
	waitLog(t, lines, time.Second, "backend up", "backend=b1", "reason=drain ended")
	if l, err := p.Pick(Key{}); err != nil || l.Name != "b1" {
		t.Errorf("after b1's drain ended: got %v, %v; want b1", l.Backend, err)
	}
}

// ejectAll fails every backend of p once; with consecutive_failures = 1 and
// max_ejected_percent = 100 that ejects them all.
func ejectAll(t *testing.T, p *Pool) {
	t.Helper()
	for range len(p.Backends()) {
		l, err := p.Pick(Key{})
		if err != nil {
			t.Fatal(err)
		}
		l.Release(Failure)
	}
}

func TestAllDownFailsFast(t *testing.T) {
	c := poolConfig(PolicyRoundRobin, backendConfigs(2, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 1, BaseEjection: time.Hour, MaxEjectedPercent: 100}
	p := newTestPool(t, c)
	ejectAll(t, p)
	_, err := p.Pick(Key{})
	if want := `pool "test": all 2 backends down: lb: no backend available`; err == nil || err.Error() != want || !errors.Is(err, ErrNoBackend) {
		t.Errorf("got %v; want %q wrapping ErrNoBackend", err, want)
	}
}

func TestPanicMode(t *testing.T) {
	log, lines := newLogRecorder()
	c := poolConfig(PolicyRoundRobin, backendConfigs(2, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 1, BaseEjection: time.Hour, MaxEjectedPercent: 100}
	c.PanicMode = true
	p := newTestPool(t, c, WithLogger(log))
	ejectAll(t, p)
	waitLog(t, lines, time.Second, "pool in panic mode", "pool=test")
	for range 4 {
		l, err := p.Pick(Key{})
		if err != nil {
			t.Fatalf("panic mode: got %v; want a pick", err)
		}
		l.Release(Canceled)
	}
}

func TestSlowStartRamp(t *testing.T) {
	c := poolConfig(PolicyWeightedRoundRobin, backendConfigs(1, func(int) int { return 3 }))
	c.SlowStart = 10 * time.Second
	p := newTestPool(t, c)
	b := p.Backends()[0]
	t0 := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tc := range []struct {
		at   time.Duration
		want uint32
	}{
		{0, 30}, {999 * time.Millisecond, 30}, {time.Second, 60}, {5 * time.Second, 180},
		{9999 * time.Millisecond, 300}, {10 * time.Second, 300},
	} {
		b.h.rampFrom = t0
		if got := p.effectiveWeightLocked(b, t0.Add(tc.at)); got != tc.want {
			t.Errorf("weight 3, %s into a 10s slow start: got %d; want %d", tc.at, got, tc.want)
		}
	}
	if !b.h.rampFrom.IsZero() {
		t.Error("the ramp did not end at the end of the window")
	}
}

// TestSlowStartAfterEjection: a backend back from ejection starts at 10% of
// its weight and the pool's timer steps it up to 100%.
func TestSlowStartAfterEjection(t *testing.T) {
	log, lines := newLogRecorder()
	c := poolConfig(PolicyWeightedRoundRobin, backendConfigs(2, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 1, BaseEjection: 10 * time.Millisecond, MaxEjectedPercent: 50}
	c.SlowStart = 200 * time.Millisecond
	p := newTestPool(t, c, WithLogger(log))
	l, _ := p.Pick(Key{})
	l.Release(Failure)
	waitLog(t, lines, time.Second, "backend up", "backend="+l.Name, "reason=ejection ended")
	weightOf := func() uint32 {
		for _, w := range p.snap.Load().set {
			if w.Backend == l.Backend {
				return w.Weight
			}
		}
		return 0
	}
	first := weightOf()
	if first > 30 {
		t.Errorf("weight just after the ejection ended %d; want about 10 (10%% of 100)", first)
	}
	prev, steps := first, 0
	deadline := time.Now().Add(3 * time.Second)
	for prev < 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the ramp is defined by time
		if w := weightOf(); w != prev {
			if w < prev {
				t.Fatalf("weight went down from %d to %d during slow start", prev, w)
			}
			prev, steps = w, steps+1
		}
	}
	if prev != 100 || steps < 3 {
		t.Errorf("weight %d after %d steps; want 100 after several steps", prev, steps)
	}
}

func TestSetBackends(t *testing.T) {
	p := newTestPool(t, poolConfig(PolicyWeightedRoundRobin, backendConfigs(3, nil)))
	old := p.Backends()
	held, _ := p.Pick(Key{}) // b0, about to be removed
	bs := backendConfigs(4, nil)[1:]
	bs[2].Weight = 2
	if err := p.SetBackends(bs); err != nil {
		t.Fatal(err)
	}
	now := p.Backends()
	if len(now) != 3 || now[0] != old[1] || now[1] != old[2] || now[2].Name != "b3" || now[2].Index != 3 || now[2].Weight() != 2 {
		t.Errorf("after SetBackends: %v; want b1 and b2 kept (indices 1, 2) and b3 new at index 3 with weight 2", names(now))
	}
	held.Release(Success)
	if held.InFlight() != 0 {
		t.Errorf("removed backend: %d in flight after release; want 0", held.InFlight())
	}
	for range 20 {
		l, _ := p.Pick(Key{})
		if l.Backend == old[0] {
			t.Fatal("a removed backend got a pick")
		}
		l.Release(Success)
	}
	err := p.SetBackends([]BackendConfig{{Address: "bad"}})
	want := `cannot set backends of pool "test": pools.test.backends[0].address: want host:port, got "bad"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v; want %q", err, want)
	}
}

func names(bs []*Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, fmt.Sprintf("%s#%d", b.Name, b.Index))
	}
	return out
}

// TestWithPrevious: a reload keeps an ejected backend out.
func TestWithPrevious(t *testing.T) {
	c := poolConfig(PolicyRoundRobin, backendConfigs(2, nil))
	c.Outlier = OutlierConfig{ConsecutiveFailures: 1, BaseEjection: time.Hour, MaxEjectedPercent: 50}
	a := newTestPool(t, c)
	l, _ := a.Pick(Key{})
	l.Release(Failure)
	b := newTestPool(t, c, WithPrevious(a))
	a.Close()
	if got := b.Backends()[0].State(); got != Down {
		t.Errorf("ejected backend after reload: %s; want down", got)
	}
	if got := b.Backends()[1].State(); got != Up {
		t.Errorf("healthy backend after reload: %s; want up", got)
	}
	// Without passive checks in the new config the ejection does not carry.
	c.Outlier = OutlierConfig{}
	if got := newTestPool(t, c, WithPrevious(b)).Backends()[0].State(); got != Up {
		t.Errorf("reload without passive checks: %s; want up", got)
	}
}

func TestPoolKeylessHashPick(t *testing.T) {
	// Hash 0 (no key in the request) spreads at random instead of sending
	// every keyless request to one backend.
	p := newTestPool(t, poolConfig(PolicyMaglev, backendConfigs(4, nil)))
	seen := map[string]bool{}
	for range 200 {
		l, _ := p.Pick(Key{})
		seen[l.Name] = true
		l.Release(Success)
	}
	if len(seen) != 4 {
		t.Errorf("keyless picks reached %d backends; want 4", len(seen))
	}
}

// TestPickAllocs: Pick plus Release allocates nothing, for every policy
// and option that changes the pick path.
func TestPickAllocs(t *testing.T) {
	tunes := map[string]func(*PoolConfig){
		"plain":   func(*PoolConfig) {},
		"bounded": func(c *PoolConfig) { c.BoundedLoad.Enabled = true },
		"latency": func(c *PoolConfig) { c.P2C.Latency = true },
		"outlier": func(c *PoolConfig) {
			c.Outlier = OutlierConfig{ConsecutiveFailures: 1 << 9, BaseEjection: time.Hour, MaxEjectedPercent: 10}
		},
		"slow_start": func(c *PoolConfig) { c.SlowStart = time.Hour },
	}
	checked := 0
	for _, policy := range []string{PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyRandom, PolicyLeastConn, PolicyP2C, PolicyRingHash, PolicyMaglev} {
		for name, tune := range tunes {
			c := poolConfig(policy, backendConfigs(5, nil))
			tune(&c)
			c.SetDefaults()
			if c.Validate("pools.test") != nil {
				continue // an option of another policy
			}
			checked++
			p := newTestPool(t, c)
			var h uint64
			allocs := testing.AllocsPerRun(1000, func() {
				h++
				l, err := p.Pick(Key{Hash: mix64(h), Attempt: uint32(h % 2)})
				if err != nil {
					t.Fatal(err)
				}
				o := Success
				if h%3 == 0 {
					o = Failure
				}
				l.Release(o)
			})
			if allocs != 0 {
				t.Errorf("%s/%s: %v allocs per Pick and Release; want 0", policy, name, allocs)
			}
		}
	}
	if checked != 23 {
		t.Errorf("checked %d combinations; want 23", checked)
	}
}
