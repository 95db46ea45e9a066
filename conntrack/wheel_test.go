package conntrack

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const tick = 100 * time.Millisecond

// step is one action of a wheel scenario, at an offset from t0.
type step struct {
	at    time.Duration
	touch bool   // Touch the flow (after a sweep moved the shard's clock)
	state *State // SetState
	want  *Reason
}

func ptr[T any](v T) *T { return &v }

// TestWheelExpiry runs each scenario on one flow, sweeping every tick, and
// checks the tick each expiry comes at and its reason.
func TestWheelExpiry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   ListenerConfig
		first State
		steps []step
	}{
		{
			name:  "idle at its deadline",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: time.Second}},
			first: StateEstablished,
			steps: []step{{at: time.Second, want: ptr(ReasonIdle)}},
		},
		{
			name:  "idle deadline between ticks expires at the next tick",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: 1050 * time.Millisecond}},
			first: StateEstablished,
			steps: []step{{at: 1100 * time.Millisecond, want: ptr(ReasonIdle)}},
		},
		{
			name:  "touch pushes idle back",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: time.Second}},
			first: StateEstablished,
			steps: []step{
				{at: 600 * time.Millisecond, touch: true},
				{at: 1500 * time.Millisecond, touch: true},
				{at: 2500 * time.Millisecond, want: ptr(ReasonIdle)},
			},
		},
		{
			name:  "idle longer than a turn",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: 10 * time.Second}},
			first: StateEstablished,
			steps: []step{
				{at: 4 * time.Second, touch: true},
				{at: 14 * time.Second, want: ptr(ReasonIdle)},
			},
		},
		{
			name:  "handshake",
			cfg:   ListenerConfig{Timeouts: Timeouts{Handshake: 5 * time.Second, Idle: time.Minute}},
			steps: []step{{at: 5 * time.Second, want: ptr(ReasonHandshake)}},
		},
		{
			name:  "handshake not reset by activity",
			cfg:   ListenerConfig{Timeouts: Timeouts{Handshake: 2 * time.Second, Idle: time.Minute}},
			steps: []step{{at: time.Second, touch: true}, {at: 2 * time.Second, want: ptr(ReasonHandshake)}},
		},
		{
			name:  "handshake without its timeout is idle",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: 3 * time.Second}},
			steps: []step{{at: 3 * time.Second, want: ptr(ReasonIdle)}},
		},
		{
			name: "connect after handshake",
			cfg:  ListenerConfig{Timeouts: Timeouts{Handshake: 5 * time.Second, Connect: 3 * time.Second, Idle: time.Minute}},
			steps: []step{
				{at: 4 * time.Second, state: ptr(StateConnecting)},
				{at: 7 * time.Second, want: ptr(ReasonConnect)},
			},
		},
		{
			name:  "established leaves the connect timeout",
			cfg:   ListenerConfig{Timeouts: Timeouts{Connect: time.Second, Idle: 4 * time.Second}},
			first: StateConnecting,
			steps: []step{
				{at: 900 * time.Millisecond, state: ptr(StateEstablished)},
				{at: 4900 * time.Millisecond, want: ptr(ReasonIdle)},
			},
		},
		{
			name:  "a shorter state deadline refiles the flow sooner",
			cfg:   ListenerConfig{Timeouts: Timeouts{Connect: time.Second, Idle: time.Hour}},
			first: StateEstablished,
			steps: []step{
				{at: 2 * time.Second, state: ptr(StateConnecting)},
				{at: 3 * time.Second, want: ptr(ReasonConnect)},
			},
		},
		{
			name:  "lifetime beats activity",
			cfg:   ListenerConfig{Timeouts: Timeouts{Idle: time.Second, Lifetime: 3 * time.Second}},
			first: StateEstablished,
			steps: []step{
				{at: 500 * time.Millisecond, touch: true},
				{at: 1000 * time.Millisecond, touch: true},
				{at: 1500 * time.Millisecond, touch: true},
				{at: 2000 * time.Millisecond, touch: true},
				{at: 2500 * time.Millisecond, touch: true},
				{at: 3000 * time.Millisecond, want: ptr(ReasonLifetime)},
			},
		},
		{
			name:  "no timeouts: never",
			first: StateEstablished,
			steps: []step{{at: 20 * time.Second}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, clk, _ := newTable(t, WithTick(tick), WithWheelSlots(16)) // a turn is 1.6s
			lid := mustListener(t, tab, "l", tc.cfg)
			id := mustInsert(t, tab, 0, Flow{Listener: lid, State: tc.first})
			var exp []Expired
			for _, st := range tc.steps {
				for clk.Since0() < st.at {
					clk.Advance(tick)
					exp = tab.AppendExpired(exp[:0], 0)
					if len(exp) > 0 && (st.want == nil || clk.Since0() != st.at) {
						t.Fatalf("at %s: got %+v; want nothing until %s", clk.Since0(), exp, st.at)
					}
				}
				if st.touch {
					tab.Touch(id)
				}
				if st.state != nil {
					tab.SetState(id, *st.state)
				}
				if st.want != nil {
					if len(exp) != 1 || exp[0].ID != id || exp[0].Reason != *st.want {
						t.Fatalf("at %s: got %+v; want %#x expired by %s", st.at, exp, id, *st.want)
					}
				}
			}
		})
	}
}

