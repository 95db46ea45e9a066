package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestCPUCount(t *testing.T) {
	for list, want := range map[string]int{"0": 1, "0-1": 2, "0-3,5": 5, "0,2,4-7": 6} {
		if got := cpuCount(list); got != want {
			t.Errorf("cpuCount(%q): got %d; want %d", list, got, want)
		}
	}
}

func TestPinned(t *testing.T) {
	if got, want := pinned("1", "wrk", "-t1"), []string{"taskset", "-c", "1", "wrk", "-t1"}; !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	if got, want := pinned("", "wrk"), []string{"wrk"}; !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestWorkloadNames(t *testing.T) {
	names := WorkloadNames()
	for _, want := range []string{"l7-small", "l7-64k", "l7-rr3", "l7-cache", "l4-ka", "l4-close", "l4-redis", "l4-bulk", "conns-10k"} {
		if !slices.Contains(names, want) {
			t.Errorf("no workload %q in %q", want, names)
		}
	}
}

// A report rebuilt from samples alone (no workload list) keeps workloads
// in the order they appear instead of grouping rows by target.
func TestReportOrderWithoutWorkloadList(t *testing.T) {
	r := testReport()
	r.Workloads = nil
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i := strings.Index(out, "| l7-small | nginx")
	j := strings.Index(out, "| conns-10k | portico")
	if i < 0 || j < 0 || i > j {
		t.Errorf("rows out of order (l7-small's nginx row at %d, conns-10k's portico row at %d):\n%s", i, j, out)
	}
}
