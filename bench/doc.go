// Package bench is portico's benchmark harness: the load tools and backends
// that scripts/bench.sh runs portico, HAProxy and NGINX against, side by
// side, and the writer of the report (a markdown table and an SVG chart).
//
// The pieces:
//   - Upstream: a fasthttp backend that answers every request with a body
//     of a fixed size (64 bytes for "/small", 64 KiB for "/64k").
//   - SinkSource and Bulk: a TCP backend and client that move a stream of a
//     known pattern each way at once and verify every byte they receive.
//   - OpenLoop: a constant-rate HTTP load generator: it starts every
//     request on schedule whatever became of the earlier ones, so that a
//     slow response does not hide the ones queued behind it (coordinated
//     omission).
//   - HoldIdle: many idle keep-alive connections, for memory per connection.
//   - ProcCPU and ProcRSS: a process tree's CPU time and resident memory
//     from /proc, the headline numbers (proxy CPU per request).
//   - Harness: starts the backends and the proxies, pinned, runs the
//     workloads interleaved across targets and collects Samples.
//   - WriteMarkdown and WriteSVG: medians with min-max over repetitions.
package bench
