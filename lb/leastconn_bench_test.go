package lb

import "testing"

func BenchmarkPickLeastConn(b *testing.B)  { benchPick(b, PolicyLeastConn, nil) }
func BenchmarkBuildLeastConn(b *testing.B) { benchBuild(b, PolicyLeastConn) }
