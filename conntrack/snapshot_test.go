package conntrack

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSnapshot(t *testing.T) {
	tab, clk, _ := newTable(t, WithShards(3))
	a := mustListener(t, tab, "a", ListenerConfig{MaxFlows: 1000})
	b := mustListener(t, tab, "b", ListenerConfig{})
	be := tab.Backend("pool", "be-1")
	var all []ID
	for i := range 700 {
		if i%7 == 0 {
			clk.Advance(time.Millisecond) // several flows share a start time
		}
		lid := a
		if i%2 == 1 {
			lid = b
		}
		id := mustInsert(t, tab, i%3, Flow{Listener: lid, Backend: be, Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), uint16(i))})
		all = append(all, id)
	}
	for _, id := range all[:100] {
		tab.Remove(id)
	}
	// The live flows, oldest first: by start, then ID.
	live := slices.Clone(all[100:])
	slices.SortStableFunc(live, func(x, y ID) int {
		fx, _ := tab.Get(x)
		fy, _ := tab.Get(y)
		if c := fx.Start.Compare(fy.Start); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	tab.AddBytes(live[0], 5, 6)
	c0, _ := tab.Get(live[0])

	for _, limit := range []int{-1, 0, 1, 10, 599, 600, 10000} {
		s := tab.Snapshot(limit)
		if s.Active != 600 {
			t.Errorf("limit %d: got Active %d; want 600", limit, s.Active)
		}
		want := min(max(limit, 0), 600)
		if len(s.Flows) != want {
			t.Fatalf("limit %d: got %d flows; want %d", limit, len(s.Flows), want)
		}
		for i, f := range s.Flows {
			if f.ID != live[i] {
				t.Fatalf("limit %d: flow %d is %#x; want %#x", limit, i, f.ID, live[i])
			}
			if got, _ := tab.Get(f.ID); !sameInfo(got, f) {
				t.Fatalf("limit %d: got %+v; want %+v", limit, f, got)
			}
		}
	}

	s := tab.Snapshot(1)
	if f := s.Flows[0]; f.ID != live[0] || f.BytesIn != 5 || f.BytesOut != 6 || f.Backend != "be-1" || f.Pool != "pool" {
		t.Errorf("got %+v; want the oldest flow with its bytes and backend", f)
	}
	wantL := []ListenerStats{{Name: "a", Active: 300, Accepted: 350}, {Name: "b", Active: 300, Accepted: 350}}
	if !slices.Equal(s.Listeners, wantL) {
		t.Errorf("got listeners %+v; want %+v", s.Listeners, wantL)
	}
	if wantB := []BackendStats{{Pool: "pool", Name: "be-1", Active: 600}}; !slices.Equal(s.Backends, wantB) {
		t.Errorf("got backends %+v; want %+v", s.Backends, wantB)
	}
	js, err := json.Marshal(s.Flows[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state":"handshake"`, `"client":"` + c0.Client.String() + `"`, `"listener":"a"`, `"bytes_in":5`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON %s lacks %s", js, want)
		}
	}
}

// TestSnapshotConcurrent takes snapshots while owners insert, update and
// remove flows. Each snapshot must be sorted and bounded, hold no ID twice,
// and show every entry whole: the fields Insert sets together (listener and
// client port) and SetBackend's pool and name agree.
func TestSnapshotConcurrent(t *testing.T) {
	const owners = 4
	tab, _, _ := newTable(t, WithShards(owners))
	var lids []ListenerID
	for i := range 3 {
		lids = append(lids, mustListener(t, tab, fmt.Sprint("l", i), ListenerConfig{}))
	}
	var bes []BackendID
	for i := range 3 {
		bes = append(bes, tab.Backend(fmt.Sprint("p", i), fmt.Sprint("p", i, "-b")))
	}
	var done atomic.Int32
	var wg sync.WaitGroup
	for o := range owners {
		wg.Go(func() {
			defer done.Add(1)
			var ids []ID
			for i := 0; i < 3000 || len(ids) > 0; i++ {
				if i >= 3000 || len(ids) > 200 {
					tab.Remove(ids[0])
					ids = ids[1:]
					continue
				}
				l := i % len(lids)
				id, err := tab.Insert(o, Flow{Listener: lids[l], Client: netip.AddrPortFrom(netip.IPv6Loopback(), uint16(l))})
				if err != nil {
					t.Error(err)
					return
				}
				tab.SetBackend(id, bes[i%len(bes)])
				tab.SetState(id, StateEstablished)
				tab.AddBytes(id, i, i)
				ids = append(ids, id)
			}
		})
	}
	for snaps := 0; snaps < 10 || done.Load() < owners; snaps++ {
		s := tab.Snapshot(50)
		if len(s.Flows) > 50 {
			t.Fatalf("got %d flows; want at most 50", len(s.Flows))
		}
		seen := map[ID]bool{}
		for i, f := range s.Flows {
			if seen[f.ID] {
				t.Fatalf("got %#x twice", f.ID)
			}
			seen[f.ID] = true
			if i > 0 && f.Start.Before(s.Flows[i-1].Start) {
				t.Fatalf("flow %d starts before flow %d", i, i-1)
			}
			if want := fmt.Sprint("l", f.Client.Port()); f.Listener != want {
				t.Fatalf("got listener %q for client %s; want %q", f.Listener, f.Client, want)
			}
			if f.Backend != "" && f.Backend != f.Pool+"-b" {
				t.Fatalf("got backend %q in pool %q", f.Backend, f.Pool)
			}
		}
	}
	wg.Wait()
	if s := tab.Snapshot(10); s.Active != 0 || len(s.Flows) != 0 {
		t.Errorf("after all removes: got %d active, %d flows", s.Active, len(s.Flows))
	}
}
