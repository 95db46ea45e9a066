package conntrack

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

// t0 is where fake clocks start: a whole number of ticks.
var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) Since0() time.Duration   { return time.Duration(c.ns.Load() - t0.UnixNano()) }

// newTable makes a table on a fake clock, with its metrics in set.
func newTable(tb testing.TB, opts ...Option) (*Table, *fakeClock, *metrics.Set) {
	tb.Helper()
	clk := &fakeClock{}
	clk.ns.Store(t0.UnixNano())
	set := metrics.NewSet()
	tab, err := New(append([]Option{WithClock(clk.Now), WithMetrics(set), WithShards(4)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return tab, clk, set
}

func mustListener(tb testing.TB, tab *Table, name string, cfg ListenerConfig) ListenerID {
	tb.Helper()
	id, err := tab.AddListener(name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustInsert(tb testing.TB, tab *Table, shard int, f Flow) ID {
	tb.Helper()
	id, err := tab.Insert(shard, f)
	if err != nil {
		tb.Fatalf("Insert(%d, %+v): %v", shard, f, err)
	}
	return id
}

// metricValue reads one series from set, or fails.
func metricValue(tb testing.TB, set *metrics.Set, series string) string {
	tb.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	tb.Fatalf("no series %s in:\n%s", series, buf.String())
	return ""
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithShards(0), "cannot create conntrack table: shards must be 1 to 256, got 0"},
		{WithShards(257), "cannot create conntrack table: shards must be 1 to 256, got 257"},
		{WithTick(time.Microsecond), "cannot create conntrack table: tick must be at least 1ms, got 1µs"},
		{WithWheelSlots(1000), "cannot create conntrack table: wheel slots must be a power of two from 16 to 1048576, got 1000"},
		{WithWheelSlots(8), "cannot create conntrack table: wheel slots must be a power of two from 16 to 1048576, got 8"},
		{WithClientPrefixV6(129), "cannot create conntrack table: IPv6 client prefix must be 1 to 128 bits, got 129"},
	} {
		_, err := New(tc.opt)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v; want %q", err, tc.want)
		}
	}
	tab, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if tab.Shards() < 1 {
		t.Fatalf("got %d shards; want GOMAXPROCS", tab.Shards())
	}
}

func TestAddListenerValidates(t *testing.T) {
	tab, _, _ := newTable(t)
	for _, tc := range []struct {
		cfg  ListenerConfig
		want string
	}{
		{ListenerConfig{MaxFlows: -1}, `cannot add listener "x": MaxFlows must not be negative, got -1`},
		{ListenerConfig{MaxFlowsPerClient: -2}, `cannot add listener "x": MaxFlowsPerClient must not be negative, got -2`},
		{ListenerConfig{Timeouts: Timeouts{Idle: -time.Second}}, `cannot add listener "x": Timeouts.Idle must not be negative, got -1s`},
		{ListenerConfig{Timeouts: Timeouts{Lifetime: -1}}, `cannot add listener "x": Timeouts.Lifetime must not be negative, got -1ns`},
	} {
		_, err := tab.AddListener("x", tc.cfg)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v; want %q", err, tc.want)
		}
	}
	mustListener(t, tab, "x", ListenerConfig{})
	if _, err := tab.AddListener("x", ListenerConfig{}); err == nil || err.Error() != `cannot add listener "x": already added` {
		t.Errorf("got %v; want a duplicate error", err)
	}
	if err := tab.SetListener(7, ListenerConfig{}); !errors.Is(err, ErrUnknownListener) {
		t.Errorf("SetListener(7): got %v; want ErrUnknownListener", err)
	}
}

func TestIDPacking(t *testing.T) {
	for _, tc := range []struct {
		gen         uint32
		shard, slot int
	}{
		{1, 0, 0},
		{3, 255, MaxFlowsPerShard - 1},
		{1<<32 - 1, 17, 12345},
	} {
		id := makeID(tc.gen, tc.shard, tc.slot)
		if id == 0 || id.gen() != tc.gen || id.Shard() != tc.shard || id.slot() != tc.slot {
			t.Errorf("makeID(%d, %d, %d) = %#x: got gen %d shard %d slot %d", tc.gen, tc.shard, tc.slot, id, id.gen(), id.Shard(), id.slot())
		}
	}
}

func TestInsertGetRemove(t *testing.T) {
	tab, clk, _ := newTable(t)
	lid := mustListener(t, tab, "db", ListenerConfig{})
	b := tab.Backend("pg", "pg-1")
	client := netip.MustParseAddrPort("[2001:db8::7]:40000")

	id := mustInsert(t, tab, 2, Flow{Listener: lid, Client: client, State: StateConnecting, Backend: b})
	if id.Shard() != 2 {
		t.Errorf("got shard %d; want 2", id.Shard())
	}
	clk.Advance(time.Second)
	tab.AppendExpired(nil, 2) // moves the shard's clock
	if !tab.AddBytes(id, 100, 7) || !tab.AddBytes(id, 1, 0) || !tab.SetState(id, StateEstablished) {
		t.Fatal("got false for a live flow")
	}
	want := FlowInfo{
		ID: id, Listener: "db", Client: client, Pool: "pg", Backend: "pg-1",
		State: StateEstablished, Start: t0, StateSince: t0.Add(time.Second), LastActive: t0.Add(time.Second),
		BytesIn: 101, BytesOut: 7,
	}
	got, ok := tab.Get(id)
	if !ok || !sameInfo(got, want) {
		t.Fatalf("Get: got %+v, %v; want %+v", got, ok, want)
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("Len: got %d; want 1", n)
	}
	if n := tab.BackendFlows(b); n != 1 {
		t.Errorf("BackendFlows: got %d; want 1", n)
	}
	got, ok = tab.Remove(id)
	if !ok || !sameInfo(got, want) {
		t.Fatalf("Remove: got %+v, %v; want %+v", got, ok, want)
	}

	// The ID is stale now, and stays stale when its slot is reused.
	id2 := mustInsert(t, tab, 2, Flow{Listener: lid, Client: client})
	if id2.slot() != id.slot() || id2 == id {
		t.Fatalf("got ID %#x after %#x; want the slot reused with a new generation", id2, id)
	}
	for name, ok := range map[string]bool{
		"Touch":      tab.Touch(id),
		"AddBytes":   tab.AddBytes(id, 1, 1),
		"SetState":   tab.SetState(id, StateClosing),
		"SetBackend": tab.SetBackend(id, b),
	} {
		if ok {
			t.Errorf("%s on a removed ID: got true; want false", name)
		}
	}
	if _, ok := tab.Remove(id); ok {
		t.Error("second Remove: got true; want false")
	}
	if got, _ := tab.Get(id2); got.BytesIn != 0 || got.Backend != "" {
		t.Errorf("a stale ID changed the new flow: %+v", got)
	}
	for _, bad := range []ID{0, makeID(1, 200, 0), makeID(1, 0, 1<<20), makeID(2, 2, id2.slot())} {
		if tab.Touch(bad) {
			t.Errorf("Touch(%#x): got true; want false", bad)
		}
	}
	tab.Remove(id2)
	if n, nb, nl := tab.Len(), tab.BackendFlows(b), tab.ListenerFlows(lid); n != 0 || nb != 0 || nl != 0 {
		t.Errorf("after Remove: got Len %d, backend %d, listener %d; want 0", n, nb, nl)
	}
}

func sameInfo(a, b FlowInfo) bool {
	return a.ID == b.ID && a.Listener == b.Listener && a.Client == b.Client && a.Pool == b.Pool &&
		a.Backend == b.Backend && a.State == b.State && a.Start.Equal(b.Start) &&
		a.StateSince.Equal(b.StateSince) && a.LastActive.Equal(b.LastActive) &&
		a.BytesIn == b.BytesIn && a.BytesOut == b.BytesOut
}

func TestInsertUnknownIDs(t *testing.T) {
	tab, _, _ := newTable(t)
	if _, err := tab.Insert(0, Flow{Listener: 3}); err != ErrUnknownListener {
		t.Errorf("got %v; want ErrUnknownListener", err)
	}
	lid := mustListener(t, tab, "l", ListenerConfig{})
	if _, err := tab.Insert(0, Flow{Listener: lid, Backend: 9}); err != ErrUnknownBackend {
		t.Errorf("got %v; want ErrUnknownBackend", err)
	}
	if n := tab.ListenerFlows(lid); n != 0 {
		t.Errorf("a failed Insert left a count: %d", n)
	}
}

func TestClientAddressForms(t *testing.T) {
	tab, _, _ := newTable(t)
	lid := mustListener(t, tab, "l", ListenerConfig{})
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:80", "192.0.2.1:80"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"[fe80::1%eth0]:22", "[fe80::1]:22"}, // zones are not kept
	} {
		id := mustInsert(t, tab, 0, Flow{Listener: lid, Client: netip.MustParseAddrPort(tc.in)})
		got, _ := tab.Remove(id)
		if got.Client.String() != tc.want {
			t.Errorf("%s: got %s; want %s", tc.in, got.Client, tc.want)
		}
	}
	id := mustInsert(t, tab, 0, Flow{Listener: lid})
	if got, _ := tab.Remove(id); got.Client.IsValid() {
		t.Errorf("no client: got %s; want the zero AddrPort", got.Client)
	}
}

