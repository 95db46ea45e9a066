#!/usr/bin/env bash
# cache-conformance.sh: runs the HTTP Working Group's cache test suite (npm
# package http-cache-tests) against portico's response cache and, in the same
# run, against NGINX with proxy_cache, and prints both scores: tests passed,
# required tests failed, optimal tests missed. Not run in CI.
#
#   scripts/cache-conformance.sh            # needs node/npm, nginx, go
#
# The suite's own server is the origin; each cache sits in front of it on
# loopback. Raw results go to $WORK/{portico,nginx}.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/cache-conformance.XXXXXX)}
SUITE_VERSION=${SUITE_VERSION:-0.4.5}
ORIGIN_PORT=${ORIGIN_PORT:-18600}
PORTICO_PORT=${PORTICO_PORT:-18601}
NGINX_PORT=${NGINX_PORT:-18602}

command -v npm >/dev/null || { echo "cache-conformance: npm is needed (apt-get install npm)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "cache-conformance: nginx is needed (apt-get install nginx)" >&2; exit 2; }

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -f $WORK/nginx/nginx.pid ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$WORK" && cd "$WORK"
[[ -d node_modules/http-cache-tests ]] || npm install --silent --no-audit --no-fund "http-cache-tests@$SUITE_VERSION" >/dev/null
SUITE=$WORK/node_modules/http-cache-tests

wait_port() { # wait_port PORT: until something listens, at most 10 s
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "cache-conformance: nothing listens on port $1" >&2
	exit 1
}

# The origin: the suite's server.
(cd "$SUITE" && npm_config_protocol=http npm_config_port=$ORIGIN_PORT npm_config_pidfile=$WORK/origin.pid \
	exec node server/server.mjs >"$WORK/origin.log" 2>&1) &
pids+=($!)
wait_port "$ORIGIN_PORT"

# portico, with the cache on for every request.
cat >"$WORK/portico.toml" <<TOML
[log]
level = "warn"
[admin]
address = ""
[pools.origin]
policy = "round_robin"
backends = [{ name = "origin", address = "127.0.0.1:$ORIGIN_PORT" }]
[http]
[[http.listeners]]
address = "127.0.0.1:$PORTICO_PORT"
[http.upstream]
retries = 0
[[http.routes]]
name = "cached"
pool = "origin"
[http.routes.cache]
enabled = true
TOML
(cd "$ROOT" && go build -o "$WORK/portico" ./cmd/portico)
"$WORK/portico" -config "$WORK/portico.toml" >"$WORK/portico.log" 2>&1 &
pids+=($!)
wait_port "$PORTICO_PORT"

# NGINX, proxy_cache configured sensibly: honour the origin's headers,
# revalidate with conditional requests, lock concurrent misses, serve stale
# on errors as the response allows.
mkdir -p "$WORK/nginx/cache" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=c:10m max_size=256m inactive=60m use_temp_path=off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_cache c;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
            proxy_cache_methods GET HEAD;
            proxy_cache_use_stale error timeout updating;
            proxy_cache_background_update on;
        }
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_port "$NGINX_PORT"

run_suite() { # run_suite NAME PORT: raw results to NAME.json
	(cd "$SUITE" && npm_config_base="http://127.0.0.1:$2" npm_config_id="" npm_package_config_id="" \
		node --no-warnings cli.mjs >"$WORK/$1.json" 2>"$WORK/$1.err")
}
run_suite portico "$PORTICO_PORT"
run_suite nginx "$NGINX_PORT"

cat >"$SUITE/score.mjs" <<'JS'
import fs from 'fs'
import tests from './tests/index.mjs'
import surrogate from './tests/surrogate-control.mjs'
import { determineTestResult } from './lib/display.mjs'
tests.push(surrogate)
const runs = process.argv.slice(2).map(a => a.split('='))
for (const [name, file] of runs) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  const n = { pass: 0, fail: 0, optional: 0, other: 0, checks: 0 }
  const failed = []
  const missed = []
  const other = []
  for (const suite of tests) {
    for (const t of suite.tests) {
      if (t.browser_only) continue
      const r = determineTestResult(tests, t.id, results)[2]
      if (t.kind === 'check') { n.checks++; continue }
      if (r === '✅') n.pass++
      else if (r === '⛔️') { n.fail++; failed.push(t.id) }
      else if (r === '⚠️') { n.optional++; missed.push(t.id) }
      else { n.other++; other.push(t.id) }
    }
  }
  console.log(`${name.padEnd(8)} passed ${n.pass}, required failures ${n.fail}, optimal misses ${n.optional}, setup/dependency ${n.other}`)
  if (process.env.VERBOSE) {
    console.log('  required failures: ' + failed.join(' '))
    console.log('  optimal misses: ' + missed.join(' '))
    console.log('  setup/dependency: ' + other.join(' '))
  }
}
// The tests the second cache passes and the first does not.
if (runs.length === 2) {
  const [a, b] = runs.map(([, file]) => JSON.parse(fs.readFileSync(file, 'utf8')))
  const only = []
  for (const suite of tests) {
    for (const t of suite.tests) {
      if (t.browser_only || t.kind === 'check') continue
      if (determineTestResult(tests, t.id, b)[2] === '✅' && determineTestResult(tests, t.id, a)[2] !== '✅') only.push(t.id)
    }
  }
  console.log(`passed by ${runs[1][0]} only: ${only.join(' ') || 'none'}`)
}
JS
echo "http-cache-tests $SUITE_VERSION (results in $WORK):"
(cd "$SUITE" && node --no-warnings score.mjs "portico=$WORK/portico.json" "nginx=$WORK/nginx.json")