// TestWheelExpiredOnce pins that an expired flow is returned once, stays
// counted until Remove, and is not filed again by SetState.
func TestWheelExpiredOnce(t *testing.T) {
	tab, clk, set := newTable(t, WithTick(tick), WithWheelSlots(16))
	lid := mustListener(t, tab, "l", ListenerConfig{Timeouts: Timeouts{Idle: time.Second, Connect: time.Second}})
	id := mustInsert(t, tab, 0, Flow{Listener: lid, State: StateEstablished})
	clk.Advance(time.Second)
	if got := tab.AppendExpired(nil, 0); len(got) != 1 || got[0].ID != id {
		t.Fatalf("got %+v; want %#x", got, id)
	}
	tab.SetState(id, StateConnecting)
	for range 40 {
		clk.Advance(tick)
		if got := tab.AppendExpired(nil, 0); len(got) != 0 {
			t.Fatalf("got %+v again", got)
		}
	}
	if n := tab.Len(); n != 1 {
		t.Fatalf("got Len %d; want the expired flow kept until Remove", n)
	}
	if _, ok := tab.Remove(id); !ok {
		t.Fatal("Remove of an expired flow: got false")
	}
	if got := metricValue(t, set, `portico_conntrack_flows_expired_total{listener="l",reason="idle_timeout"}`); got != "1" {
		t.Errorf("expired metric: got %s; want 1", got)
	}
}

// TestWheelLateSweep pins that a sweep after a long pause catches up: one
// call returns every flow due meanwhile, and none that is not.
func TestWheelLateSweep(t *testing.T) {
	tab, clk, _ := newTable(t, WithTick(tick), WithWheelSlots(16))
	short := mustListener(t, tab, "short", ListenerConfig{Timeouts: Timeouts{Idle: 500 * time.Millisecond}})
	long := mustListener(t, tab, "long", ListenerConfig{Timeouts: Timeouts{Idle: time.Hour}})
	var want []ID
	for i := range 1000 {
		clk.Advance(time.Millisecond * 7)
		id := mustInsert(t, tab, 0, Flow{Listener: short, State: StateEstablished})
		want = append(want, id)
		mustInsert(t, tab, 0, Flow{Listener: long, State: StateEstablished})
		_ = i
	}
	clk.Advance(10 * time.Minute)
	got := tab.AppendExpired(nil, 0)
	if ids := expiredIDs(got); !sameIDs(ids, want) {
		t.Fatalf("got %d expired; want the %d short ones", len(got), len(want))
	}
	if got := tab.AppendExpired(nil, 0); len(got) != 0 {
		t.Fatalf("second sweep: got %d; want 0", len(got))
	}
}

