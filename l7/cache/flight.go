package cache

import "time"

// Flight is one request to the origin that concurrent misses on the same
// key wait for, instead of each going upstream (request coalescing).
type Flight struct{ done chan struct{} }

// Join returns the flight for key and whether the caller leads it: the
// leader goes upstream and must call Leave; the others Wait.
func (c *Cache) Join(key []byte) (*Flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[b2s(key)]; ok {
		return f, false
	}
	f := &Flight{done: make(chan struct{})}
	c.flights[string(key)] = f
	return f, true
}

// Leave ends the leader's flight and wakes the waiters.
func (c *Cache) Leave(key []byte, f *Flight) {
	c.mu.Lock()
	if c.flights[b2s(key)] == f {
		delete(c.flights, b2s(key))
	}
	c.mu.Unlock()
	close(f.done)
}

// Wait blocks until the flight ends or d passes; it reports whether the
// flight ended.
func (f *Flight) Wait(d time.Duration) bool {
	select {
	case <-f.done:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
		return true
	case <-t.C:
		return false
	}
}
