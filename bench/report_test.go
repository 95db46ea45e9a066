package bench

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func testReport() Report {
	mk := func(w, t string, rep int, ops, cpu, p99 float64) Sample {
		return Sample{Workload: w, Target: t, Rep: rep, Unit: UnitReq, Ops: ops, Seconds: 10, CPU: cpu, P50: p99 / 4, P99: p99}
	}
	var s []Sample
	for rep := range 3 {
		f := float64(rep) // spread reps a little
		s = append(s,
			mk("l7-small", TargetDirect, rep, 500000, 0, 900),
			mk("l7-small", TargetPortico, rep, 300000, 4.5+f*0.3, 2000), // 15-18 µs
			mk("l7-small", TargetHAProxy, rep, 300000, 6.0, 2100),       // 20 µs
			mk("l7-small", TargetNGINX, rep, 300000, 5.7, 1900+f),       // 19 µs
		)
	}
	s = append(s, Sample{Workload: "conns-10k", Target: TargetPortico, Unit: UnitConn, Ops: 10000, RSSPerConn: 4096},
		Sample{Workload: "conns-10k", Target: TargetNGINX, Unit: UnitConn, Ops: 10000, RSSPerConn: 2048},
		Sample{Workload: "l4-bulk", Target: TargetPortico, Unit: UnitGiB, Ops: 8, Seconds: 4, CPU: 6})
	return Report{
		Command: "scripts/bench.sh --seconds 10 --reps 3",
		When:    time.Date(2026, 11, 27, 5, 30, 0, 0, time.UTC),
		Pinning: "proxy on CPU 1; the rest on CPU 0",
		Workloads: []WorkloadInfo{
			{Name: "l7-small", What: "64-byte GETs", Goal: 0.8},
			{Name: "conns-10k", What: "idle connections", Goal: 1},
		},
		Samples: s,
		Notes:   []string{"l7-cache skipped: no cache"},
	}
}

func TestStatOf(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{3}, Stat{3, 3, 3}},
		{[]float64{5, 1, 3}, Stat{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, Stat{2.5, 1, 4}},
	} {
		if got := StatOf(c.in); got != c.want {
			t.Errorf("StatOf(%v): got %+v; want %+v", c.in, got, c.want)
		}
	}
}

func TestCompare(t *testing.T) {
	cmp := testReport().Compare()
	if len(cmp) != 2 {
		t.Fatalf("got %d comparisons; want 2 (l7-small, conns-10k; l4-bulk has no peer): %+v", len(cmp), cmp)
	}
	c := cmp[0]
	if c.Workload != "l7-small" || c.BestPeer != TargetNGINX {
		t.Errorf("got %s best %s; want l7-small best nginx", c.Workload, c.BestPeer)
	}
	if want := 16e-6 / 19e-6; c.Ratio < want-1e-9 || c.Ratio > want+1e-9 {
		t.Errorf("got ratio %g; want %g", c.Ratio, want)
	}
	if c.Met() {
		t.Errorf("ratio %.3f met goal %.1f; want missed", c.Ratio, c.Goal)
	}
	if c := cmp[1]; c.Workload != "conns-10k" || c.Ratio != 2 || c.Met() {
		t.Errorf("got %+v; want conns-10k at 2x, missed", c)
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, testReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Command: `scripts/bench.sh --seconds 10 --reps 3` (2026-11-27 05:30 UTC)",
		"| workload | target | throughput | proxy cost | core | p50 | p99 | errors |",
		"| l7-small | direct | 50.0k/s | – | – | 225 µs | 900 µs | 0 |",
		"| l7-small | portico | 30.0k/s | 16.0 µs/req (15.0–17.0) | 48% | 500 µs | 2.00 ms | 0 |",
		"| l7-small | nginx | 30.0k/s | 19.0 µs/req | 57% | 475 µs | 1.90 ms | 0 |",
		"| conns-10k | portico | – | 4.0 KiB/conn | – | – | – | 0 |",
		"| l7-small | 16.0 µs/req | 19.0 µs/req (nginx) | 0.84× | ≤ 0.8× (missed) | 1.05× |",
		"| l4-bulk | portico | 2.00 GiB/s | 0.75 s/GiB | 150% |",
		"- l7-cache skipped: no cache",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// Rows are ordered by workload list, then direct, portico, peers.
	if i, j := strings.Index(out, "| l7-small | direct"), strings.Index(out, "| l7-small | haproxy"); i > j {
		t.Errorf("direct row after haproxy row:\n%s", out)
	}
}

func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSVG(&b, testReport()); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one bar label per value.
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
			}
			break
		}
	}
	out := b.String()
	for _, want := range []string{"<svg ", "l7-small", "16.0 µs/req", "19.0 µs/req", "2.00 ms", "4.0 KiB/conn", "0.75 s/GiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
