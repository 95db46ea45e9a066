package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The bulk protocol: the client opens a connection and sends a 16-byte
// header, the byte count each way and a seed (both little-endian uint64),
// then that many bytes of Pattern(seed) while it reads as many bytes of
// Pattern(seed+1) from the server, which does the mirror image. Each side
// verifies what it reads. When the server has verified all it was sent it
// writes one more byte, 0, which the client waits for; a server that finds
// a bad byte resets the connection instead, so the client sees the failure.
const bulkHeader = 16

// bulkChunk is the size of one read or write.
const bulkChunk = 64 << 10

// SinkSource is the TCP backend of the bulk workload. The zero value is not
// usable; use NewSinkSource.
type SinkSource struct {
	log      *slog.Logger
	patterns patternCache

	// Verified counts the bytes received and verified, Sent the bytes sent,
	// Failed the connections that ended in an error.
	Verified, Sent, Failed atomic.Int64
}

// NewSinkSource returns a server that logs failures to log (nil: none).
func NewSinkSource(log *slog.Logger) *SinkSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SinkSource{log: log}
}

// Serve accepts connections on ln until it is closed or ctx ends.
func (s *SinkSource) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("cannot accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopConn := context.AfterFunc(ctx, func() { c.Close() })
			defer stopConn()
			if err := s.serveConn(c); err != nil {
				s.Failed.Add(1)
				s.log.Warn("bulk connection failed", "remote", c.RemoteAddr().String(), "err", err)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // reset: the client must see it
				}
			}
			c.Close()
		}()
	}
}

func (s *SinkSource) serveConn(c net.Conn) error {
	var h [bulkHeader]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return fmt.Errorf("cannot read header: %w", err)
	}
	size := binary.LittleEndian.Uint64(h[:8])
	seed := binary.LittleEndian.Uint64(h[8:])
	in, out := s.patterns.get(seed), s.patterns.get(seed+1)
	if err := duplex(c, size, out, in, &s.Sent, &s.Verified); err != nil {
		return err
	}
	if _, err := c.Write([]byte{0}); err != nil {
		return fmt.Errorf("cannot write the verdict: %w", err)
	}
	return nil
}

// duplex writes size bytes of out to c while it reads and verifies size
// bytes of in, and returns the first error of either direction.
func duplex(c net.Conn, size uint64, out, in *Pattern, sent, verified *atomic.Int64) error {
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, bulkChunk)
		var off uint64
		for off < size {
			n := min(uint64(len(buf)), size-off)
			out.Fill(buf[:n], off)
			if _, err := c.Write(buf[:n]); err != nil {
				errc <- fmt.Errorf("cannot write at offset %d: %w", off, err)
				return
			}
			off += n
			sent.Add(int64(n))
		}
		errc <- nil
	}()
	buf := make([]byte, bulkChunk)
	var off uint64
	var rerr error
	for off < size {
		n, err := c.Read(buf[:min(uint64(len(buf)), size-off)])
		if n > 0 {
			if err := in.Check(buf[:n], off); err != nil {
				rerr = err
				break
			}
			off += uint64(n)
			verified.Add(int64(n))
		}
		if err != nil {
			rerr = fmt.Errorf("cannot read at offset %d of %d: %w", off, size, err)
			break
		}
	}
	if rerr != nil {
		c.Close() // unblocks the writer
		<-errc
		return rerr
	}
	return <-errc
}

// patternCache shares one Pattern per seed.
type patternCache struct {
	mu sync.Mutex
	m  map[uint64]*Pattern
}

func (pc *patternCache) get(seed uint64) *Pattern {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil {
		pc.m = map[uint64]*Pattern{}
	}
	p, ok := pc.m[seed]
	if !ok {
		p = NewPattern(seed)
		pc.m[seed] = p
	}
	return p
}

// BulkConfig is one bulk run.
type BulkConfig struct {
	// Addr is the host:port to connect to (a proxy, or the SinkSource).
	Addr string
	// Conns is the number of connections, run at once. Default 8.
	Conns int
	// Bytes is the byte count each way on each connection.
	Bytes uint64
	// Timeout bounds the whole run. Default 2 minutes.
	Timeout time.Duration
}

// BulkResult is the outcome of a bulk run.
type BulkResult struct {
	// Bytes counts the bytes verified, both ways together (the client's and
	// the server's side seen by the client: sent and received).
	Bytes    int64
	Duration time.Duration
	// Errors counts the connections that failed; Err is the first failure.
	Errors int
	Err    error
}

// Bulk runs cfg: every connection moves cfg.Bytes each way, verified.
func Bulk(ctx context.Context, cfg BulkConfig) BulkResult {
	if cfg.Conns <= 0 {
		cfg.Conns = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var pc patternCache
	var sent, verified atomic.Int64
	var mu sync.Mutex
	var res BulkResult
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seed := uint64(i+1) * 1000
			err := bulkConn(ctx, cfg.Addr, cfg.Bytes, seed, &pc, &sent, &verified)
			if err != nil {
				mu.Lock()
				res.Errors++
				if res.Err == nil {
					res.Err = fmt.Errorf("connection %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	res.Bytes = sent.Load() + verified.Load()
	return res
}

func bulkConn(ctx context.Context, addr string, size, seed uint64, pc *patternCache, sent, verified *atomic.Int64) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot dial %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var h [bulkHeader]byte
	binary.LittleEndian.PutUint64(h[:8], size)
	binary.LittleEndian.PutUint64(h[8:], seed)
	if _, err := c.Write(h[:]); err != nil {
		return fmt.Errorf("cannot write header: %w", err)
	}
	err = duplex(c, size, pc.get(seed), pc.get(seed+1), sent, verified)
	if err == nil {
		var v [1]byte
		if _, rerr := io.ReadFull(c, v[:]); rerr != nil {
			err = fmt.Errorf("cannot read the server's verdict (it found a bad byte?): %w", rerr)
		} else if v[0] != 0 {
			err = fmt.Errorf("server verdict %d; want 0", v[0])
		}
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}