func TestSetBackendMovesCounts(t *testing.T) {
	tab, _, set := newTable(t)
	lid := mustListener(t, tab, "l", ListenerConfig{})
	a, b := tab.Backend("p", "a"), tab.Backend("p", "b")
	if again := tab.Backend("p", "a"); again != a {
		t.Fatalf("Backend is not idempotent: %d then %d", a, again)
	}
	if other := tab.Backend("q", "a"); other == a {
		t.Fatal("same backend name in two pools got one ID")
	}
	id := mustInsert(t, tab, 0, Flow{Listener: lid})
	for _, step := range []struct {
		to         BackendID
		wantA, wtB int
	}{
		{a, 1, 0}, {b, 0, 1}, {b, 0, 1}, {0, 0, 0}, {a, 1, 0},
	} {
		if !tab.SetBackend(id, step.to) {
			t.Fatalf("SetBackend(%d): got false", step.to)
		}
		if ga, gb := tab.BackendFlows(a), tab.BackendFlows(b); ga != step.wantA || gb != step.wtB {
			t.Errorf("after SetBackend(%d): got a=%d b=%d; want a=%d b=%d", step.to, ga, gb, step.wantA, step.wtB)
		}
	}
	if tab.SetBackend(id, 99) {
		t.Error("SetBackend(99): got true for an unknown backend")
	}
	tab.Remove(id)
	if ga := tab.BackendFlows(a); ga != 0 {
		t.Errorf("after Remove: got a=%d; want 0", ga)
	}
	tab.ConnectError(b)
	tab.ConnectError(b)
	tab.ConnectError(0)
	tab.ConnectError(1000)
	if got := metricValue(t, set, `portico_conntrack_connect_errors_total{pool="p",backend="b"}`); got != "2" {
		t.Errorf("connect errors: got %s; want 2", got)
	}
}

