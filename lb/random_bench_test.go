package lb

import "testing"

func BenchmarkPickRandom(b *testing.B)  { benchPick(b, PolicyRandom, nil) }
func BenchmarkBuildRandom(b *testing.B) { benchBuild(b, PolicyRandom) }
