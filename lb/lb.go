// Package lb decides which backend of a pool gets each new connection (L4) or
// request (L7). Both paths use it; neither keeps balancing code of its own.
//
// A Pool is built from a PoolConfig; it publishes an immutable snapshot of its
// backends that pickers read without locks. Pick is allocation-free and safe
// for concurrent use.
package lb

import "errors"

// ErrNoBackend is returned by Pick when the pool has no backend that may take
// new work.
var ErrNoBackend = errors.New("lb: no backend available")

// Key carries what a pick may depend on. Hash is a precomputed hash of the
// request's affinity key (zero when the policy ignores it); Attempt counts
// retries of the same request so that a retry lands elsewhere.
type Key struct {
	Hash    uint64
	Attempt uint32
}

// Picker chooses a backend. Implementations are read-only after Build, never
// allocate and are safe for concurrent use.
type Picker interface {
	Pick(key Key) (*Backend, error)
}
