package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"portico/conntrack"
	"portico/lb"
)

// Server runs the L4 listeners: one gnet engine per listener, each with its
// own event loops. Create it with New, start it with Start, stop it with
// Shutdown.
type Server struct {
	log  *slog.Logger
	set  *metrics.Set
	snap atomic.Pointer[snapshot]

	listeners []*listener

	// flows is the table of live flows: limits at accept, per-backend
	// counts, the admin snapshot. Each event loop owns one shard.
	flows      *conntrack.Table
	nextShard  atomic.Int32
	backendIDs sync.Map // *lb.Backend -> conntrack.BackendID

	// Shutdown's drain: while draining, new connections are closed at
	// accept; live counts the flows in progress, on every loop; drained is
	// closed once draining and live is 0.
	draining  atomic.Bool
	live      atomic.Int64
	drained   chan struct{}
	drainOnce sync.Once

	// ctx ends when Shutdown cuts the flows; it cancels dials in progress.
	ctx    context.Context
	cancel context.CancelFunc
	dials  sync.WaitGroup
}

// snapshot is the routing of every listener, by index; immutable once
// published. A flow keeps the pool it was given at accept.
type snapshot struct {
	routes []*routeTable
}

// routeTable maps a listener's connections to pools.
type routeTable struct {
	pool  *lb.Pool            // plain listener: every connection; nil with SNI routes
	exact map[string]*lb.Pool // SNI routes by exact name
	wild  map[string]*lb.Pool // SNI routes by the suffix of "*.suffix"
	def   *lb.Pool            // no route matched; nil: close
}

// tls reports whether the listener routes by SNI.
func (t *routeTable) tls() bool { return t.pool == nil }

// match returns the pool for a server name: an exact route, else the
// longest wildcard, else the default (nil when there is none).
func (t *routeTable) match(name string) *lb.Pool {
	if p, ok := t.exact[name]; ok {
		return p
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if p, ok := t.wild[name[i+1:]]; ok {
				return p
			}
		}
	}
	return t.def
}

