package l4

import (
	"crypto/tls"
	"testing"
)

// BenchmarkParseHello parses whole hellos as the event loop sees them once
// they have arrived. The one allocation in cases with SNI is the server name
// string. Run with:
//
//	go test ./l4 -run '^$' -bench ParseHello -benchmem
func BenchmarkParseHello(b *testing.B) {
	chrome := readHex(b, "chromium.hex")
	goh := goHello(b, &tls.Config{ServerName: "go.portico.test", NextProtos: []string{"h2", "http/1.1"}})
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"chromium", chrome},
		{"go", goh},
		{"curl", readHex(b, "curl_h2_sni.hex")},
		{"openssl-no-sni", readHex(b, "openssl_nosni.hex")},
		{"openssl-fragmented", readHex(b, "openssl_fragmented.hex")},
		{"chromium-in-512-byte-records", frame(handshakeMessage(chrome), 512)},
		{"chromium-in-64-byte-records", frame(handshakeMessage(chrome), 64)},
		// What the loop pays per read while a hello is still arriving, and
		// for a client that is not TLS.
		{"chromium-first-half", chrome[:len(chrome)/2]},
		{"http-request", []byte("GET / HTTP/1.1\r\nHost: portico.test\r\n\r\n")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p HelloParser
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				h, _, _ := p.Parse(bc.data)
				if h.Len > len(bc.data) {
					b.Fatal("BUG: Len past data")
				}
			}
		})
	}
}

// BenchmarkALPN measures the check a router makes on the parsed hello.
func BenchmarkALPN(b *testing.B) {
	var p HelloParser
	h, _, err := p.Parse(readHex(b, "chromium.hex"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !h.ALPN.Contains("http/1.1") {
			b.Fatal("got no http/1.1")
		}
	}
}