func TestAppendBackendFlows(t *testing.T) {
	tab, _, _ := newTable(t, WithShards(2))
	lid := mustListener(t, tab, "l", ListenerConfig{})
	a, b := tab.Backend("p", "a"), tab.Backend("p", "b")
	want := map[int][]ID{}
	for i := range 600 { // more than two chunks per shard
		be := a
		if i%3 == 0 {
			be = b
		}
		id := mustInsert(t, tab, i%2, Flow{Listener: lid, Backend: be})
		if be == b {
			want[i%2] = append(want[i%2], id)
		}
		if i%5 == 0 {
			tab.Remove(id)
			if be == b {
				want[i%2] = want[i%2][:len(want[i%2])-1]
			}
		}
	}
	for shard := range 2 {
		got := tab.AppendBackendFlows(nil, shard, b)
		if !sameIDs(got, want[shard]) {
			t.Errorf("shard %d: got %d IDs; want %d", shard, len(got), len(want[shard]))
		}
		for _, id := range got {
			if id.Shard() != shard {
				t.Errorf("got ID %#x of shard %d in shard %d", id, id.Shard(), shard)
			}
		}
	}
}

func sameIDs(a, b []ID) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[ID]bool{}
	for _, id := range a {
		m[id] = true
	}
	for _, id := range b {
		if !m[id] {
			return false
		}
	}
	return true
}

func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{
		StateHandshake: "handshake", StateConnecting: "connecting", StateEstablished: "established",
		StateHalfClosed: "half_closed", StateParked: "parked", StateClosing: "closing", State(42): "state(42)",
	} {
		if got := s.String(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
	for r, want := range map[Reason]string{
		ReasonHandshake: "handshake_timeout", ReasonConnect: "connect_timeout",
		ReasonIdle: "idle_timeout", ReasonLifetime: "lifetime", Reason(9): "reason(9)",
	} {
		if got := r.String(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
}

func TestBytesMetrics(t *testing.T) {
	tab, _, set := newTable(t)
	lid := mustListener(t, tab, "l", ListenerConfig{})
	id := mustInsert(t, tab, 1, Flow{Listener: lid})
	tab.AddBytes(id, 1000, 0)
	tab.AddBytes(id, 0, 250)
	if got := metricValue(t, set, `portico_conntrack_bytes_total{direction="in"}`); got != "0" {
		t.Errorf("before the sweep: got %s; want 0", got)
	}
	tab.AppendExpired(nil, 1)
	tab.Remove(id)
	for series, want := range map[string]string{
		`portico_conntrack_bytes_total{direction="in"}`:                             "1000",
		`portico_conntrack_bytes_total{direction="out"}`:                            "250",
		`portico_conntrack_flows_accepted_total{listener="l"}`:                      "1",
		`portico_conntrack_flows_active{listener="l"}`:                              "0",
		`portico_conntrack_flows_expired_total{listener="l",reason="idle_timeout"}`: "0",
	} {
		if got := metricValue(t, set, series); got != want {
			t.Errorf("%s: got %s; want %s", series, got, want)
		}
	}
}