// New builds a server from a validated config and the built pools. It opens
// no socket; Start does.
func New(cfg Config, pools map[string]*lb.Pool, log *slog.Logger, set *metrics.Set) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Server{log: log, set: set, drained: make(chan struct{})}
	if err := s.Swap(&cfg, pools); err != nil {
		return nil, err
	}
	shards := 0
	for i, lc := range cfg.Listeners {
		l, err := newListener(s, i, lc)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, l)
		shards += l.loops
	}
	table, err := conntrack.New(conntrack.WithShards(min(max(shards, 1), conntrack.MaxShards)), conntrack.WithMetrics(set))
	if err != nil {
		return nil, fmt.Errorf("tcp: cannot build the flow table: %w", err)
	}
	s.flows = table
	for _, l := range s.listeners {
		lc := l.cfg
		if l.ctID, err = table.AddListener(lc.Name, conntrack.ListenerConfig{MaxFlows: lc.MaxFlows, MaxFlowsPerClient: lc.MaxFlowsPerClient}); err != nil {
			return nil, fmt.Errorf("tcp listener %q: %w", lc.Name, err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Flows is the table of live flows, for the admin API: Snapshot, counts.
func (s *Server) Flows() *conntrack.Table { return s.flows }

// backendID returns the flow table's ID of a pool's backend.
func (s *Server) backendID(pool string, b *lb.Backend) conntrack.BackendID {
	if id, ok := s.backendIDs.Load(b); ok {
		return id.(conntrack.BackendID)
	}
	id := s.flows.Backend(pool, b.Name)
	s.backendIDs.Store(b, id)
	return id
}

// Swap makes cfg's routes and pools live for new connections; flows in
// progress keep their backend. Listener settings other than routes are not
// changed by a swap, and cfg must have the same listeners, in the same
// order, as the config the server was built with.
func (s *Server) Swap(cfg *Config, pools map[string]*lb.Pool) error {
	snap := &snapshot{}
	for _, lc := range cfg.Listeners {
		t := &routeTable{}
		get := func(name string) (*lb.Pool, error) {
			p := pools[name]
			if p == nil {
				return nil, fmt.Errorf("tcp listener %q: pool %q is not built", lc.Name, name)
			}
			return p, nil
		}
		var err error
		if lc.Pool != "" {
			if t.pool, err = get(lc.Pool); err != nil {
				return err
			}
		} else {
			t.exact, t.wild = map[string]*lb.Pool{}, map[string]*lb.Pool{}
			for _, r := range lc.Routes {
				p, err := get(r.Pool)
				if err != nil {
					return err
				}
				for _, n := range r.ServerNames {
					n = strings.ToLower(n)
					if suffix, ok := strings.CutPrefix(n, "*."); ok {
						t.wild[suffix] = p
					} else {
						t.exact[n] = p
					}
				}
			}
			if lc.DefaultPool != "" {
				if t.def, err = get(lc.DefaultPool); err != nil {
					return err
				}
			}
		}
		snap.routes = append(snap.routes, t)
	}
	if old := s.snap.Load(); old != nil && len(old.routes) != len(snap.routes) {
		return fmt.Errorf("tcp: cannot swap %d listeners for %d: listeners change only at restart", len(old.routes), len(snap.routes))
	}
	s.snap.Store(snap)
	return nil
}

// Start opens every listener and serves in the background. It returns the
// first error, after stopping the listeners already started.
func (s *Server) Start() error {
	for i, l := range s.listeners {
		if err := l.start(); err != nil {
			for _, started := range s.listeners[:i] {
				started.stop(context.Background())
			}
			return fmt.Errorf("tcp listener %q: %w", l.cfg.Name, err)
		}
		s.log.Info("tcp listener started", "listener", l.cfg.Name, "address", l.addr.String(), "loops", l.loops)
	}
	return nil
}

// Addrs returns the bound address of each started listener, in config
// order; useful when a config asks for port 0.
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		if l.addr != nil {
			out = append(out, l.addr)
		}
	}
	return out
}

// Shutdown drains the listeners, then stops them. At once it stops
// accepting: a connection that arrives from then on is closed as soon as
// it is accepted, with a reset. Flows in progress run on, under their
// timeouts, until they end by themselves or ctx is done; then what is left
// is cut, the event loops stop and the dials and splices in progress end.
// It returns ctx.Err() when the drain was cut, and errors of stopping a
// listener; cutting waits at most cutTimeout after ctx is done.
//
// The listening sockets stay bound during the drain (gnet closes them only
// when its engine stops): a new process listening on the same port with
// SO_REUSEPORT would share it, and see some of its connections reset,
// until the drain ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.checkDrained()
	var errs []error
	select {
	case <-s.drained:
	case <-ctx.Done():
		select {
		case <-s.drained: // both at once: nothing was cut
		default:
			errs = append(errs, ctx.Err())
			if n := s.live.Load(); n > 0 {
				s.log.Warn("tcp drain cut", "flows", n, "error", ctx.Err())
			}
		}
	}
	stopCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithTimeout(context.Background(), cutTimeout)
		defer cancel()
	}
	s.cancel()
	for _, l := range s.listeners {
		if err := l.stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("tcp listener %q: %w", l.cfg.Name, err))
		}
	}
	done := make(chan struct{})
	go func() { s.dials.Wait(); close(done) }()
	select {
	case <-done:
	case <-stopCtx.Done():
		errs = append(errs, stopCtx.Err())
	}
	if len(errs) == 1 {
		return errs[0] // ctx.Err() itself, for a cut drain
	}
	return errors.Join(errs...)
}

// cutTimeout bounds the end of Shutdown once its drain is cut: the event
// loops stop and close their flows, and the dials in progress are
// cancelled, in far less.
const cutTimeout = 5 * time.Second

// checkDrained closes drained when Shutdown drains and no flow is left.
func (s *Server) checkDrained() {
	if s.draining.Load() && s.live.Load() == 0 {
		s.drainOnce.Do(func() { close(s.drained) })
	}
}