// TestSetListenerTimeouts pins that shortened timeouts reach live flows
// within one turn of the wheel.
func TestSetListenerTimeouts(t *testing.T) {
	tab, clk, _ := newTable(t, WithTick(tick), WithWheelSlots(16))
	lid := mustListener(t, tab, "l", ListenerConfig{Timeouts: Timeouts{Idle: time.Hour}})
	id := mustInsert(t, tab, 0, Flow{Listener: lid, State: StateEstablished})
	for range 50 { // three turns: the sweeps file the flow again
		clk.Advance(tick)
		tab.AppendExpired(nil, 0)
	}
	if err := tab.SetListener(lid, ListenerConfig{Timeouts: Timeouts{Idle: 500 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	for range 16 {
		clk.Advance(tick)
		if got := tab.AppendExpired(nil, 0); len(got) == 1 && got[0].ID == id {
			return
		}
	}
	t.Fatal("the shortened idle timeout did not expire the flow within a turn")
}

func expiredIDs(es []Expired) []ID {
	ids := make([]ID, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

// TestWheelModel runs random inserts, touches, state changes, removes and
// clock moves on two shards against a model of the deadlines, and checks
// after every sweep at time now: every flow whose deadline is at or before
// now's tick has been returned, and no flow whose deadline is after now
// has.
func TestWheelModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tab, clk, _ := newTable(t, WithTick(tick), WithWheelSlots(16), WithShards(2))
		cfgs := []ListenerConfig{
			{Timeouts: Timeouts{Idle: 700 * time.Millisecond}},
			{Timeouts: Timeouts{Handshake: 300 * time.Millisecond, Connect: 2 * time.Second, Idle: 5 * time.Second}},
			{Timeouts: Timeouts{Idle: time.Second, Lifetime: 4 * time.Second}},
			{Timeouts: Timeouts{Idle: 30 * time.Second}},
		}
		var lids []ListenerID
		for i, c := range cfgs {
			lids = append(lids, mustListener(t, tab, string(rune('a'+i)), c))
		}
		type flow struct {
			id                 ID
			cfg                ListenerConfig
			state              State
			start, since, last int64
			expired            bool
		}
		shardNow := [2]int64{clk.Now().UnixNano(), clk.Now().UnixNano()}
		var flows []*flow
		deadline := func(f *flow) int64 {
			e := entry{state: f.state, start: f.start, since: f.since}
			e.last.Store(f.last)
			at, _ := deadline(&e, &f.cfg)
			return at
		}
		for range 3000 {
			switch op := rng.IntN(10); {
			case op < 3:
				sh, li := rng.IntN(2), rng.IntN(len(cfgs))
				st := State(rng.IntN(int(numStates)))
				id := mustInsert(t, tab, sh, Flow{Listener: lids[li], State: st})
				now := clk.Now().UnixNano()
				shardNow[sh] = now
				flows = append(flows, &flow{id: id, cfg: cfgs[li], state: st, start: now, since: now, last: now})
			case op < 5 && len(flows) > 0:
				f := flows[rng.IntN(len(flows))]
				if !f.expired {
					tab.Touch(f.id)
					f.last = shardNow[f.id.Shard()]
				}
			case op < 6 && len(flows) > 0:
				f := flows[rng.IntN(len(flows))]
				if !f.expired {
					f.state = State(rng.IntN(int(numStates)))
					tab.SetState(f.id, f.state)
					now := clk.Now().UnixNano()
					shardNow[f.id.Shard()] = now
					f.since = now
				}
			case op < 7 && len(flows) > 0:
				i := rng.IntN(len(flows))
				tab.Remove(flows[i].id)
				flows = slices.Delete(flows, i, i+1)
			default:
				clk.Advance(time.Duration(rng.Int64N(int64(3 * tick))))
				now := clk.Now().UnixNano()
				for sh := range 2 {
					shardNow[sh] = now
					for _, e := range tab.AppendExpired(nil, sh) {
						i := slices.IndexFunc(flows, func(f *flow) bool { return f.id == e.ID })
						if i < 0 || flows[i].expired {
							t.Fatalf("seed %d: got %#x expired; want a live flow returned once", seed, e.ID)
						}
						if at := deadline(flows[i]); at > now {
							t.Fatalf("seed %d: %#x expired %s before its deadline", seed, e.ID, time.Duration(at-now))
						}
						flows[i].expired = true
					}
				}
				floor := now / int64(tick) * int64(tick)
				for _, f := range flows {
					if at := deadline(f); !f.expired && at <= floor {
						t.Fatalf("seed %d: %#x (state %s) not expired %s after its deadline", seed, f.id, f.state, time.Duration(now-at))
					}
				}
			}
		}
	}
}
