package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

func TestListenerLimit(t *testing.T) {
	tab, _, set := newTable(t)
	lid := mustListener(t, tab, "db", ListenerConfig{MaxFlows: 3})
	other := mustListener(t, tab, "web", ListenerConfig{MaxFlows: 1})
	var ids []ID
	for i := range 3 {
		ids = append(ids, mustInsert(t, tab, i, Flow{Listener: lid}))
	}
	if _, err := tab.Insert(0, Flow{Listener: lid}); !errors.Is(err, ErrListenerLimit) {
		t.Fatalf("fourth Insert: got %v; want ErrListenerLimit", err)
	}
	mustInsert(t, tab, 0, Flow{Listener: other}) // limits are per listener
	tab.Remove(ids[1])
	mustInsert(t, tab, 0, Flow{Listener: lid})
	if _, err := tab.Insert(0, Flow{Listener: lid}); !errors.Is(err, ErrListenerLimit) {
		t.Fatalf("Insert after one Remove and one Insert: got %v; want ErrListenerLimit", err)
	}
	if got := metricValue(t, set, `portico_conntrack_flows_refused_total{listener="db",reason="listener_limit"}`); got != "2" {
		t.Errorf("refused: got %s; want 2", got)
	}
	if got := metricValue(t, set, `portico_conntrack_flows_active{listener="db"}`); got != "3" {
		t.Errorf("active: got %s; want 3", got)
	}

	// A raised limit applies to the next Insert.
	if err := tab.SetListener(lid, ListenerConfig{MaxFlows: 4}); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, tab, 0, Flow{Listener: lid})
}

func TestClientLimit(t *testing.T) {
	tab, _, set := newTable(t, WithClientPrefixV6(64))
	lid := mustListener(t, tab, "db", ListenerConfig{MaxFlowsPerClient: 2})
	free := mustListener(t, tab, "free", ListenerConfig{})
	ap := netip.MustParseAddrPort

	for _, tc := range []struct {
		name    string
		clients []string // inserted in order on lid
		want    []error
	}{
		{"ipv4", []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.2:1"},
			[]error{nil, nil, ErrClientLimit, nil}},
		{"ipv4-mapped counts as ipv4", []string{"198.51.100.1:1", "[::ffff:198.51.100.1]:2", "198.51.100.1:3"},
			[]error{nil, nil, ErrClientLimit}},
		{"ipv6 by /64", []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:1", "[2001:db8:1:2::3]:1", "[2001:db8:1:3::1]:1"},
			[]error{nil, nil, ErrClientLimit, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []ID
			for i, c := range tc.clients {
				id, err := tab.Insert(i, Flow{Listener: lid, Client: ap(c)})
				if err != tc.want[i] {
					t.Fatalf("Insert %s: got %v; want %v", c, err, tc.want[i])
				}
				if err == nil {
					ids = append(ids, id)
				}
			}
			for _, id := range ids {
				tab.Remove(id)
			}
			for _, c := range tc.clients {
				if n := tab.ClientFlows(lid, ap(c).Addr()); n != 0 {
					t.Errorf("%s: got %d flows after Remove; want 0", c, n)
				}
			}
		})
	}

	// Limits and counts are per listener: the same client is free on
	// another listener, which keeps no counts.
	c := ap("203.0.113.9:5")
	mustInsert(t, tab, 0, Flow{Listener: lid, Client: c})
	mustInsert(t, tab, 0, Flow{Listener: lid, Client: c})
	for range 5 {
		mustInsert(t, tab, 0, Flow{Listener: free, Client: c})
	}
	if n := tab.ClientFlows(lid, c.Addr()); n != 2 {
		t.Errorf("ClientFlows(db): got %d; want 2", n)
	}
	if n := tab.ClientFlows(free, c.Addr()); n != 0 {
		t.Errorf("ClientFlows(free): got %d; want 0 (not counted)", n)
	}
	// A flow without a client address is not limited.
	mustInsert(t, tab, 0, Flow{Listener: lid})
	mustInsert(t, tab, 0, Flow{Listener: lid})
	mustInsert(t, tab, 0, Flow{Listener: lid})
	if got := metricValue(t, set, `portico_conntrack_flows_refused_total{listener="db",reason="client_limit"}`); got != "3" {
		t.Errorf("refused: got %s; want 3", got)
	}
}

// TestClientLimitToggled pins that turning a per-client limit on or off
// while flows live leaves the counts right: a flow releases what it took.
func TestClientLimitToggled(t *testing.T) {
	tab, _, _ := newTable(t)
	lid := mustListener(t, tab, "db", ListenerConfig{})
	c := netip.MustParseAddrPort("192.0.2.7:9")
	before := mustInsert(t, tab, 0, Flow{Listener: lid, Client: c})
	if err := tab.SetListener(lid, ListenerConfig{MaxFlowsPerClient: 1}); err != nil {
		t.Fatal(err)
	}
	after := mustInsert(t, tab, 0, Flow{Listener: lid, Client: c})
	if _, err := tab.Insert(0, Flow{Listener: lid, Client: c}); err != ErrClientLimit {
		t.Fatalf("got %v; want ErrClientLimit", err)
	}
	tab.Remove(before) // was never counted: must not release
	if n := tab.ClientFlows(lid, c.Addr()); n != 1 {
		t.Fatalf("got %d; want 1", n)
	}
	if err := tab.SetListener(lid, ListenerConfig{}); err != nil {
		t.Fatal(err)
	}
	tab.Remove(after) // was counted: releases
	if n := tab.ClientFlows(lid, c.Addr()); n != 0 {
		t.Fatalf("got %d; want 0", n)
	}
}

