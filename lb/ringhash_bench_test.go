package lb

import "testing"

func BenchmarkPickRingHash(b *testing.B)  { benchPick(b, PolicyRingHash, nil) }
func BenchmarkBuildRingHash(b *testing.B) { benchBuild(b, PolicyRingHash) }
