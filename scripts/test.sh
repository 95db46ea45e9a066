#!/usr/bin/env bash
# Runs portico's checks: installs what the tests need when it is missing, then
# `go vet ./...` and `go test -race -count=1 ./...`. Extra arguments are passed
# to `go test` (e.g. scripts/test.sh -run TestRouter -v).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/needs.sh

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Go: the machine's toolchain at /usr/local/go when it is not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { log "go is not installed; see README.md"; exit 1; }

# Debian packages the tests run for real, as "command:package" pairs. Each is
# installed by install_needs (scripts/lib/needs.sh) when missing. A
# command with a / is a path pattern (the PostgreSQL server's initdb is not on
# PATH, and psql alone is only the client).
needs=(
  "gcc:gcc"   # cgo, which the race detector needs
  "redis-server:redis-server"   # l4 TestRedis (with redis-benchmark, from redis-tools)
  "/usr/lib/postgresql/*/bin/initdb:postgresql"  # l4 TestPostgres (initdb, pg_ctl, postgres)
)
install_needs "${needs[@]}" || exit 1

log "go vet ./..."
go vet ./...
log "go test -race -count=1 ./..."
go test -race -count=1 -timeout 15m "$@" ./...
