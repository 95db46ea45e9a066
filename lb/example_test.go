package lb_test

import (
	"errors"
	"fmt"
	"strings"

	"portico/lb"
)

func Example() {
	cfg := lb.PoolConfig{
		Policy: lb.PolicyWeightedRoundRobin,
		Backends: []lb.BackendConfig{
			{Name: "a", Address: "127.0.0.1:9001", Weight: 5},
			{Name: "b", Address: "127.0.0.1:9002"},
			{Name: "c", Address: "127.0.0.1:9003"},
		},
	}
	pool, err := lb.NewPool("web", cfg)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	var picked []string
	for range 7 {
		lease, err := pool.Pick(lb.Key{})
		if err != nil {
			panic(err)
		}
		picked = append(picked, lease.Name)
		// ... forward the request to lease.Address ...
		lease.Release(lb.Success)
	}
	fmt.Println(strings.Join(picked, " "))

	for _, name := range []string{"a", "b", "c"} {
		pool.SetDraining(name, true)
	}
	_, err = pool.Pick(lb.Key{})
	fmt.Println(err, errors.Is(err, lb.ErrNoBackend))
	// Output:
	// a a b a c a a
	// pool "web": all 3 backends draining: lb: no backend available true
}

func ExampleHashString() {
	cfg := lb.PoolConfig{
		Policy:  lb.PolicyMaglev,
		HashKey: "cookie:session",
		Backends: []lb.BackendConfig{
			{Address: "127.0.0.1:9001"}, {Address: "127.0.0.1:9002"}, {Address: "127.0.0.1:9003"},
		},
	}
	pool, err := lb.NewPool("api", cfg)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	fmt.Println(pool.HashKey().Source == lb.HashCookie, pool.HashKey().Name)
	// The same cookie value always reaches the same backend.
	key := lb.Key{Hash: lb.HashString("d41d8cd98f00b204")}
	first, _ := pool.Pick(key)
	first.Release(lb.Success)
	again, _ := pool.Pick(key)
	again.Release(lb.Success)
	fmt.Println(first.Backend == again.Backend)
	// Output:
	// true session
	// true
}
