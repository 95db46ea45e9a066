package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte("1234 (a) b (c)) S 77 1 1 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0 0"))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 77 || st.utime != 250 || st.stime != 31 {
		t.Errorf("got %+v; want ppid 77, utime 250, stime 31", st)
	}
	if _, err := parseStat([]byte("1 (x) S 1")); err == nil {
		t.Error("got no error for a short stat line")
	}
}

func TestParseRSS(t *testing.T) {
	if got, want := parseRSS([]byte("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    2048 kB\n")), int64(2048<<10); got != want {
		t.Errorf("got %d; want %d", got, want)
	}
}

func TestProcSelf(t *testing.T) {
	self := os.Getpid()
	// Burn CPU until a few ticks show; on a busy machine that takes longer
	// than the CPU time itself, hence the generous bound.
	before := ProcCPU([]int{self})
	deadline := time.Now().Add(10 * time.Second)
	for ProcCPU([]int{self})-before < 30*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time grew by %s in 10s of busy looping; want 30ms", ProcCPU([]int{self})-before)
		}
		for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
		}
	}
	if rss := ProcRSS([]int{self}); rss < 1<<20 {
		t.Errorf("got RSS %d; want at least 1 MiB", rss)
	}
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start sleep:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	tree, err := ProcTree(self)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range tree {
		found = found || p == cmd.Process.Pid
	}
	if !found || tree[0] != self {
		t.Errorf("got tree %v; want %d first and child %d in it", tree, self, cmd.Process.Pid)
	}
}
