package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
)

// Keeping the Go runtime's sysmon thread out of its deep sleep.
//
// sysmon (runtime/proc.go) sleeps 20 µs between rounds, doubling up to
// 10 ms while it finds nothing to do. But when every P is idle (portico
// waits in epoll for the next request: with GOMAXPROCS=1 that is between
// any two requests of a moderate load) it goes into a deep sleep on a
// futex, and the first system call after that wakes it (entersyscall:
// notewakeup), and resets its sleep to 20 µs. At 5,000 requests/s that is
// once or twice per request: a futex wake by the thread running
// goroutines, sysmon's futex wait and nanosleeps, sysmon preempting that
// thread on its one CPU, and now and then sysmon taking the P from a
// system call it caught mid-way, which hands the P to a second thread. On
// l7-rate (5,000 requests/s) that was 2.8 context switches and 10.2 system
// calls per request (NGINX: 0.6 and 6.1) and 74 µs of CPU (NGINX: 39);
// without the deep sleep, 1.1 and 8.5 (NGINX: 1.2 and 6.6), and 54 µs
// (NGINX: 50). Under saturation the P is never idle and nothing changes.
//
// The runtime skips the deep sleep only while GODEBUG's schedtrace is set,
// read once at start, and a //go:debug directive cannot set it (the go
// command accepts only the settings it knows). So main runs portico again,
// in the same process (exec), with schedtrace at its largest period,
// 2^31-1 ms (24.8 days). sysmon's sleep then doubles up to 10 ms while
// there is nothing to do (100 wakeups a second when idle); it prints one
// line of scheduler state to stderr every 24.8 days of the host's uptime
// (so, on a host up longer than that, one line at start); and a fatal
// error adds the scheduler's state to its report. A GODEBUG that already
// sets schedtrace is left as it is: GODEBUG=schedtrace=0 gives the
// runtime's default behaviour back.
const sysmonSetting = "schedtrace=2147483647"

// sysmonEnv returns env with sysmonSetting added to GODEBUG, and true, or
// env and false when GODEBUG already sets schedtrace. The first GODEBUG=
// entry is the one the runtime reads.
func sysmonEnv(env []string) ([]string, bool) {
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(v, ",") {
			if strings.HasPrefix(f, "schedtrace=") {
				return env, false
			}
		}
		out := slices.Clone(env)
		if v == "" {
			out[i] = "GODEBUG=" + sysmonSetting
		} else {
			out[i] = kv + "," + sysmonSetting
		}
		return out, true
	}
	return append(slices.Clone(env), "GODEBUG="+sysmonSetting), true
}

// keepSysmonAwake executes portico again with sysmonSetting in GODEBUG
// unless it is there already; it returns only when it does not (or when
// the exec fails, and portico then runs with the runtime's default).
func keepSysmonAwake() {
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return
	}
	// /proc/self/exe is this very file, even if it was replaced on disk
	// since; elsewhere, the path it was started from.
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
	if exe, err := os.Executable(); err == nil {
		_ = syscall.Exec(exe, os.Args, env)
	}
}