// listener is one `[[tcp.listeners]]`: a gnet engine and its handler. The
// gnet.EventHandler methods run on the engine's event loops (OnTick on its
// ticker goroutine).
type listener struct {
	gnet.BuiltinEventEngine

	srv   *Server
	idx   int // in snapshot.routes
	cfg   ListenerConfig
	loops int
	m     listenerMetrics
	ctID  conntrack.ListenerID

	sendProxy   ProxyVersion // overrides the pool's; 0: the pool's
	acceptProxy *ProxyPolicy // nil: headers accepted from no one

	// Durations in nanoseconds, for the sweep.
	idle, lifetime, hello, dialBudget int64
	sweepEvery                        time.Duration

	addr  net.Addr      // bound address; set by start
	eng   gnet.Engine   // set by OnBoot, before ready closes
	ready chan struct{} // closed at the first OnTick: every loop is serving
	done  chan error    // gnet.Run's result
	hold  int           // a socket holding the port until ready; -1: none

	lastWarn atomic.Int64 // nanotime of the last warning logged

	loopsMu sync.Mutex
	loopSet map[gnet.EventLoop]*loop
	loopArr atomic.Pointer[[]*loop]
}

func newListener(s *Server, idx int, lc ListenerConfig) (*listener, error) {
	l := &listener{srv: s, idx: idx, cfg: lc, loops: lc.Loops, hold: -1,
		ready: make(chan struct{}), done: make(chan error, 1), loopSet: map[gnet.EventLoop]*loop{}}
	if l.loops <= 0 {
		l.loops = numCPU()
	}
	l.idle = int64(*lc.IdleTimeout)
	l.lifetime = int64(lc.MaxLifetime)
	l.hello = int64(lc.ClientHelloTimeout)
	// Each attempt may take the connect timeout; the hand-over to the loop
	// gets enrollTimeout on top.
	l.dialBudget = int64(lc.ConnectTimeout)*int64(*lc.ConnectRetries+1) + int64(enrollTimeout)
	l.sweepEvery = sweepInterval(lc)
	l.m.init(s.set, lc.Name)
	l.sendProxy = proxyVersion(lc.SendProxy)
	if len(lc.AcceptProxyFrom) > 0 {
		l.acceptProxy = &ProxyPolicy{}
		for _, cidr := range lc.AcceptProxyFrom {
			pfx, err := netip.ParsePrefix(cidr)
			if err != nil {
				return nil, fmt.Errorf("tcp listener %q: accept_proxy_from: %w", lc.Name, err)
			}
			l.acceptProxy.Trusted = append(l.acceptProxy.Trusted, pfx.Masked())
		}
	}
	return l, nil
}

// proxyVersion parses a validated send_proxy setting; "" is 0, none.
func proxyVersion(s string) ProxyVersion {
	switch s {
	case "v1":
		return ProxyV1
	case "v2":
		return ProxyV2
	}
	return 0
}

// enrollTimeout bounds the hand-over of a socket to an event loop (gnet's
// Enroll): from the call to OnOpen. gnet's worker can fail without a word
// (it recovers a panic and closes the result channel), so every Enroll is
// watched by the sweep with this deadline.
const enrollTimeout = 5 * time.Second

// sweepInterval is how often each loop checks its flows' deadlines: a
// quarter of the shortest timeout, between 50 ms and 1 s.
func sweepInterval(lc ListenerConfig) time.Duration {
	d := time.Second
	for _, t := range []time.Duration{lc.ConnectTimeout, *lc.IdleTimeout, lc.ClientHelloTimeout, lc.MaxLifetime} {
		if t > 0 && t/4 < d {
			d = t / 4
		}
	}
	return max(d, 50*time.Millisecond)
}

func (l *listener) start() error {
	host, port, err := net.SplitHostPort(l.cfg.Address)
	if err != nil {
		return err
	}
	if port == "0" {
		// Every loop binds its own SO_REUSEPORT socket: they must agree on
		// a port. Hold one until they have all bound it.
		fd, p, err := reservePort(host)
		if err != nil {
			return fmt.Errorf("cannot listen on %s: %w", l.cfg.Address, err)
		}
		l.hold, port = fd, strconv.Itoa(p)
	}
	address := net.JoinHostPort(host, port)
	l.addr, err = net.ResolveTCPAddr("tcp", address)
	if err != nil {
		l.release()
		return err
	}
	go func() {
		l.done <- gnet.Run(l, "tcp://"+address,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(l.loops),
			gnet.WithReusePort(true),
			gnet.WithTicker(true),
			gnet.WithReadBufferCap(readChunk),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{l.srv.log}),
		)
	}()
	defer l.release()
	select {
	case <-l.ready:
		return nil
	case err := <-l.done:
		if err == nil {
			err = errors.New("engine stopped at start")
		}
		l.done <- err
		return fmt.Errorf("cannot listen on %s: %w", address, err)
	}
}

