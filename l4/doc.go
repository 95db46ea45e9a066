// Package l4 is Portico's layer 4 proxy: a TCP proxy on the gnet v2 event
// loop that pairs each client connection with a backend connection and
// copies bytes both ways, and TLS passthrough, which routes a TLS connection
// by the server name in its ClientHello without terminating TLS.
//
// # Shape
//
//   - server.go: [Server], one gnet engine per `[[tcp.listeners]]` with its
//     own event loops on SO_REUSEPORT sockets; the routing snapshot that a
//     reload swaps; the ticker that asks every loop to sweep its flows.
//   - flow.go: a flow, its two legs on one event loop, the gnet callbacks,
//     backpressure, half-close and the sweep of timeouts. The design and
//     its reasons are at the top of that file.
//   - pipe.go: splicing on the event loop: the rest of a socket whose
//     read filled gnet's buffer goes to the other socket through the
//     loop's pipe, without a copy through user space.
//   - rawio.go: the loop's own writes, splices, shutdowns and closes are
//     raw system calls, so that Go's sysmon does not hand the loop's only
//     P to another thread during a long one.
//   - dial.go: connecting to a backend: a non-blocking connect on the
//     event loop, confirmed by the first byte either way, with retries on
//     other backends; off the loop only for host names.
//   - gnetfd.go: handing a socket to a gnet event loop on the loop itself,
//     through two gnet internals of the pinned gnet version.
//   - sni.go: [HelloParser], the ClientHello parser (SNI, ALPN) over peeked
//     bytes; the event loop never blocks on a slow hello.
//   - proxyproto.go: PROXY protocol v1/v2, sent to backends (a pool's
//     send_proxy, or the listener's, which wins) and accepted from trusted
//     load balancers.
//   - config.go: the `[tcp]` section.
//
// Backends are chosen by package lb (every policy, with the client IP or
// the SNI as the hash key), and every flow is recorded in a conntrack.Table
// (limits at accept, per-backend counts, the admin snapshot).
//
// [Server.Shutdown] drains: new connections are reset at accept at once,
// flows in progress run until they end or its context is done, and then
// the rest are cut.
//
// # Cost
//
// Moving bytes costs one read (gnet's, up to 64 KiB) and one write(2) per
// chunk, no allocation and no copy unless the receiver is slow; a slow
// receiver's queue is bounded by high_water plus one read. When the read
// filled gnet's buffer, the rest of what the socket holds is spliced, two
// splice(2) calls per 256 KiB at most and no copy. On a 2-core
// AMD EPYC over loopback the proxy process spends about 0.6-0.8 s of CPU per
// GiB on the event loop's copy path, and 0.23-0.26 s per GiB once a
// half-closed flow's rest goes through splice(2) (BenchmarkProxyThroughput,
// BenchmarkProxyReply). Both directions
// of a 1 GiB transfer past a backend (or client) stalled for 3 s peak at
// about 20 MiB RSS for the whole proxy process, 9.5 MiB of it at rest (see
// TestStalledBackendBoundedMemory).
package l4
