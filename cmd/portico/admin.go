package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// admin serves /metrics (Prometheus text format) and /healthz.
type admin struct {
	srv *http.Server
	ln  net.Listener
}

func startAdmin(addr string, set *metrics.Set, log *slog.Logger) (*admin, error) {
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
