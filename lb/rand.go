package lb

import (
	"math/bits"
	"math/rand/v2"
	"time"
)

// defaultRand is the source of randomness when no WithRand option is given:
// the runtime's per-thread generator, which is fast and safe for concurrent
// use without contention.
func defaultRand() uint64 { return rand.Uint64() }

// below maps a uniform 64-bit r onto [0, n) without division (Lemire).
func below(r uint64, n int) int {
	hi, _ := bits.Mul64(r, uint64(n))
	return int(hi)
}

// xorshift advances a cheap generator seeded from one call to the pool's
// source, for picks that need several random numbers.
func xorshift(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

// epoch anchors nanotime; time.Since uses the monotonic clock.
var epoch = time.Now()

// nanotime is nanoseconds on a monotonic clock, never 0.
func nanotime() int64 { return int64(time.Since(epoch)) + 1 }
