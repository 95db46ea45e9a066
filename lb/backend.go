package lb

import "sync/atomic"

// Backend is one member of a pool. Its identity (Name, Address, Weight) is
// immutable; its live state is kept in atomics.
type Backend struct {
	// Name is unique within the pool; it labels metrics and logs.
	Name string
	// Address is host:port.
	Address string
	// Weight is the relative share of new work, at least 1.
	Weight int

	// Index is the backend's position in its pool, for callers that keep
	// per-backend state in slices.
	Index int

	inflight atomic.Int64
}

// Acquire records one more piece of work in flight; pair it with Release.
func (b *Backend) Acquire() { b.inflight.Add(1) }

// Release records the end of a piece of work.
func (b *Backend) Release() { b.inflight.Add(-1) }

// InFlight is the number of connections or requests now in flight.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }
