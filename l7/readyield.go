package l7

import (
	"runtime"
	"sync/atomic"
)

// yieldAfterWrite makes the first Read after a Write on a backend
// connection let the other goroutines run first (runtime.Gosched).
//
// The backend was just sent a request and its response is rarely there
// yet: reading at once costs a read(2) that fails with EAGAIN, then a park
// and a wakeup through the netpoller. Under load other goroutines have work
// ready, and after their turn the response has usually come: the Read finds
// it in one system call, as an event loop does that reads only what epoll
// reported ready. When no other goroutine is runnable, Gosched returns at
// once. On l7-small this took portico from about 6.1 to 5.3 system calls
// per request (HAProxy: about 4.6).
//
// Client connections do not yield: there the goroutines that found the
// next request waiting would go round the global run queue without ever
// parking, and the netpoller, which runs only when the run queues are
// empty, would leave the others waiting up to sysmon's 10 ms poll (p99
// went from 3 to 8 ms on l7-small). A backend exchange is followed by a
// client read that parks, so the run queues still drain once per request.
//
// Safe for concurrent use; the zero value is ready.
type yieldAfterWrite struct{ wrote atomic.Bool }

// written records a Write.
func (y *yieldAfterWrite) written() { y.wrote.Store(true) }

// beforeRead yields if a Write came since the last Read.
func (y *yieldAfterWrite) beforeRead() {
	if y.wrote.Load() {
		y.wrote.Store(false)
		runtime.Gosched()
	}
}
