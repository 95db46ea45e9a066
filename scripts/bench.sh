#!/usr/bin/env bash
# Benchmarks portico side by side with HAProxy and NGINX (and "direct", no
# proxy): installs what it needs when missing, builds portico and the Go
# harness (bench/), pins the proxy under test to a core of its own, runs
# every workload against every target, interleaved, and writes a dated
# results directory (samples.jsonl, report.md, chart.svg) under
# bench/results/. Loopback only; every load is bounded in time.
#
#   scripts/bench.sh [--seconds N] [--reps N] [--only REGEX] [--out DIR]
#                    [--targets LIST] [--rate N] [--bulk-mib N] [--conns N]
#                    [--perf] [--perf-workloads LIST]
#
# --seconds  length of one measurement (default 10)
# --reps     repetitions of each workload on each target (default 3)
# --only     run only the workloads this regexp (Go syntax) matches:
#            l7-small l7-64k l7-rr3 l7-rate l7-cache l4-ka l4-close
#            l4-redis l4-redis-p16 l4-bulk conns-10k
# --out      results directory (default bench/results/YYYY-MM-DD-HHMM)
# --targets  comma-separated subset of direct,portico,haproxy,nginx
# --rate     requests/s of the open-loop l7-rate workload (default 5000)
# --bulk-mib MiB each way on each of l4-bulk's 8 connections (default 256)
# --conns    idle connections of conns-10k (default 10000, or 9500 when
#            the hard limit of open files is below 21000: HAProxy needs two
#            descriptors per connection)
# --perf     also record portico's CPU profile (perf record) during an
#            extra run of l7-small, written to profile-l7-small.txt, and
#            count every proxy's system calls and context switches per
#            request in a further run each (perf stat), in syscalls.md
# --perf-workloads  the same for a comma-separated list of workloads
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/needs.sh
root=$PWD
cmdline="scripts/bench.sh${*:+ $*}"

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

seconds=10 reps=3 only="" out="" targets="" rate=5000 bulk_mib=256 conns="" perf=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --bulk-mib) bulk_mib=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --perf) perf=l7-small; shift ;;
    --perf-workloads) perf=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# Go: the machine's toolchain at /usr/local/go when it is not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "go is not installed; see README.md"

# Debian packages, as "test:package" pairs; a test is a command name or an
# absolute file path. NGINX's stream module is a package of its own.
needs=(
  "wrk:wrk"
  "nginx:nginx-full"
  "/usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream"
  "haproxy:haproxy"
  "redis-server:redis-server"
  "redis-benchmark:redis-tools"
  "taskset:util-linux"
)
if [ -n "$perf" ]; then needs+=("perf:linux-perf"); fi
install_needs "${needs[@]}" || exit 1

# Builds go to a scratch directory that git ignores.
stamp=$(date -u +%Y-%m-%d-%H%M)
[ -n "$out" ] || out="bench/results/$stamp"
work="bench/results/tmp/work-$stamp-$$"
mkdir -p "$work/bin" "$out"
trap 'rm -rf "$work/bin" "$work/nginx"' EXIT  # the logs stay, for a look
log "building portico and the harness"
go build -o "$work/bin/portico" -ldflags "-X main.version=$(git rev-parse --short HEAD 2>/dev/null || echo dev)" ./cmd/portico
go build -o "$work/bin/benchtool" ./bench/cmd/benchtool

# Pinning: the proxy under test gets the last CPU to itself; the backends,
# Redis and the load generators share the others. A single CPU: no pinning.
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
  proxy_cpus=$((ncpu - 1))
  if [ "$ncpu" -eq 2 ]; then other_cpus=0; else other_cpus="0-$((ncpu - 2))"; fi
  log "pinning: proxy under test on CPU $proxy_cpus (GOMAXPROCS=1 for portico, nbthread 1 for HAProxy, one NGINX worker); backends, Redis, wrk, redis-benchmark and the Go load tools on CPU $other_cpus"
  pin=(taskset -c "$other_cpus")
else
  proxy_cpus="" other_cpus=""
  log "pinning: none: one CPU only, the proxy shares it with the load"
  pin=()
fi

# conns-10k needs file descriptors: 10,000 client connections in the load
# tool and as many in the proxy, each within the one hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -z "$conns" ]; then
  conns=10000
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 21000 ]; then
    conns=9500
    log "conns-10k: $conns connections, as the open file limit is $(ulimit -n)"
  fi
fi

args=(run -root "$root" -portico "$work/bin/portico" -tool "$root/$work/bin/benchtool"
  -out "$out" -work "$work" -seconds "$seconds" -reps "$reps" -rate "$rate"
  -bulk-mib "$bulk_mib" -conns "$conns" -proxy-cpus "$proxy_cpus" -other-cpus "$other_cpus"
  -command "$cmdline")
[ -z "$only" ] || args+=(-only "$only")
[ -z "$targets" ] || args+=(-targets "$targets")
[ -z "$perf" ] || args+=(-perf "$perf")

log "running: $seconds s per measurement, $reps repetition(s); results in $out"
status=0
"${pin[@]}" "$work/bin/benchtool" "${args[@]}" || status=$?
[ ! -f "$out/report.md" ] || cat "$out/report.md"
exit "$status"
