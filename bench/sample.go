package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Units of Sample.Ops.
const (
	UnitReq  = "req"  // HTTP requests
	UnitOp   = "op"   // Redis commands
	UnitGiB  = "GiB"  // GiB moved, both ways together
	UnitConn = "conn" // idle connections held
)

// Sample is one measurement: one workload against one target, once.
type Sample struct {
	Workload string `json:"workload"`
	Target   string `json:"target"`
	Rep      int    `json:"rep"`
	// Unit is what Ops counts: UnitReq, UnitOp, UnitGiB or UnitConn.
	Unit string `json:"unit"`
	// Ops is the number of units served in Seconds of wall time.
	Ops     float64 `json:"ops"`
	Seconds float64 `json:"seconds"`
	// CPU is the proxy's CPU time (user plus system) in seconds over the
	// run; 0 for the direct target, which has no proxy.
	CPU float64 `json:"cpu_seconds"`
	// P50 and P99 are latencies in microseconds; 0 when not measured.
	P50 float64 `json:"p50_us,omitempty"`
	P99 float64 `json:"p99_us,omitempty"`
	// Errors counts failed requests, operations or connections.
	Errors int64 `json:"errors"`
	// RSSPerConn is the growth of the proxy's resident memory per idle
	// connection held, in bytes (conns-10k only).
	RSSPerConn float64 `json:"rss_per_conn,omitempty"`
}

// Rate returns units per second.
func (s Sample) Rate() float64 { return ratio(s.Ops, s.Seconds) }

// CPUPerOp returns proxy CPU seconds per unit; 0 without a proxy.
func (s Sample) CPUPerOp() float64 { return ratio(s.CPU, s.Ops) }

// Core returns the share of one core the proxy used, 0 to 1 or so.
func (s Sample) Core() float64 { return ratio(s.CPU, s.Seconds) }

// Cost returns the headline number of the sample: proxy CPU seconds per
// unit, or for connections held, resident bytes per connection.
func (s Sample) Cost() float64 {
	if s.Unit == UnitConn {
		return s.RSSPerConn
	}
	return s.CPUPerOp()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Stat is the median, minimum and maximum of repeated measurements.
type Stat struct{ Med, Min, Max float64 }

// StatOf returns the Stat of xs (the mean of the middle two for an even
// count); zero for none.
func StatOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Med: med, Min: s[0], Max: s[n-1]}
}

// Summary gathers the samples of one workload and target.
type Summary struct {
	Workload, Target, Unit string
	Reps                   int
	Rate, Cost, Core       Stat
	P50, P99               Stat
	Errors                 int64
}

// Summarize groups samples by workload and target, in the order each pair
// first appears.
func Summarize(samples []Sample) []Summary {
	type key struct{ w, t string }
	var order []key
	groups := map[key][]Sample{}
	for _, s := range samples {
		k := key{s.Workload, s.Target}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		g := groups[k]
		sum := Summary{Workload: k.w, Target: k.t, Unit: g[0].Unit, Reps: len(g)}
		var rate, cost, core, p50, p99 []float64
		for _, s := range g {
			rate = append(rate, s.Rate())
			cost = append(cost, s.Cost())
			core = append(core, s.Core())
			if s.P50 > 0 {
				p50 = append(p50, s.P50)
			}
			if s.P99 > 0 {
				p99 = append(p99, s.P99)
			}
			sum.Errors += s.Errors
		}
		sum.Rate, sum.Cost, sum.Core = StatOf(rate), StatOf(cost), StatOf(core)
		sum.P50, sum.P99 = StatOf(p50), StatOf(p99)
		out = append(out, sum)
	}
	return out
}

// WriteSamples writes samples as JSON lines.
func WriteSamples(w io.Writer, samples []Sample) error {
	enc := json.NewEncoder(w)
	for _, s := range samples {
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("cannot write sample: %w", err)
		}
	}
	return nil
}

// ReadSamples reads JSON lines written by WriteSamples.
func ReadSamples(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("cannot read sample on line %d: %w", line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read samples: %w", err)
	}
	return out, nil
}