// TestLimitsConcurrent races inserts from many goroutines against both
// limits: exactly the limit succeeds, every other attempt is refused and
// counted, and nothing is left after the removes.
func TestLimitsConcurrent(t *testing.T) {
	const (
		workers  = 8
		attempts = 200
		maxFlows = 50
		perIP    = 3
		ips      = 10 // 10 × 3 = 30 flows possible by client, under maxFlows
	)
	tab, _, set := newTable(t, WithShards(workers))
	lid := mustListener(t, tab, "l", ListenerConfig{MaxFlows: maxFlows})
	cid := mustListener(t, tab, "c", ListenerConfig{MaxFlowsPerClient: perIP})

	var okL, okC atomic.Int64
	ids := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range attempts {
				if id, err := tab.Insert(w, Flow{Listener: lid}); err == nil {
					okL.Add(1)
					ids[w] = append(ids[w], id)
				} else if err != ErrListenerLimit {
					t.Errorf("got %v", err)
				}
				c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % ips)}), uint16(w))
				if id, err := tab.Insert(w, Flow{Listener: cid, Client: c}); err == nil {
					okC.Add(1)
					ids[w] = append(ids[w], id)
				} else if err != ErrClientLimit {
					t.Errorf("got %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got := okL.Load(); got != maxFlows {
		t.Errorf("listener limit: got %d inserted; want %d", got, maxFlows)
	}
	if got := okC.Load(); got != ips*perIP {
		t.Errorf("client limit: got %d inserted; want %d", got, ips*perIP)
	}
	for series, want := range map[string]int{
		`portico_conntrack_flows_refused_total{listener="l",reason="listener_limit"}`: workers*attempts - maxFlows,
		`portico_conntrack_flows_refused_total{listener="c",reason="client_limit"}`:   workers*attempts - ips*perIP,
		`portico_conntrack_flows_accepted_total{listener="l"}`:                        maxFlows,
	} {
		if got := metricValue(t, set, series); got != fmt.Sprint(want) {
			t.Errorf("%s: got %s; want %d", series, got, want)
		}
	}
	for w := range workers {
		wg.Go(func() {
			for _, id := range ids[w] {
				if _, ok := tab.Remove(id); !ok {
					t.Errorf("Remove(%#x): got false", id)
				}
			}
		})
	}
	wg.Wait()
	if n, nl, nc := tab.Len(), tab.ListenerFlows(lid), tab.ListenerFlows(cid); n != 0 || nl != 0 || nc != 0 {
		t.Errorf("after removes: got Len %d, listeners %d %d; want 0", n, nl, nc)
	}
	for i := range ips {
		if n := tab.ClientFlows(cid, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})); n != 0 {
			t.Errorf("client %d: got %d flows; want 0", i, n)
		}
	}
}

// TestSetClient covers the address a PROXY header reveals after accept: the
// flow moves from the balancer's count to the client's, or is refused with
// the balancer's count kept.
func TestSetClient(t *testing.T) {
	tab, _, set := newTable(t)
	lid := mustListener(t, tab, "db", ListenerConfig{MaxFlowsPerClient: 2})
	ap := netip.MustParseAddrPort
	lb, c1, c2 := ap("10.0.0.1:40000"), ap("192.0.2.1:5000"), ap("[2001:db8::1]:6000")
	count := func(a netip.AddrPort) int { return tab.ClientFlows(lid, a.Addr()) }

	a := mustInsert(t, tab, 0, Flow{Listener: lid, Client: lb})
	b := mustInsert(t, tab, 0, Flow{Listener: lid, Client: lb})
	if err := tab.SetClient(a, c1); err != nil {
		t.Fatal(err)
	}
	if got, _ := tab.Get(a); got.Client != c1 || count(lb) != 1 || count(c1) != 1 {
		t.Fatalf("got client %s, counts lb %d c1 %d; want %s, 1, 1", got.Client, count(lb), count(c1), c1)
	}
	// The balancer has room again.
	c := mustInsert(t, tab, 0, Flow{Listener: lid, Client: lb})
	for _, id := range []ID{b, c} {
		if err := tab.SetClient(id, c1); id == b && err != nil || id == c && err != ErrClientLimit {
			t.Fatalf("SetClient(%#x, c1): got %v", id, err)
		}
	}
	if got, _ := tab.Get(c); got.Client != lb || count(lb) != 1 || count(c1) != 2 {
		t.Fatalf("refused flow: got client %s, counts lb %d c1 %d; want unchanged", got.Client, count(lb), count(c1))
	}
	if got := metricValue(t, set, `portico_conntrack_flows_refused_total{listener="db",reason="client_limit"}`); got != "1" {
		t.Errorf("refused: got %s; want 1", got)
	}
	// The same client again, another port: no change of counts.
	if err := tab.SetClient(a, ap("192.0.2.1:5001")); err != nil || count(c1) != 2 {
		t.Fatalf("same client: got %v, count %d; want nil, 2", err, count(c1))
	}
	// No address: uncounted; an IPv6 client: counted.
	if err := tab.SetClient(a, netip.AddrPort{}); err != nil || count(c1) != 1 {
		t.Fatalf("no address: got %v, count %d; want nil, 1", err, count(c1))
	}
	if err := tab.SetClient(a, c2); err != nil || count(c2) != 1 {
		t.Fatalf("ipv6: got %v, count %d; want nil, 1", err, count(c2))
	}
	for _, id := range []ID{a, b, c} {
		tab.Remove(id)
	}
	for _, x := range []netip.AddrPort{lb, c1, c2} {
		if n := count(x); n != 0 {
			t.Errorf("%s: got %d after Remove; want 0", x, n)
		}
	}
	if err := tab.SetClient(a, c1); err != ErrUnknownFlow {
		t.Errorf("removed flow: got %v; want ErrUnknownFlow", err)
	}
}
