package lb

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// benchPick measures Pool.Pick plus Lease.Release for a policy at 3, 100
// and 1000 backends, serial and parallel. Hashing policies get a different
// key each pick. Every case must report 0 allocs/op.
func benchPick(b *testing.B, policy string, tune func(*PoolConfig)) {
	for _, n := range []int{3, 100, 1000} {
		c := poolConfig(policy, backendConfigs(n, nil))
		if tune != nil {
			tune(&c)
		}
		p := newTestPool(b, c, WithRand(defaultRand))
		b.Run(fmt.Sprintf("backends=%d/serial", n), func(b *testing.B) {
			b.ReportAllocs()
			var h uint64
			for b.Loop() {
				h++
				l, err := p.Pick(Key{Hash: mix64(h)})
				if err != nil {
					b.Fatal(err)
				}
				l.Release(Success)
			}
		})
		b.Run(fmt.Sprintf("backends=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				h := seed.Add(1) << 40
				for pb.Next() {
					h++
					l, err := p.Pick(Key{Hash: mix64(h)})
					if err != nil {
						b.Error(err)
						return
					}
					l.Release(Success)
				}
			})
		})
	}
}

// benchBuild measures Policy.Build, which runs on every membership, weight
// or health change, at 3, 100 and 1000 backends.
func benchBuild(b *testing.B, policy string) {
	for _, n := range []int{3, 100, 1000} {
		c := poolConfig(policy, backendConfigs(n, func(i int) int { return 1 + i%10 }))
		if policy == PolicyRoundRobin {
			c.Backends = backendConfigs(n, nil)
		}
		c.SetDefaults()
		pol := c.policy(&Pool{rand: defaultRand})
		set := weightedSet(c.Backends)
		b.Run(fmt.Sprintf("backends=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pol.Build(set); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
