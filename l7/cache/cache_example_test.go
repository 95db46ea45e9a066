package cache_test

import (
	"fmt"
	"time"

	"portico/l7/cache"
)

// A response fresh for 60 seconds, asked for 90 seconds later by a client
// that accepts 60 seconds of staleness.
func ExampleEntry_Decide() {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fields := []cache.Field{{Name: "Cache-Control", Value: "max-age=60"}, {Name: "ETag", Value: `"v1"`}}
	e := cache.NewEntry(200, fields, []byte("hello"), t0, t0, &cache.Policy{})
	var none, maxStale cache.Directives
	none.Reset()
	maxStale.Reset()
	maxStale.Parse([]byte("max-stale=60"))
	now := t0.Add(90 * time.Second)
	fmt.Println(e.Storable(&none, false, &cache.Policy{}), e.Age(now))
	fmt.Println(e.Decide(now, &none, false) == cache.Validate, e.Decide(now, &maxStale, false) == cache.Stale)
	// Output:
	// true 1m30s
	// true true
}
