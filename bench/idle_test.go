package bench

import (
	"context"
	"testing"
)

func TestHoldIdle(t *testing.T) {
	addr := serve(t, NewUpstream().Handle)
	ic, err := HoldIdle(context.Background(), addr, "/small", 200, 32)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if got := ic.Len(); got != 200 {
		t.Errorf("got %d connections; want 200", got)
	}
}

func TestHoldIdleStopsAtFailure(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	ic, err := HoldIdle(context.Background(), addr, "/small", 1000, 8)
	if err == nil {
		t.Fatal("got no error from a closed port")
	}
	if ic.Len() != 0 {
		t.Errorf("got %d connections; want 0", ic.Len())
	}
}
