// Package l4 is Portico's layer 4 proxy: a TCP proxy on the gnet v2 event
// loop that pairs each client connection with a backend connection and
// copies bytes both ways, and TLS passthrough, which routes a TLS connection
// by the server name in its ClientHello without terminating TLS.
//
// Only the ClientHello parser exists so far: [HelloParser] reads the server
// name and ALPN protocols from the bytes a new connection has sent, without
// consuming them and without blocking the event loop.
package l4
