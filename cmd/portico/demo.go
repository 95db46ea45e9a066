package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// DemoConfig is the `[demo]` section: built-in backends so that the shipped
// config works on a machine with nothing else running.
type DemoConfig struct {
	// HTTP lists the addresses of demo HTTP backends, named demo-1, demo-2,
	// ... in order. Each answers any request with JSON holding its name, the
	// request line and the headers it received. Default three, on
	// 127.0.0.1:9001 to 9003.
	HTTP []string `toml:"http"`
	// TCPEcho is the address of a TCP echo backend. Default "127.0.0.1:9101";
	// "" turns it off.
	TCPEcho *string `toml:"tcp_echo"`
}

func (d *DemoConfig) setDefaults() {
	if d.HTTP == nil {
		d.HTTP = []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}
	}
	if d.TCPEcho == nil {
		a := "127.0.0.1:9101"
		d.TCPEcho = &a
	}
}

func (d *DemoConfig) validate(path string) error {
	var errs []error
	for i, a := range d.HTTP {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s.http[%d]: want host:port, got %q", path, i, a))
		}
	}
	if a := *d.TCPEcho; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s.tcp_echo: want host:port, got %q", path, a))
		}
	}
	return errors.Join(errs...)
}

// demo runs the demo backends.
type demo struct {
	servers []*http.Server
	echo    net.Listener
	log     *slog.Logger

	mu        sync.Mutex
	echoConns map[net.Conn]struct{} // nil once closed
	echoDone  sync.WaitGroup
}

// startDemo opens every demo backend; on error it closes those it opened.
func startDemo(d *DemoConfig, log *slog.Logger) (*demo, error) {
	dm := &demo{log: log, echoConns: map[net.Conn]struct{}{}}
	for i, addr := range d.HTTP {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			dm.close(context.Background())
			return nil, fmt.Errorf("demo.http[%d]: cannot listen on %s: %w", i, addr, err)
		}
		name := "demo-" + strconv.Itoa(i+1)
		srv := &http.Server{Handler: whoami(name), ReadHeaderTimeout: 10 * time.Second}
		dm.servers = append(dm.servers, srv)
		go srv.Serve(ln)
		log.Info("demo http backend started", "name", name, "address", ln.Addr().String())
	}
	if a := *d.TCPEcho; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			dm.close(context.Background())
			return nil, fmt.Errorf("demo.tcp_echo: cannot listen on %s: %w", a, err)
		}
		dm.echo = ln
		go dm.serveEcho()
		log.Info("demo tcp echo backend started", "address", ln.Addr().String())
	}
	return dm, nil
}

// whoami answers with the backend's name, the request line and headers.
func whoami(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
		headers := make(map[string]string, len(r.Header)+1)
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			headers[k] = r.Header.Get(k)
		}
		headers["Host"] = r.Host
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Demo-Backend", name)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Name      string            `json:"name"`
			Request   string            `json:"request"`
			Remote    string            `json:"remote"`
			Headers   map[string]string `json:"headers"`
			BodyBytes int64             `json:"body_bytes"`
		}{name, r.Method + " " + r.RequestURI + " " + r.Proto, r.RemoteAddr, headers, n})
	})
}

func (dm *demo) serveEcho() {
	for {
		c, err := dm.echo.Accept()
		if err != nil {
			return
		}
		dm.mu.Lock()
		if dm.echoConns == nil {
			dm.mu.Unlock()
			c.Close()
			return
		}
		dm.echoConns[c] = struct{}{}
		dm.echoDone.Add(1)
		dm.mu.Unlock()
		go func() {
			defer dm.echoDone.Done()
			_, _ = io.Copy(c, c)
			c.Close()
			dm.mu.Lock()
			delete(dm.echoConns, c)
			dm.mu.Unlock()
		}()
	}
}

// close lets HTTP requests in flight finish until ctx ends, then cuts them,
// and closes the echo listener and its connections.
func (dm *demo) close(ctx context.Context) {
	for _, s := range dm.servers {
		if s.Shutdown(ctx) != nil {
			_ = s.Close()
		}
	}
	if dm.echo != nil {
		dm.echo.Close()
	}
	dm.mu.Lock()
	for c := range dm.echoConns {
		c.Close()
	}
	dm.echoConns = nil
	dm.mu.Unlock()
	dm.echoDone.Wait()
}
