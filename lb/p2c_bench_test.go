package lb

import "testing"

func BenchmarkPickP2C(b *testing.B)  { benchPick(b, PolicyP2C, nil) }
func BenchmarkBuildP2C(b *testing.B) { benchBuild(b, PolicyP2C) }

func BenchmarkPickP2CLatency(b *testing.B) {
	benchPick(b, PolicyP2C, func(c *PoolConfig) { c.P2C.Latency = true })
}
