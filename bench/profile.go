package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profile records portico's CPU profile with perf during a run of the
// named workload and writes the hottest symbols to profile-NAME.txt.
func (h *Harness) profile(ctx context.Context, name string) {
	var w *workload
	for i := range workloads {
		if workloads[i].info.Name == name {
			w = &workloads[i]
		}
	}
	if w == nil {
		h.note("no profile of %s: no such workload", name)
		return
	}
	var t *target
	for _, x := range h.targets {
		if x.name == TargetPortico && x.p != nil {
			t = x
		}
	}
	if t == nil {
		h.note("no profile of %s: portico is not among the targets", name)
		return
	}
	if _, err := exec.LookPath("perf"); err != nil {
		h.note("no profile of %s: perf is not installed", name)
		return
	}
	data := filepath.Join(h.cfg.WorkDir, "perf.data")
	secs := strconv.Itoa(h.cfg.Seconds)
	rec := exec.CommandContext(ctx, "perf", "record", "-F", "999", "-g", "-o", data,
		"-p", strconv.Itoa(t.p.cmd.Process.Pid), "--", "sleep", secs)
	var recErr bytes.Buffer
	rec.Stderr = &recErr
	if err := rec.Start(); err != nil {
		h.note("no profile: %v", err)
		return
	}
	if w.needsL4 && t.noL4 != "" {
		h.note("no profile of %s: %s", name, t.noL4)
		_ = rec.Process.Kill()
		_ = rec.Wait()
		return
	}
	if _, err := w.run(ctx, h, t, h.cfg.Seconds); err != nil {
		h.logf("profile run: %v", err)
	}
	if err := rec.Wait(); err != nil {
		h.note("no profile: perf record: %v: %s", err, tail(recErr.Bytes(), 300))
		return
	}
	var out bytes.Buffer
	for _, args := range [][]string{
		{"report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.7", "-g", "none"},
		{"report", "-i", data, "--stdio", "--children", "--sort", "symbol", "--percent-limit", "3", "-g", "none"},
		{"report", "-i", data, "--stdio", "--no-children", "--sort", "dso", "-g", "none"},
	} {
		b, err := exec.CommandContext(ctx, "perf", args...).Output()
		fmt.Fprintf(&out, "### perf %v\n\n", args)
		if err != nil {
			fmt.Fprintf(&out, "failed: %v\n\n", err)
			continue
		}
		out.Write(b)
		out.WriteString("\n")
	}
	file := filepath.Join(h.cfg.OutDir, "profile-"+name+".txt")
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		h.note("no profile: %v", err)
		return
	}
	_ = os.Remove(data)
	h.logf("portico's %s profile in %s", name, file)
}

// syscalls counts the system calls and context switches of every proxy
// (perf stat) during an extra run of the named workload, per unit served,
// and returns the lines of a markdown table.
func (h *Harness) syscalls(ctx context.Context, name string) []string {
	var w *workload
	for i := range workloads {
		if workloads[i].info.Name == name {
			w = &workloads[i]
		}
	}
	if w == nil {
		return nil
	}
	var rows []string
	for _, t := range h.targets {
		if t.p == nil || (w.needsL4 && t.noL4 != "") || (w.needsCache && t.noCache != "") {
			continue
		}
		var pids []string
		for _, p := range t.pids() {
			pids = append(pids, strconv.Itoa(p))
		}
		stat := exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-e", "context-switches",
			"-p", strings.Join(pids, ","))
		var errb bytes.Buffer
		stat.Stderr = &errb
		if err := stat.Start(); err != nil {
			h.note("no syscall counts: %v", err)
			return nil
		}
		time.Sleep(200 * time.Millisecond) // let perf attach
		s, err := w.run(ctx, h, t, h.cfg.Seconds)
		_ = stat.Process.Signal(os.Interrupt)
		_ = stat.Wait()
		if err != nil || s.Ops == 0 {
			h.logf("syscall count run of %s on %s: %v", name, t.name, err)
			continue
		}
		counts := parsePerfStat(errb.Bytes())
		sc, cs := counts["raw_syscalls:sys_enter"], counts["context-switches"]
		if sc == 0 {
			h.note("no syscall counts for %s on %s: %s", name, t.name, tail(errb.Bytes(), 200))
			continue
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %.2f | %.2f |", name, t.name, sc/s.Ops, cs/s.Ops))
	}
	return rows
}

// parsePerfStat reads `perf stat -x ,` output: value,unit,event,...
func parsePerfStat(out []byte) map[string]float64 {
	m := map[string]float64{}
	for line := range bytes.Lines(out) {
		f := strings.Split(strings.TrimSpace(string(line)), ",")
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			m[f[2]] = v
		}
	}
	return m
}
