// Package l7 is portico's HTTP path: listeners (plain and TLS), routing,
// header and path rewriting, redirects and the reverse proxy to pools of
// backends, on github.com/valyala/fasthttp.
//
// Everything a reload may change is compiled into an immutable snapshot that
// the running server swaps atomically; requests in flight keep the snapshot
// they started with.
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"portico/lb"
)

// Server runs the L7 listeners. Create it with New, start it with Start,
// stop it with Shutdown.
type Server struct {
	log     *slog.Logger
	metrics *serverMetrics
	ids     requestIDs
	access  *accessLog

	snap atomic.Pointer[snapshot]

	clientsMu sync.Mutex
	clients   map[clientKey]*fasthttp.HostClient

	listeners []*listener
	tunnels   sync.WaitGroup
	closing   chan struct{} // closed when the drain window ends: cut tunnels
	closeOnce sync.Once

	rcache serverCache    // the response cache (cachestage.go)
	bg     sync.WaitGroup // background revalidations
}

// listener is one running fasthttp.Server and the settings its handler needs.
type listener struct {
	cfg         ListenerConfig
	scheme      []byte
	maxBody     int64
	bodyTimeout time.Duration
	srv         *fasthttp.Server
	ln          net.Listener
	pk          *parker // nil: idle connections are not parked (TLS)
	done        chan error
}

// New builds a server from a validated config and the built pools. It opens
// no socket; Start does.
func New(cfg Config, pools map[string]*lb.Pool, log *slog.Logger, set *metrics.Set) (*Server, error) {
	s := &Server{
		log:     log,
		metrics: newServerMetrics(set),
		clients: map[clientKey]*fasthttp.HostClient{},
		closing: make(chan struct{}),
	}
	s.ids.init()
	access, err := openAccessLog(cfg.AccessLog)
	if err != nil {
		return nil, err
	}
	s.access = access
	if err := s.Swap(&cfg, pools); err != nil {
		return nil, err
	}
	for _, lc := range cfg.Listeners {
		l, err := s.newListener(lc)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	return s, nil
}

// Swap compiles cfg into a new snapshot and makes it live. Listener settings
// are not changed by a swap.
func (s *Server) Swap(cfg *Config, pools map[string]*lb.Pool) error {
	snap, err := s.buildSnapshot(cfg, pools)
	if err != nil {
		return err
	}
	s.snap.Store(snap)
	return nil
}

func (s *Server) newListener(lc ListenerConfig) (*listener, error) {
	l := &listener{cfg: lc, scheme: []byte("http"), maxBody: *lc.MaxBodyBytes, bodyTimeout: lc.BodyTimeout, done: make(chan error, 1)}
	var tlsCfg *tls.Config
	if len(lc.Certificates) > 0 {
		l.scheme = []byte("https")
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		for i, c := range lc.Certificates {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("listener %q certificates[%d]: cannot load %s: %w", lc.Name, i, c.CertFile, err)
			}
			tlsCfg.Certificates = append(tlsCfg.Certificates, cert)
		}
	}
	maxBody := *lc.MaxBodyBytes
	if maxBody <= 0 || maxBody > 1<<31-1 {
		maxBody = 1<<31 - 1
	}
	// Once the header block is in, the body that fasthttp reads ahead of the
	// handler (up to 8 KiB) is under body_timeout, not header_timeout.
	// A request without a body reads nothing more: its deadline is left
	// alone, which saves a deadline set on nearly every request.
	bodyDeadline := func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		if h.ContentLength() == 0 {
			return fasthttp.RequestConfig{}
		}
		return fasthttp.RequestConfig{ReadTimeout: lc.BodyTimeout}
	}
	// ReduceMemoryUsage: an idle keep-alive connection gives its 4 KiB
	// write buffer and its body buffers back to fasthttp's pools, about
	// 4 KiB of RSS per idle connection, at no cost measured on l7-small.
	// The read buffer stays (fasthttp keeps it with StreamRequestBody)
	// until the connection is parked (park.go).
	l.srv = &fasthttp.Server{
		Handler:                      func(ctx *fasthttp.RequestCtx) { s.serve(ctx, l) },
		ErrorHandler:                 func(ctx *fasthttp.RequestCtx, err error) { s.parseError(ctx, l, err) },
		ConnState:                    connState,
		ReadTimeout:                  lc.HeaderTimeout,
		HeaderReceived:               bodyDeadline,
		WriteTimeout:                 lc.WriteTimeout,
		IdleTimeout:                  lc.IdleTimeout,
		ReadBufferSize:               lc.MaxHeaderBytes,
		ReduceMemoryUsage:            true,
		MaxRequestBodySize:           int(maxBody),
		Concurrency:                  lc.MaxConns,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true, // date.go: the origin's Date is kept
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{s.log},
		TLSConfig:                    tlsCfg,
	}
	return l, nil
}

