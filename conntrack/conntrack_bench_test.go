package conntrack

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchTable is a table with one shard per parallel goroutine, as with one
// per event loop.
func benchTable(b *testing.B, cfg ListenerConfig) (*Table, ListenerID, *fakeClock) {
	b.Helper()
	tab, clk, _ := newTable(b, WithShards(runtime.GOMAXPROCS(0)))
	return tab, mustListener(b, tab, "l", cfg), clk
}

// BenchmarkInsertRemove is the per-connection cost: Insert at accept,
// Remove at close, each goroutine in its own shard. Run with:
//
//	go test ./conntrack -run '^$' -bench InsertRemove -benchmem
func BenchmarkInsertRemove(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  ListenerConfig
	}{
		{"no-limits", ListenerConfig{}},
		{"limits", ListenerConfig{MaxFlows: 1 << 30, MaxFlowsPerClient: 1 << 20, Timeouts: Timeouts{Idle: time.Minute}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tab, lid, _ := benchTable(b, bc.cfg)
			be := tab.Backend("p", "b")
			var next atomic.Int32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				shard := int(next.Add(1) - 1)
				// Distinct clients, as on a busy listener; a few live flows
				// per shard so the wheel lists are not empty.
				c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(shard), 1}), 1000)
				for range 16 {
					mustInsert(b, tab, shard, Flow{Listener: lid, Client: c, Backend: be})
				}
				for i := 0; pb.Next(); i++ {
					c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(shard), byte(i)}), 2000)
					id, err := tab.Insert(shard, Flow{Listener: lid, Client: c, Backend: be})
					if err != nil {
						b.Error(err)
						return
					}
					tab.Remove(id)
				}
			})
		})
	}
}

// BenchmarkAddBytes is the per-read cost on the event loop.
func BenchmarkAddBytes(b *testing.B) {
	tab, lid, _ := benchTable(b, ListenerConfig{Timeouts: Timeouts{Idle: time.Minute}})
	var next atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		shard := int(next.Add(1) - 1)
		id := mustInsert(b, tab, shard, Flow{Listener: lid, State: StateEstablished})
		for pb.Next() {
			tab.AddBytes(id, 16384, 0)
		}
	})
}

// BenchmarkTouch is activity without bytes.
func BenchmarkTouch(b *testing.B) {
	tab, lid, _ := benchTable(b, ListenerConfig{Timeouts: Timeouts{Idle: time.Minute}})
	var next atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := mustInsert(b, tab, int(next.Add(1)-1), Flow{Listener: lid})
		for pb.Next() {
			tab.Touch(id)
		}
	})
}

// BenchmarkSweep sweeps one shard holding n flows, with the default
// wheel (1024 buckets of 100ms):
//
//   - expire-all: one sweep after every flow has gone idle returns them
//     all; the sweep alone is timed. Run it with -benchtime=100x: each
//     iteration refills the shard untimed.
//   - tick: the steady state of a busy table, one sweep per 100ms tick;
//     each flow has a 2s idle timeout and is touched every second, so a
//     sweep finds about a twentieth of the flows filed under its tick,
//     none expired, and files them again. The touches are not timed.
func BenchmarkSweep(b *testing.B) {
	const n = 100_000
	b.Run(fmt.Sprintf("idle=%d/expire-all", n), func(b *testing.B) {
		tab, clk, _ := newTable(b, WithShards(1))
		lid := mustListener(b, tab, "l", ListenerConfig{Timeouts: Timeouts{Idle: time.Minute}})
		for i := range n {
			if i%(n/100) == 0 {
				clk.Advance(tick)
			}
			mustInsert(b, tab, 0, Flow{Listener: lid, State: StateEstablished})
		}
		exp := make([]Expired, 0, n)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			clk.Advance(time.Hour)
			b.StartTimer()
			exp = tab.AppendExpired(exp[:0], 0)
			b.StopTimer()
			if len(exp) != n {
				b.Fatalf("got %d expired; want %d", len(exp), n)
			}
			for _, e := range exp {
				tab.Remove(e.ID)
				mustInsert(b, tab, 0, Flow{Listener: lid, State: StateEstablished})
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
	})
	b.Run(fmt.Sprintf("idle=%d/tick", n), func(b *testing.B) {
		tab, clk, _ := newTable(b, WithShards(1))
		lid := mustListener(b, tab, "l", ListenerConfig{Timeouts: Timeouts{Idle: 2 * time.Second}})
		ids := make([]ID, n)
		for i := range ids {
			ids[i] = mustInsert(b, tab, 0, Flow{Listener: lid, State: StateEstablished})
		}
		step := func(i int) {
			clk.Advance(tick)
			if exp := tab.AppendExpired(nil, 0); len(exp) != 0 {
				b.Fatalf("got %d expired; want 0", len(exp))
			}
			b.StopTimer()
			for j := i % 10; j < n; j += 10 {
				tab.Touch(ids[j])
			}
			b.StartTimer()
		}
		for i := range 100 { // reach the steady state
			step(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			step(i)
		}
	})
}

// BenchmarkSnapshot copies the 100 oldest of 100k flows in 8 shards.
func BenchmarkSnapshot(b *testing.B) {
	tab, _, _ := newTable(b, WithShards(8))
	lid := mustListener(b, tab, "l", ListenerConfig{})
	for i := range 100_000 {
		mustInsert(b, tab, i%8, Flow{Listener: lid})
	}
	b.ReportAllocs()
	for b.Loop() {
		if s := tab.Snapshot(100); len(s.Flows) != 100 {
			b.Fatalf("got %d flows", len(s.Flows))
		}
	}
}

// BenchmarkGC measures what a million live flows cost the garbage collector:
// the time of a full collection with the table empty, full, and, for
// comparison, with the same flows as a map of pointers to structs holding
// the names and addresses, the obvious design. The table's entries hold no
// pointers, so the collector does not scan them.
func BenchmarkGC(b *testing.B) {
	const n = 1_000_000
	b.Run("pointer-map", func(b *testing.B) {
		type flow struct {
			listener, pool, backend string
			client                  netip.AddrPort
			start, last             time.Time
			in, out                 atomic.Uint64
		}
		m := make(map[ID]*flow, n)
		for i := range n {
			m[ID(i)] = &flow{listener: "l", pool: "p", backend: "b",
				client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)}
		}
		runtime.GC()
		b.ResetTimer()
		for b.Loop() {
			runtime.GC()
		}
		runtime.KeepAlive(m)
	})
	for _, n := range []int{0, n} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tab, _, _ := newTable(b, WithShards(8))
			lid := mustListener(b, tab, "l", ListenerConfig{Timeouts: Timeouts{Idle: time.Minute}})
			for i := range n {
				c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
				mustInsert(b, tab, i%8, Flow{Listener: lid, Client: c})
			}
			runtime.GC()
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
			}
			runtime.KeepAlive(tab)
		})
	}
}
