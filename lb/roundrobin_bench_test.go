package lb

import "testing"

func BenchmarkPickRoundRobin(b *testing.B)  { benchPick(b, PolicyRoundRobin, nil) }
func BenchmarkBuildRoundRobin(b *testing.B) { benchBuild(b, PolicyRoundRobin) }
