package lb

import "testing"

func BenchmarkPickWeighted(b *testing.B)  { benchPick(b, PolicyWeightedRoundRobin, nil) }
func BenchmarkBuildWeighted(b *testing.B) { benchBuild(b, PolicyWeightedRoundRobin) }