// release closes the port-holding socket, if any.
func (l *listener) release() {
	if l.hold >= 0 {
		unix.Close(l.hold)
		l.hold = -1
	}
}

func (l *listener) stop(ctx context.Context) error {
	select {
	case <-l.ready:
	default:
		return nil // never started
	}
	// Engine.Stop signals the engine, then polls every 500 ms until it has
	// stopped; with a done context it only signals, and done reports the end.
	signal, cancel := context.WithCancel(context.Background())
	cancel()
	_ = l.eng.Stop(signal)
	select {
	case err := <-l.done:
		l.done <- err // for a second stop
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loops have stopped and closed their conns; flows with both
	// sockets paused had none.
	if loops := l.loopArr.Load(); loops != nil {
		for _, lp := range *loops {
			lp.closeAll()
			lp.pipe.close()
		}
	}
	return nil
}

// OnBoot keeps the engine for Stop.
func (l *listener) OnBoot(eng gnet.Engine) gnet.Action {
	l.eng = eng
	return gnet.None
}

// OnTick runs on gnet's ticker goroutine: it marks the listener ready and
// asks every loop to sweep its flows.
func (l *listener) OnTick() (time.Duration, gnet.Action) {
	select {
	case <-l.ready:
	default:
		close(l.ready)
	}
	if loops := l.loopArr.Load(); loops != nil {
		for _, lp := range *loops {
			_ = lp.el.Execute(context.Background(), lp.sweepTask)
		}
	}
	return l.sweepEvery, gnet.None
}

// warn logs a warning about the listener's flows, at most one a second: a
// storm of the same trouble is counted by the metrics, not logged in full.
func (l *listener) warn(msg string, args ...any) {
	now, last := nanotime(), l.lastWarn.Load()
	if now-last < int64(time.Second) && last != 0 || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.srv.log.Warn(msg, append([]any{"listener", l.cfg.Name}, args...)...)
}

// loopFor returns the state of the event loop el, creating it on first use.
func (l *listener) loopFor(el gnet.EventLoop) *loop {
	if loops := l.loopArr.Load(); loops != nil {
		for _, lp := range *loops {
			if lp.el == el {
				return lp
			}
		}
	}
	l.loopsMu.Lock()
	defer l.loopsMu.Unlock()
	if lp := l.loopSet[el]; lp != nil {
		return lp
	}
	lp := newLoop(l, el)
	l.loopSet[el] = lp
	arr := make([]*loop, 0, len(l.loopSet))
	for _, x := range l.loopSet {
		arr = append(arr, x)
	}
	l.loopArr.Store(&arr)
	return lp
}

// reservePort binds a SO_REUSEPORT socket to host:0 and returns it and its
// port, so that the event loops' sockets can bind the same port.
func reservePort(host string) (fd, port int, err error) {
	ip := net.ParseIP(host)
	if host == "" || host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil {
		return -1, 0, fmt.Errorf("port 0 needs an IP address, got %q", host)
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := ip.To4(); ip4 != nil {
		sa4 := &unix.SockaddrInet4{}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{}
		copy(sa6.Addr[:], ip.To16())
		sa = sa6
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err == nil {
		err = unix.Bind(fd, sa)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	return fd, port, nil
}

// gnetLogger sends gnet's own messages to slog: errors as errors, the rest
// at debug level.
type gnetLogger struct{ log *slog.Logger }

func (g gnetLogger) logf(level slog.Level, format string, args ...any) {
	if g.log.Enabled(context.Background(), level) {
		g.log.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "gnet")
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args...) }
func (g gnetLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args...) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args...) }
func (g gnetLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args...) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.logf(slog.LevelError, format, args...) }
