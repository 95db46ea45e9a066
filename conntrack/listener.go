package conntrack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// ListenerID names a listener in the table: a small index issued by
// AddListener, stored in every entry in place of the name.
type ListenerID uint16

// ListenerConfig is what the table enforces on one listener's flows. The
// zero value enforces nothing.
type ListenerConfig struct {
	// MaxFlows caps the listener's live flows: Insert refuses more with
	// ErrListenerLimit. 0: no cap.
	MaxFlows int
	// MaxFlowsPerClient caps the live flows of one client on this
	// listener: Insert refuses more with ErrClientLimit. A client is an
	// IPv4 address or an IPv6 prefix (see WithClientPrefixV6). 0: no cap,
	// and per-client counts are not kept for the listener.
	MaxFlowsPerClient int
	// Timeouts are the deadlines AppendExpired enforces.
	Timeouts Timeouts
}

// Timeouts bound how long a flow may stay in a phase of its life. Each is
// off when zero. The phase timeouts replace the idle timeout in their
// state; Lifetime applies in every state.
type Timeouts struct {
	// Handshake bounds the time in StateHandshake (reading a PROXY header
	// or a TLS ClientHello); zero: Idle applies instead.
	Handshake time.Duration
	// Connect bounds the time in StateConnecting; zero: Idle applies
	// instead.
	Connect time.Duration
	// Idle bounds the time without activity (Touch, AddBytes or a state
	// change) in every other state.
	Idle time.Duration
	// Lifetime bounds the time since Insert.
	Lifetime time.Duration
}

func (c *ListenerConfig) validate() error {
	switch {
	case c.MaxFlows < 0:
		return fmt.Errorf("MaxFlows must not be negative, got %d", c.MaxFlows)
	case c.MaxFlowsPerClient < 0:
		return fmt.Errorf("MaxFlowsPerClient must not be negative, got %d", c.MaxFlowsPerClient)
	case c.Timeouts.Handshake < 0:
		return fmt.Errorf("Timeouts.Handshake must not be negative, got %s", c.Timeouts.Handshake)
	case c.Timeouts.Connect < 0:
		return fmt.Errorf("Timeouts.Connect must not be negative, got %s", c.Timeouts.Connect)
	case c.Timeouts.Idle < 0:
		return fmt.Errorf("Timeouts.Idle must not be negative, got %s", c.Timeouts.Idle)
	case c.Timeouts.Lifetime < 0:
		return fmt.Errorf("Timeouts.Lifetime must not be negative, got %s", c.Timeouts.Lifetime)
	}
	return nil
}

const (
	refusedListener = iota
	refusedClient
	refusedFull
	numRefused
)

var refusedNames = [numRefused]string{"listener_limit", "client_limit", "table_full"}

// listener is a listener's live state.
type listener struct {
	name     string
	cfg      atomic.Pointer[ListenerConfig]
	accepted *metrics.Counter
	refused  [numRefused]*metrics.Counter
	expired  [numReasons]*metrics.Counter

	// active is touched by every Insert and Remove of the listener on
	// every loop; it gets a cache line of its own.
	_      [64]byte
	active atomic.Int64
	_      [64]byte
}

