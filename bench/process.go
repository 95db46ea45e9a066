package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a child process in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// pinned prefixes args with taskset when cpus is set.
func pinned(cpus string, args ...string) []string {
	if cpus == "" {
		return args
	}
	return append([]string{"taskset", "-c", cpus}, args...)
}

// startProc starts args (pinned to cpus) in its own process group, its
// output to WorkDir/logs/name.log, and waits until every address in ready
// accepts connections (at most 15 seconds).
func (h *Harness) startProc(name, cpus string, env []string, ready []string, args ...string) (*proc, error) {
	args = pinned(cpus, args...)
	logf, err := os.Create(filepath.Join(h.cfg.WorkDir, "logs", name+".log"))
	if err != nil {
		return nil, fmt.Errorf("cannot create log of %s: %w", name, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Its own process group, so that stop can end a whole tree (NGINX's
	// workers); and a signal if the harness dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range ready {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				return nil, fmt.Errorf("%s exited before it listened on %s (%v); see %s", name, addr, p.err, logf.Name())
			default:
			}
			if time.Now().After(deadline) {
				p.stop()
				return nil, fmt.Errorf("%s does not listen on %s after 15s; see %s", name, addr, logf.Name())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after 5 seconds.
func (p *proc) stop() {
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// alive reports whether the process still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// checkPortsFree fails when something already listens on a port the run
// needs (another bench run, say).
func checkPortsFree(addrs []string) error {
	var busy []string
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
		if err == nil {
			c.Close()
			busy = append(busy, a)
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("cannot run: something already listens on %s", strings.Join(busy, ", "))
	}
	return nil
}