// Start opens every listener and serves in the background. It returns the
// first error opening a socket, after closing those already open.
func (s *Server) Start() error {
	for _, l := range s.listeners {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listener %q: cannot listen on %s: %w", l.cfg.Name, l.cfg.Address, err)
		}
		if l.srv.TLSConfig != nil {
			l.ln = tls.NewListener(s.metrics.countingListener(ln, nil, 0), l.srv.TLSConfig)
			continue
		}
		pk, err := newParker(l.parking(), l.srv, s.log, s.metrics)
		if err != nil {
			s.log.Warn("idle connections will not be parked", "listener", l.cfg.Name, "error", err)
		}
		l.pk = pk
		limit := 0
		if l.pk != nil {
			limit = l.cfg.MaxConns
			// max_conns is kept by the listener. fasthttp's Concurrency must
			// not refuse a woken connection: the ServeConn that parked it
			// releases its count only after Close has parked it, so a
			// request arriving at once is counted twice for a moment.
			if limit > 0 {
				l.srv.Concurrency = int(min(2*int64(limit), math.MaxInt32))
			}
		}
		l.ln = s.metrics.countingListener(ln, l.pk, limit)
	}
	for _, l := range s.listeners {
		go func(l *listener) { l.done <- l.srv.Serve(l.ln) }(l)
		s.log.Info("http listener started", "listener", l.cfg.Name, "address", l.ln.Addr().String(), "tls", l.srv.TLSConfig != nil)
	}
	return nil
}

// Addrs returns the bound address of each listener, in config order; useful
// when a config asks for port 0.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(s.listeners))
	for _, l := range s.listeners {
		if l.ln != nil {
			out = append(out, l.ln.Addr())
		}
	}
	return out
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		if l.ln != nil {
			l.ln.Close()
		}
		if l.pk != nil {
			l.pk.close()
		}
	}
}

// parking is the listener's parkPolicy (park.go).
func (l *listener) parking() parkPolicy {
	if l.cfg.parking != nil {
		return *l.cfg.parking
	}
	return defaultParking
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes what is left. It returns ctx's error if the drain was cut.
func (s *Server) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.listeners))
	for _, l := range s.listeners {
		if l.pk != nil {
			l.pk.close() // parked connections are idle: close them first
		}
	}
	for i, l := range s.listeners {
		if l.ln == nil {
			continue
		}
		wg.Add(1)
		go func(i int, l *listener) {
			defer wg.Done()
			errs[i] = l.srv.ShutdownWithContext(ctx)
		}(i, l)
	}
	wg.Wait()
	if ctx.Err() != nil {
		// The drain window is over: cut the requests still in flight.
		s.metrics.cutConns()
	}
	tunnels := make(chan struct{})
	go func() { s.tunnels.Wait(); close(tunnels) }()
	select {
	case <-tunnels:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
		s.closeOnce.Do(func() { close(s.closing) })
		<-tunnels
	}
	s.access.close()
	s.bg.Wait()
	s.closeCache()
	s.clientsMu.Lock()
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
	s.clientsMu.Unlock()
	return errors.Join(errs...)
}

// fasthttpLogger sends fasthttp's own messages to slog at debug level.
type fasthttpLogger struct{ log *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.log.Enabled(context.Background(), slog.LevelDebug) {
		f.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
	}
}
