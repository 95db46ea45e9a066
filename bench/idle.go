package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// IdleConns is a set of open keep-alive connections that have each done
// one request and now sit idle. Close them with Close.
type IdleConns struct {
	conns []net.Conn
}

// Len returns the number of connections held.
func (ic *IdleConns) Len() int { return len(ic.conns) }

// Close closes every connection.
func (ic *IdleConns) Close() {
	for _, c := range ic.conns {
		c.Close()
	}
	ic.conns = nil
}

// HoldIdle opens n connections to addr, at most parallel at a time, and on
// each does one keep-alive GET of path, reading the whole response. It
// stops at the first failure (returning the connections opened so far
// with the error) and when ctx ends.
func HoldIdle(ctx context.Context, addr, path string, n, parallel int) (*IdleConns, error) {
	if parallel <= 0 {
		parallel = 64
	}
	ic := &IdleConns{conns: make([]net.Conn, 0, n)}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	for i := 0; i < n; i++ {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := oneRequest(ctx, addr, req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			ic.conns = append(ic.conns, c)
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return ic, firstErr
}

func oneRequest(ctx context.Context, addr string, req []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot dial %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, fmt.Errorf("cannot send request: %w", err)
	}
	// A small reader: the response is small, and the held memory should be
	// the proxy's, not ours.
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("cannot read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Close {
		c.Close()
		return nil, fmt.Errorf("bad response: status %d, close %v, %v", resp.StatusCode, resp.Close, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
