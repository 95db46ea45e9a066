package cache

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

type hdr map[string]string

func (h hdr) Peek(k string) []byte { return []byte(h[k]) }

func TestKeySpec(t *testing.T) {
	in := &KeyInput{Method: []byte("HEAD"), Scheme: []byte("http"), Host: []byte("Example.COM"), Path: []byte("/a"), Query: []byte("x=1")}
	k := KeySpec{Scheme: true, Host: true, Path: true, Query: true}
	if got := string(k.Append(nil, in, hdr{})); got != "http://example.com/a?x=1" {
		t.Errorf("got %q", got)
	}
	k = KeySpec{Host: true, Path: true, Method: true, Headers: []string{"X-Tenant"}}
	if got := string(k.Append(nil, in, hdr{"X-Tenant": "t1"})); got != "example.com/a\x00GET\x00X-Tenant:t1" {
		t.Errorf("got %q", got)
	}
}

func newTestCache(t testing.TB, budget int64) *Cache {
	t.Helper()
	c, err := New(Config{MaxBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestStoreVary(t *testing.T) {
	c := newTestCache(t, 1<<20)
	key := []byte("http://h/a")
	gz := hdr{"Accept-Encoding": "gzip,  br"}
	e := entry(200, nil, "Cache-Control", "max-age=60", "Vary", "accept-encoding")
	c.Put(key, e, gz)
	if got := c.Get(key, hdr{"Accept-Encoding": " gzip , br "}); got != e {
		t.Errorf("same variant, other whitespace: got %p; want %p", got, e)
	}
	if got := c.Get(key, hdr{"Accept-Encoding": "identity"}); got != nil {
		t.Errorf("other variant: got %p; want nil", got)
	}
	e2 := entry(200, nil, "Cache-Control", "max-age=60", "Vary", "Accept-Encoding")
	c.Put(key, e2, hdr{})
	if got := c.Get(key, hdr{}); got != e2 {
		t.Errorf("second variant: got %p; want %p", got, e2)
	}
	if got := c.Get(key, gz); got != e {
		t.Errorf("first variant after second: got %p; want %p", got, e)
	}
}

func TestPurge(t *testing.T) {
	c := newTestCache(t, 1<<20)
	for _, k := range []string{"http://h/a", "http://h/a?x", "http://h/a\x00GET", "http://h/ab", "http://g/a"} {
		c.Put([]byte(k), entry(200, nil, "Cache-Control", "max-age=60"), hdr{})
	}
	if n := c.PurgeKey("http://h/a"); n != 2 {
		t.Errorf("PurgeKey: got %d; want 2", n)
	}
	if n := c.PurgePrefix("http://h/"); n != 2 {
		t.Errorf("PurgePrefix: got %d; want 2", n)
	}
	if c.Get([]byte("http://g/a"), hdr{}) == nil {
		t.Error("http://g/a purged; want kept")
	}
	c.PurgeAll()
	if c.Get([]byte("http://g/a"), hdr{}) != nil {
		t.Error("PurgeAll left http://g/a")
	}
}

func TestFlight(t *testing.T) {
	c := newTestCache(t, 1<<20)
	f, lead := c.Join([]byte("k"))
	if !lead {
		t.Fatal("first Join: not leader")
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, l := c.Join([]byte("k"))
			if l {
				c.Leave([]byte("k"), g)
				return
			}
			if !g.Wait(10 * time.Second) {
				t.Error("Wait timed out")
			}
		}()
	}
	c.Leave([]byte("k"), f)
	wg.Wait()
	g, _ := c.Join([]byte("j"))
	if g.Wait(time.Millisecond) {
		t.Error("Wait on an open flight: got true; want false")
	}
}

// TestMemoryBudget fills the cache far past its budget and checks that the
// live heap stays within the budget plus a small overhead.
func TestMemoryBudget(t *testing.T) {
	const budget = 16 << 20
	c := newTestCache(t, budget)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	fs := []Field{{"Cache-Control", "max-age=60"}, {"Date", date(t0)}}
	for i := 0; i < 2000; i++ { // 2000 x 64 KiB = 125 MiB, about 8x the budget
		body := make([]byte, 64<<10)
		c.Put([]byte(fmt.Sprintf("http://h/%d", i)), NewEntry(200, fs, body, t0, t0, nil), hdr{})
	}
	c.CleanUp()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("budget %d MiB, stored %d bytes in %d objects, heap grew %.1f MiB", budget>>20, c.WeightedSize(), c.Len(), float64(grown)/(1<<20))
	if c.WeightedSize() > budget {
		t.Errorf("weighted size %d; want <= %d", c.WeightedSize(), budget)
	}
	if limit := int64(budget) + budget/4 + 2<<20; grown > limit {
		t.Errorf("heap grew %d bytes; want <= %d", grown, limit)
	}
}
