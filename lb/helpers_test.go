package lb

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// seeded returns a deterministic source of randomness that is safe for
// concurrent use (SplitMix64 over an atomic counter).
func seeded(seed uint64) func() uint64 {
	var n atomic.Uint64
	n.Store(seed * 0x632be59bd9b4e019)
	return func() uint64 { return mix64(n.Add(0x9e3779b97f4a7c15)) }
}

// backendConfigs returns n backends named b0, b1, ... at distinct loopback
// addresses, with weight(i) (nil: 1).
func backendConfigs(n int, weight func(i int) int) []BackendConfig {
	bs := make([]BackendConfig, n)
	for i := range bs {
		bs[i] = BackendConfig{Name: fmt.Sprintf("b%d", i), Address: fmt.Sprintf("127.%d.%d.%d:80", i>>16&255, i>>8&255, i&255), Weight: 1}
		if weight != nil {
			bs[i].Weight = weight(i)
		}
	}
	return bs
}

// poolConfig is a valid config for policy over bs.
func poolConfig(policy string, bs []BackendConfig) PoolConfig {
	c := PoolConfig{Policy: policy, Backends: bs}
	if policy == PolicyRingHash || policy == PolicyMaglev {
		c.HashKey = "client_ip"
	}
	if policy == PolicyMaglev && len(bs) > 65537 {
		c.Maglev.TableSize = 16777213
	}
	return c
}

// newTestPool builds a pool with a seeded source of randomness and closes it
// when the test ends.
func newTestPool(t testing.TB, c PoolConfig, opts ...Option) *Pool {
	t.Helper()
	p, err := NewPool("test", c, append([]Option{WithRand(seeded(1))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// weightedSet builds backends outside any pool, for Policy.Build tests that
// neither lease nor release.
func weightedSet(bs []BackendConfig) []Weighted {
	set := make([]Weighted, len(bs))
	for i, bc := range bs {
		set[i] = Weighted{Backend: &Backend{Name: bc.Name, Address: bc.Address, Index: i}, Weight: uint32(bc.Weight) * WeightScale}
	}
	return set
}

func mustBuild(t testing.TB, p Policy, set []Weighted) Picker {
	t.Helper()
	pk, err := p.Build(set)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// cov is the coefficient of variation of xs: standard deviation over mean.
func cov(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	var sq float64
	for _, x := range xs {
		sq += (x - mean) * (x - mean)
	}
	return math.Sqrt(sq/float64(len(xs))) / mean
}

// logRecorder is a slog handler that sends each record's message and
// attributes, as "msg key=value ...", to a channel: tests wait on it for
// state changes rather than sleeping.
type logRecorder struct {
	ch    chan string
	attrs []slog.Attr
}

func newLogRecorder() (*slog.Logger, <-chan string) {
	ch := make(chan string, 4096)
	return slog.New(&logRecorder{ch: ch}), ch
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{ch: r.ch, attrs: append(append([]slog.Attr(nil), r.attrs...), as...)}
}
func (r *logRecorder) WithGroup(string) slog.Handler { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	select {
	case r.ch <- b.String():
	default:
		panic("logRecorder: channel full")
	}
	return nil
}

// waitLog waits for a log line that starts with prefix and contains every
// one of parts, returning the lines skipped before it.
func waitLog(t *testing.T, ch <-chan string, timeout time.Duration, prefix string, parts ...string) (skipped []string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-ch:
			if strings.HasPrefix(line, prefix) && containsAll(line, parts) {
				return skipped
			}
			skipped = append(skipped, line)
		case <-deadline:
			if len(skipped) > 10 {
				skipped = skipped[len(skipped)-10:]
			}
			t.Fatalf("no log line %q %q within %s; the last lines were %q", prefix, parts, timeout, skipped)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
