package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"portico/conntrack"
)

// admin serves /metrics (Prometheus text format), /healthz, GET /flows and
// POST /cache/purge.
type admin struct {
	srv *http.Server
	ln  net.Listener
}

// purger is the part of *l7.Server the purge route uses.
type purger interface {
	Purge(key, prefix string, all bool) int
}

// flowLister is the part of *conntrack.Table the flows route uses.
type flowLister interface {
	Snapshot(limit int) conntrack.Snapshot
}

func startAdmin(addr string, set *metrics.Set, log *slog.Logger, cache purger, flows flowLister) (*admin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.address: cannot listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	// ?key=URL purges one key (as the route's key parts spell it, e.g.
	// http://example.com/a?b), ?prefix=P every key starting with P, ?all=1
	// everything; the answer is {"purged":N}.
	mux.HandleFunc("POST /cache/purge", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		key, prefix, all := q.Get("key"), q.Get("prefix"), q.Get("all") == "1"
		if key == "" && prefix == "" && !all || cache == nil {
			http.Error(w, "want one of key=, prefix= or all=1", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"purged\":%d}\n", cache.Purge(key, prefix, all))
	})
	// The live L4 flows, oldest first, with per-listener and per-backend
	// counts; ?limit=N (default 100, at most 10000) bounds the list.
	mux.HandleFunc("GET /flows", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > 10000 {
				http.Error(w, "limit: want 0 to 10000", http.StatusBadRequest)
				return
			}
			limit = n
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(flows.Snapshot(limit))
	})
	a := &admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go a.srv.Serve(ln)
	log.Info("admin listener started", "address", ln.Addr().String())
	return a, nil
}

// close lets scrapes in flight finish until ctx ends, then cuts them.
func (a *admin) close(ctx context.Context) {
	if a != nil && a.srv.Shutdown(ctx) != nil {
		_ = a.srv.Close()
	}
}

// addr is the bound address, useful when the config asks for port 0.
func (a *admin) addr() net.Addr { return a.ln.Addr() }
