package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Target names. Peers are the proxies portico is compared with.
const (
	TargetDirect  = "direct"
	TargetPortico = "portico"
	TargetHAProxy = "haproxy"
	TargetNGINX   = "nginx"
)

// Peers are the targets portico's goals are measured against.
var Peers = []string{TargetHAProxy, TargetNGINX}

// WorkloadInfo describes a workload in the report.
type WorkloadInfo struct {
	Name, What string
	// Goal is the most portico's cost may be as a multiple of the best
	// peer's; 0 for none.
	Goal float64
}

// Report is everything a report shows.
type Report struct {
	// Command is the exact command that produced the samples.
	Command string
	When    time.Time
	// Machine, Pinning and Versions are lines of context, shown as given.
	Machine, Pinning string
	Versions         []string
	Workloads        []WorkloadInfo
	Samples          []Sample
	// Notes are shown below the table (skipped workloads, say).
	Notes []string
}

// Comparison is portico against the best peer on one workload.
type Comparison struct {
	Workload, Unit      string
	Portico, Best       float64 // median costs
	BestPeer            string
	Ratio, Goal         float64 // Ratio = Portico / Best
	P99Ratio            float64 // portico's median p99 / the best peer's; 0 if unknown
	PorticoP99, BestP99 float64
}

// Met reports whether the comparison meets its goal.
func (c Comparison) Met() bool { return c.Goal > 0 && c.Ratio <= c.Goal }

// Compare returns one Comparison per workload that has portico and at
// least one peer, in the order of r.Workloads (then of first appearance).
func (r Report) Compare() []Comparison {
	sums := Summarize(r.Samples)
	by := map[string]map[string]Summary{}
	var order []string
	for _, s := range sums {
		if by[s.Workload] == nil {
			by[s.Workload] = map[string]Summary{}
			order = append(order, s.Workload)
		}
		by[s.Workload][s.Target] = s
	}
	goals := map[string]float64{}
	var ordered []string
	for _, w := range r.Workloads {
		goals[w.Name] = w.Goal
		if by[w.Name] != nil {
			ordered = append(ordered, w.Name)
		}
	}
	for _, w := range order {
		if _, ok := goals[w]; !ok {
			ordered = append(ordered, w)
		}
	}
	var out []Comparison
	for _, w := range ordered {
		p, ok := by[w][TargetPortico]
		if !ok {
			continue
		}
		c := Comparison{Workload: w, Unit: p.Unit, Portico: p.Cost.Med, Goal: goals[w], PorticoP99: p.P99.Med}
		for _, peer := range Peers {
			s, ok := by[w][peer]
			if !ok || s.Cost.Med <= 0 {
				continue
			}
			if c.BestPeer == "" || s.Cost.Med < c.Best {
				c.Best, c.BestPeer = s.Cost.Med, peer
			}
			if s.P99.Med > 0 && (c.BestP99 == 0 || s.P99.Med < c.BestP99) {
				c.BestP99 = s.P99.Med
			}
		}
		if c.BestPeer == "" {
			continue
		}
		c.Ratio = ratio(c.Portico, c.Best)
		c.P99Ratio = ratio(c.PorticoP99, c.BestP99)
		out = append(out, c)
	}
	return out
}

