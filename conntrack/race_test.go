package conntrack

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentOwners runs the table as the proxy does, under -race: one
// goroutine per shard inserts, touches, updates, removes and sweeps its own
// flows and closes what its sweeps return; the clock moves on its own; an
// admin goroutine snapshots, lists a backend's flows and reads the counts.
// When every owner has removed its flows, every count is back to zero.
func TestConcurrentOwners(t *testing.T) {
	const (
		owners = 6
		ops    = 4000
	)
	tab, clk, _ := newTable(t, WithShards(owners), WithTick(time.Millisecond), WithWheelSlots(64))
	lid := mustListener(t, tab, "l", ListenerConfig{
		MaxFlows:          owners * 150,
		MaxFlowsPerClient: 40,
		Timeouts:          Timeouts{Handshake: 5 * time.Millisecond, Connect: 10 * time.Millisecond, Idle: 20 * time.Millisecond},
	})
	var bes []BackendID
	for _, n := range []string{"a", "b", "c"} {
		bes = append(bes, tab.Backend("p", n))
	}

	var done atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() { // the clock
		for done.Load() < owners {
			clk.Advance(time.Millisecond)
		}
	})
	wg.Go(func() { // the admin API
		var buf []ID
		for done.Load() < owners {
			s := tab.Snapshot(20)
			if len(s.Flows) > 20 || s.Active < 0 {
				t.Errorf("got %d flows, %d active", len(s.Flows), s.Active)
			}
			buf = tab.AppendBackendFlows(buf[:0], int(clk.ns.Load())%owners, bes[0])
			_ = tab.Len() + tab.BackendFlows(bes[1]) + tab.ListenerFlows(lid)
		}
	})
	for o := range owners {
		wg.Go(func() {
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(o), 1))
			live := map[ID]bool{}
			var exp []Expired
			for range ops {
				switch r := rng.IntN(10); {
				case r < 3:
					c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(o), byte(rng.IntN(8))}), 1)
					id, err := tab.Insert(o, Flow{Listener: lid, Client: c})
					switch err {
					case nil:
						live[id] = true
					case ErrListenerLimit, ErrClientLimit:
					default:
						t.Errorf("Insert: %v", err)
						return
					}
				case r < 7:
					for id := range live { // one at random, as maps go
						tab.AddBytes(id, 10, 20)
						tab.Touch(id)
						if r == 4 {
							tab.SetBackend(id, bes[rng.IntN(len(bes))])
							tab.SetState(id, State(rng.IntN(int(numStates))))
						}
						if r == 5 { // a PROXY header names the client
							c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(o), byte(rng.IntN(8))}), 2)
							if err := tab.SetClient(id, c); err != nil && err != ErrClientLimit {
								t.Errorf("SetClient: %v", err)
							}
						}
						break
					}
				case r < 8:
					for id := range live {
						if _, ok := tab.Remove(id); !ok {
							t.Errorf("Remove(%#x): got false for a live flow", id)
						}
						delete(live, id)
						break
					}
				default:
					exp = tab.AppendExpired(exp[:0], o)
					for _, e := range exp {
						if !live[e.ID] || e.ID.Shard() != o {
							t.Errorf("sweep of shard %d returned %#x, not a live flow of it", o, e.ID)
						}
						tab.Remove(e.ID)
						delete(live, e.ID)
					}
				}
			}
			for id := range live {
				tab.Remove(id)
			}
		})
	}
	wg.Wait()

	if n := tab.Len(); n != 0 {
		t.Errorf("Len: got %d; want 0", n)
	}
	if n := tab.ListenerFlows(lid); n != 0 {
		t.Errorf("ListenerFlows: got %d; want 0", n)
	}
	for _, b := range bes {
		if n := tab.BackendFlows(b); n != 0 {
			t.Errorf("BackendFlows(%d): got %d; want 0", b, n)
		}
	}
	for o := range owners {
		for i := range 8 {
			if n := tab.ClientFlows(lid, netip.AddrFrom4([4]byte{10, 0, byte(o), byte(i)})); n != 0 {
				t.Errorf("client 10.0.%d.%d: got %d flows; want 0", o, i, n)
			}
		}
	}
}

// TestSweepWhileListenersAdded pins a race: a sweep must see the listener
// of every flow in the shard, even one added after the sweep started.
func TestSweepWhileListenersAdded(t *testing.T) {
	tab, clk, _ := newTable(t, WithShards(1), WithTick(time.Millisecond), WithWheelSlots(16))
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !done.Load() {
			clk.Advance(time.Millisecond)
			for _, e := range tab.AppendExpired(nil, 0) {
				tab.Remove(e.ID)
			}
		}
	})
	for i := range 300 {
		lid := mustListener(t, tab, fmt.Sprint("l", i), ListenerConfig{Timeouts: Timeouts{Idle: 1}})
		mustInsert(t, tab, 0, Flow{Listener: lid})
	}
	done.Store(true)
	wg.Wait()
}
