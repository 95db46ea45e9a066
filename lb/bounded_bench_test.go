package lb

import "testing"

func BenchmarkPickBoundedMaglev(b *testing.B) {
	benchPick(b, PolicyMaglev, func(c *PoolConfig) { c.BoundedLoad.Enabled = true })
}

func BenchmarkPickBoundedRingHash(b *testing.B) {
	benchPick(b, PolicyRingHash, func(c *PoolConfig) { c.BoundedLoad.Enabled = true })
}
