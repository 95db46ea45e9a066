// Package cache is portico's HTTP response cache: a shared cache in the sense
// of RFC 9111, with the stale extensions of RFC 5861.
//
// It holds the pure parts, free of any HTTP server: parsing Cache-Control
// (directives.go), deciding whether a response may be stored and for how
// long, computing its age and whether a stored response may serve a request
// (freshness.go), building keys (key.go), the byte-bounded store with its
// variants and purges (store.go) and the coalescing of concurrent misses
// (flight.go). Package l7 drives it from the proxy path.
//
// Eviction is github.com/maypok86/otter/v2: W-TinyLFU (an admission filter
// on a count-min sketch in front of a segmented LRU), which keeps the hit
// ratio high on skewed (Zipf) traffic and resists scans, where a plain LRU
// lets one crawl flush the hot set. It takes a weigher, so the budget is in
// bytes; it stores pointers, so a hit hands out the stored body without a
// copy; and it is safe for concurrent use with lock-free reads.
// VictoriaMetrics/fastcache was the other candidate: it is a byte ring with no
// GC cost, but it evicts in FIFO order by bucket (no frequency), caps entries
// at 64 KiB unless they are split (SetBig), and every hit copies the value
// out, which is the copy this cache avoids.
package cache
