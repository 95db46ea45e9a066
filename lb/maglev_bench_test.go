package lb

import "testing"

func BenchmarkPickMaglev(b *testing.B)  { benchPick(b, PolicyMaglev, nil) }
func BenchmarkBuildMaglev(b *testing.B) { benchBuild(b, PolicyMaglev) }
