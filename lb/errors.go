package lb

import "errors"

// ErrNoBackend is returned by Pick when the pool has no backend that may take
// new work: every backend is down, ejected or draining (or the pool is
// empty). The returned error wraps it with the pool's name and counts.
var ErrNoBackend = errors.New("lb: no backend available")

// ErrUnknownBackend is returned by the Pool methods that name a backend when
// the pool has no backend of that name.
var ErrUnknownBackend = errors.New("lb: no such backend")

// errEmptySet is returned by a Policy's Build when given no backends; the
// pool never does that.
var errEmptySet = errors.New("BUG: lb: Build called with no backends")
