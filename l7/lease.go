package l7

import (
	"sync"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// leaseCloser holds a backend lease until fasthttp has written a streamed
// response body to the client: fasthttp closes the io.Closer user values of
// a request once its response is written (or the connection dies), so
// least_conn and p2c see a long download as work in flight.
type leaseCloser struct {
	lease   lb.Lease
	outcome lb.Outcome
}

var leaseClosers = sync.Pool{New: func() any { return new(leaseCloser) }}

// leaseKey is the user-value key of a request's pending lease.
const leaseKey = "portico.lease"

func releaseAfterResponse(ctx *fasthttp.RequestCtx, lease lb.Lease, o lb.Outcome) {
	c := leaseClosers.Get().(*leaseCloser)
	c.lease, c.outcome = lease, o
	ctx.SetUserValue(leaseKey, c)
}

// Close releases the lease; fasthttp calls it once.
func (c *leaseCloser) Close() error {
	c.lease.Release(c.outcome)
	*c = leaseCloser{}
	leaseClosers.Put(c)
	return nil
}
