package l4

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkProxyThroughput moves b.N MiB from a client through a proxy
// process to a sink on loopback, one connection. It reports the proxy
// process's CPU time per GiB moved (cpu-s/GiB) besides MB/s; "direct" is
// the same transfer without a proxy. Sub-benchmarks compare the
// backpressure marks.
//
//	go test ./l4 -run '^$' -bench ProxyThroughput -benchtime 2048x
func BenchmarkProxyThroughput(b *testing.B) {
	for _, bc := range []struct {
		name      string
		high, low int
	}{
		{"direct", 0, 0},
		{"marks=1M-256K", 1 << 20, 256 << 10},
		{"marks=4M-2M", 4 << 20, 2 << 20},
		{"marks=16M-8M", 16 << 20, 8 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			sunk := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					sunk <- -1
					return
				}
				defer c.Close()
				n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
				sunk <- n
			}()
			target := ln.Addr().String()
			var p *proxyProcess
			if bc.high > 0 {
				p = startProxyProcess(b, target, bc.high, bc.low)
				target = p.addr
			}
			c, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			if n := <-sunk; n != int64(b.N)<<20 {
				b.Fatalf("sink got %d bytes; want %d", n, int64(b.N)<<20)
			}
			b.StopTimer()
			if p != nil {
				_, cpu := p.stop(b)
				b.ReportMetric(cpu.Seconds()/(float64(b.N)/1024), "cpu-s/GiB")
			}
		})
	}
}

// BenchmarkProxyReply moves b.N MiB from a backend through a proxy process
// to a client: "open" while the client's side stays open (the event loop
// copies), "half-closed" after the client has sent its FIN (the rest is
// spliced by a goroutine). It reports the proxy's CPU time per GiB.
//
//	go test ./l4 -run '^$' -bench ProxyReply -benchtime 2048x
func BenchmarkProxyReply(b *testing.B) {
	for _, halfClose := range []bool{false, true} {
		name := "open"
		if halfClose {
			name = "half-closed"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			p := startProxyProcess(b, ln.Addr().String(), 4<<20, 2<<20)
			c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("go"))
			if halfClose {
				c.(*net.TCPConn).CloseWrite()
			}
			be, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			io.ReadFull(be, make([]byte, 2))
			if halfClose {
				io.Copy(io.Discard, be) // the FIN has arrived
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			go func() {
				for range b.N {
					if _, err := be.Write(buf); err != nil {
						return
					}
				}
				be.(*net.TCPConn).CloseWrite()
			}()
			n, _ := io.CopyBuffer(io.Discard, io.LimitReader(c, int64(b.N)<<20), make([]byte, 256<<10))
			b.StopTimer()
			if n != int64(b.N)<<20 {
				b.Fatalf("client got %d bytes; want %d", n, int64(b.N)<<20)
			}
			c.Close()
			_, cpu := p.stop(b)
			b.ReportMetric(cpu.Seconds()/(float64(b.N)/1024), "cpu-s/GiB")
		})
	}
}

// BenchmarkProxyConnect opens b.N connections, one after the other, each
// sending a byte that the backend answers before it closes: a new backend
// connection per client connection, as l4-close in bench/. It reports the
// proxy process's CPU time per connection.
//
//	go test ./l4 -run '^$' -bench ProxyConnect -benchtime 5000x
func BenchmarkProxyConnect(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}()
		}
	}()
	p := startProxyProcess(b, ln.Addr().String(), 4<<20, 2<<20)
	buf := make([]byte, 1)
	b.ResetTimer()
	for range b.N {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("x"))
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, c); n != 0 {
			b.Fatalf("got %d more bytes; want EOF", n)
		}
		c.Close()
	}
	b.StopTimer()
	_, cpu := p.stop(b)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/conn")
}
