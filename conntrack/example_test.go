package conntrack_test

import (
	"fmt"
	"net/netip"
	"time"

	"portico/conntrack"
)

// The life of one flow on event loop 0: accepted, routed, counted, swept,
// closed.
func Example() {
	now := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	tab, err := conntrack.New(conntrack.WithShards(1), conntrack.WithClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	db, err := tab.AddListener("db", conntrack.ListenerConfig{
		MaxFlowsPerClient: 1,
		Timeouts:          conntrack.Timeouts{Connect: 5 * time.Second, Idle: time.Minute},
	})
	if err != nil {
		panic(err)
	}
	pg1 := tab.Backend("pg", "pg-1") // once per backend, not per flow

	client := netip.MustParseAddrPort("192.0.2.10:51234")
	id, err := tab.Insert(0, conntrack.Flow{Listener: db, Client: client, Backend: pg1, State: conntrack.StateConnecting})
	if err != nil {
		panic(err)
	}
	_, err = tab.Insert(0, conntrack.Flow{Listener: db, Client: client})
	fmt.Println("second flow:", err)

	tab.SetState(id, conntrack.StateEstablished)
	tab.AddBytes(id, 120, 4096) // per read and write

	now = now.Add(2 * time.Minute) // the loop sweeps every tick
	for _, e := range tab.AppendExpired(nil, 0) {
		fi, _ := tab.Remove(e.ID) // after closing both legs
		fmt.Printf("closed %s -> %s/%s: %s after %s, %d bytes in, %d out\n",
			fi.Client, fi.Pool, fi.Backend, e.Reason, now.Sub(fi.Start), fi.BytesIn, fi.BytesOut)
	}
	// Output:
	// second flow: conntrack: client flow limit reached
	// closed 192.0.2.10:51234 -> pg/pg-1: idle_timeout after 2m0s, 120 bytes in, 4096 out
}