// AddListener registers a listener under a unique name and returns its ID
// for Flow.Listener. It creates the listener's metrics. Listeners are never
// removed; a reload changes them with SetListener. Safe for concurrent use;
// not for the accept path.
func (t *Table) AddListener(name string, cfg ListenerConfig) (ListenerID, error) {
	if err := cfg.validate(); err != nil {
		return 0, fmt.Errorf("cannot add listener %q: %w", name, err)
	}
	t.lmu.Lock()
	defer t.lmu.Unlock()
	if _, ok := t.lnames[name]; ok {
		return 0, fmt.Errorf("cannot add listener %q: already added", name)
	}
	old := *t.listeners.Load()
	if len(old) > 1<<16-1 {
		return 0, fmt.Errorf("cannot add listener %q: too many listeners", name)
	}
	q := `listener=` + quoteLabel(name)
	l := &listener{
		name:     name,
		accepted: t.set.GetOrCreateCounter(`portico_conntrack_flows_accepted_total{` + q + `}`),
	}
	for r := range l.refused {
		l.refused[r] = t.set.GetOrCreateCounter(`portico_conntrack_flows_refused_total{` + q + `,reason="` + refusedNames[r] + `"}`)
	}
	for r := range l.expired {
		l.expired[r] = t.set.GetOrCreateCounter(`portico_conntrack_flows_expired_total{` + q + `,reason="` + reasonNames[r] + `"}`)
	}
	t.set.GetOrCreateGauge(`portico_conntrack_flows_active{`+q+`}`, func() float64 { return float64(l.active.Load()) })
	l.cfg.Store(&cfg)

	id := ListenerID(len(old))
	ls := append(old[:len(old):len(old)], l)
	t.listeners.Store(&ls)
	t.lnames[name] = id
	return id, nil
}

// SetListener replaces a listener's limits and timeouts. New limits apply
// to the next Insert (flows above a lowered limit stay); new timeouts apply
// to every live flow of the listener within one turn of the wheel, sooner
// for flows whose deadline comes up.
func (t *Table) SetListener(id ListenerID, cfg ListenerConfig) error {
	ls := *t.listeners.Load()
	if int(id) >= len(ls) {
		return fmt.Errorf("cannot set listener %d: %w", id, ErrUnknownListener)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("cannot set listener %q: %w", ls[id].name, err)
	}
	t.lmu.Lock()
	defer t.lmu.Unlock()
	// Flows counted against a per-client limit release their count when
	// removed (their entry says so), so turning the limit on or off
	// leaves the counts right.
	ls[id].cfg.Store(&cfg)
	return nil
}

// ListenerFlows is the number of live flows of a listener. Safe for
// concurrent use.
func (t *Table) ListenerFlows(id ListenerID) int {
	ls := *t.listeners.Load()
	if int(id) >= len(ls) {
		return 0
	}
	return int(ls[id].active.Load())
}

// Per-client counts, in maps sharded by a hash of the key so that loops
// accepting different clients take different locks.
const clientShards = 64

type clientKey struct {
	addr     [16]byte // IPv4-mapped, or IPv6 masked to the client prefix
	listener ListenerID
}

type clientShard struct {
	mu sync.Mutex
	m  map[clientKey]int32
	_  [48]byte
}

func (t *Table) clientKey(l ListenerID, a netip.Addr) clientKey {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(t.v6Bits)
		a = p.Addr()
	}
	return clientKey{addr: a.As16(), listener: l}
}

func (t *Table) clientShard(k clientKey) *clientShard {
	h := binary.LittleEndian.Uint64(k.addr[:8])*0x9e3779b97f4a7c15 ^
		binary.LittleEndian.Uint64(k.addr[8:]) ^ uint64(k.listener)<<48
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return &t.clients[h%clientShards]
}

// acquireClient counts one more flow for k unless it has max already.
func (t *Table) acquireClient(k clientKey, max int) bool {
	cs := t.clientShard(k)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	n := cs.m[k]
	if int(n) >= max {
		return false
	}
	cs.m[k] = n + 1
	return true
}

func (t *Table) releaseClient(k clientKey) {
	cs := t.clientShard(k)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch n := cs.m[k]; {
	case n > 1:
		cs.m[k] = n - 1
	case n == 1:
		delete(cs.m, k)
	default:
		panic("BUG: conntrack: client count below zero")
	}
}

// ClientFlows is the number of live flows counted against the per-client
// limit of listener id for client ip (the prefix of ip the table counts by
// for IPv6). It is 0 for listeners without a per-client limit. Safe for
// concurrent use.
func (t *Table) ClientFlows(id ListenerID, ip netip.Addr) int {
	k := t.clientKey(id, ip)
	cs := t.clientShard(k)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return int(cs.m[k])
}

// quoteLabel quotes a label value for the Prometheus text format.
func quoteLabel(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return `"` + v + `"`
}
