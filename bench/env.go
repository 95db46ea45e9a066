package bench

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// machine describes the CPU and kernel.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	n := 0
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		n = cpuCount(strings.TrimSpace(string(b)))
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), Linux %s, loopback only.", n, model, kernel)
}

// cpuCount counts the CPUs of a list such as "0-3,5".
func cpuCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		var a, b int
		if k, _ := fmt.Sscanf(part, "%d-%d", &a, &b); k == 2 {
			n += b - a + 1
		} else if k == 1 {
			n++
		}
	}
	return n
}

// versions returns one "name version" string per program.
func versions(portico string) []string {
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return ""
		}
		return firstLine(out)
	}
	var out []string
	add := func(label, v string, re string) {
		m := regexp.MustCompile(re).FindStringSubmatch(v)
		switch {
		case len(m) > 1:
			out = append(out, label+" "+m[1])
		case len(m) == 1:
			out = append(out, label+" "+m[0])
		}
	}
	add("portico", run(portico, "-version"), `^portico (\S+)`)
	add("HAProxy", run("haproxy", "-v"), `\d+\.\d+\.\d+\S*`)
	add("NGINX", run("nginx", "-v"), `\d+\.\d+\.\d+`)
	add("wrk", run("wrk", "-v"), `\d+\.\d+\.\d+`)
	add("Redis", run("redis-server", "--version"), `v=\S+`)
	add("Go", run("go", "version"), `go\d+\.\d+(?:\.\d+)?`)
	return out
}