// WriteMarkdown writes the report as markdown: the context, the table of
// medians (min-max) and the comparison with the best peer.
func WriteMarkdown(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `%s`", r.Command)
	if !r.When.IsZero() {
		fmt.Fprintf(&b, " (%s)", r.When.UTC().Format("2006-01-02 15:04 UTC"))
	}
	b.WriteString("\n\n")
	for _, line := range []string{r.Machine, r.Pinning} {
		if line != "" {
			b.WriteString(line + "\n\n")
		}
	}
	if len(r.Versions) > 0 {
		b.WriteString("Versions: " + strings.Join(r.Versions, ", ") + ".\n\n")
	}
	sums := Summarize(r.Samples)
	reps := 0
	for _, s := range sums {
		reps = max(reps, s.Reps)
	}
	fmt.Fprintf(&b, "Medians of %d repetition(s), min-max in brackets. Proxy cost is the proxy's CPU time (utime+stime from /proc) per request, per Redis command or per GiB moved; for conns-10k, its resident memory per idle connection. Core is the share of its core the proxy used.\n\n", reps)
	b.WriteString("| workload | target | throughput | proxy cost | core | p50 | p99 | errors |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, s := range sortSummaries(sums, r.Workloads) {
		cost, core := "–", "–"
		if s.Target != TargetDirect {
			cost = statCell(s.Cost, func(v float64) string { return fmtCost(s.Unit, v) })
			if s.Unit != UnitConn {
				core = fmt.Sprintf("%.0f%%", 100*s.Core.Med)
			}
		}
		rate := "–"
		if s.Unit != UnitConn {
			rate = statCell(s.Rate, func(v float64) string { return fmtRate(s.Unit, v) })
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d |\n", s.Workload, s.Target, rate, cost, core,
			latCell(s.P50), latCell(s.P99), s.Errors)
	}
	if cmp := r.Compare(); len(cmp) > 0 {
		b.WriteString("\nPortico against the best peer (lower is better; goal: at most the multiple shown):\n\n")
		b.WriteString("| workload | portico | best peer | portico ÷ best | goal | p99 portico ÷ best |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|\n")
		for _, c := range cmp {
			goal := "–"
			if c.Goal > 0 {
				mark := "missed"
				if c.Met() {
					mark = "met"
				}
				goal = fmt.Sprintf("≤ %.1f× (%s)", c.Goal, mark)
			}
			p99 := "–"
			if c.P99Ratio > 0 {
				p99 = fmt.Sprintf("%.2f×", c.P99Ratio)
			}
			fmt.Fprintf(&b, "| %s | %s | %s (%s) | %.2f× | %s | %s |\n", c.Workload, fmtCost(c.Unit, c.Portico),
				fmtCost(c.Unit, c.Best), c.BestPeer, c.Ratio, goal, p99)
		}
	}
	if len(r.Workloads) > 0 {
		b.WriteString("\nWorkloads:\n\n")
		for _, wl := range r.Workloads {
			fmt.Fprintf(&b, "- `%s`: %s\n", wl.Name, wl.What)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sortSummaries orders summaries by the workload order given (workloads
// not in it follow, in order of appearance), then by target: direct,
// portico, then the peers.
func sortSummaries(sums []Summary, wls []WorkloadInfo) []Summary {
	rank := map[string]int{}
	for i, w := range wls {
		rank[w.Name] = i + 1
	}
	for _, s := range sums { // workloads not listed: in order of appearance
		if _, ok := rank[s.Workload]; !ok {
			rank[s.Workload] = len(rank) + 1
		}
	}
	trank := map[string]int{TargetDirect: 0, TargetPortico: 1, TargetHAProxy: 2, TargetNGINX: 3}
	out := append([]Summary(nil), sums...)
	wr := func(s Summary) int { return rank[s.Workload] }
	tr := func(s Summary) int {
		if r, ok := trank[s.Target]; ok {
			return r
		}
		return len(trank)
	}
	// A stable insertion sort: a few dozen rows.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0; j-- {
			a, b := out[j-1], out[j]
			if wr(a) < wr(b) || (wr(a) == wr(b) && tr(a) <= tr(b)) {
				break
			}
			out[j-1], out[j] = b, a
		}
	}
	return out
}

func statCell(s Stat, f func(float64) string) string {
	if s.Min == s.Max {
		return f(s.Med)
	}
	short := func(v float64) string {
		return strings.TrimSuffix(strings.Fields(f(v))[0], "/s") // the number alone
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Med), short(s.Min), short(s.Max))
}

func latCell(s Stat) string {
	if s.Med == 0 {
		return "–"
	}
	return fmtMicros(s.Med)
}

// fmtRate formats units per second.
func fmtRate(unit string, v float64) string {
	switch unit {
	case UnitGiB:
		return fmt.Sprintf("%.2f GiB/s", v)
	case UnitConn:
		return "–"
	}
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM/s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk/s", v/1e3)
	}
	return fmt.Sprintf("%.0f/s", v)
}

// fmtCost formats a Sample.Cost.
func fmtCost(unit string, v float64) string {
	switch unit {
	case UnitGiB:
		return fmt.Sprintf("%.2f s/GiB", v)
	case UnitConn:
		return fmt.Sprintf("%.1f KiB/conn", v/1024)
	}
	us := v * 1e6
	if us >= 100 {
		return fmt.Sprintf("%.0f µs/%s", us, unit)
	}
	return fmt.Sprintf("%.*f µs/%s", decimals(us), us, unit)
}

// fmtMicros formats a latency given in microseconds.
func fmtMicros(us float64) string {
	if us >= 1000 {
		ms := us / 1000
		return fmt.Sprintf("%.*f ms", decimals(ms), ms)
	}
	return fmt.Sprintf("%.0f µs", us)
}

// decimals gives three significant digits for values below 1000.
func decimals(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	}
	return 2
}
