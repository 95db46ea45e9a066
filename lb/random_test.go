package lb

import (
	"math"
	"testing"
)

// TestAliasTableExact checks that the alias table's implied distribution
// equals the weights: column i keeps i with probability accept[i]/2^32 and
// gives the rest to alias[i]; columns are equally likely.
func TestAliasTableExact(t *testing.T) {
	ws := randomWeights(50, 1000, 9)
	bs := backendConfigs(len(ws), func(i int) int { return ws[i] })
	set := weightedSet(bs)
	at := newAliasTable(set)
	n := float64(len(ws))
	got := make([]float64, len(ws))
	for i := range ws {
		keep := float64(at.accept[i]) / (1 << 32)
		got[i] += keep / n
		got[at.alias[i]] += (1 - keep) / n
	}
	total := float64(sum(ws))
	for i, w := range ws {
		if want := float64(w) / total; math.Abs(got[i]-want) > 1e-9 {
			t.Errorf("backend %d: probability %v; want %v", i, got[i], want)
		}
	}
}

func TestAliasTableEqualWeightsIsNil(t *testing.T) {
	if at := newAliasTable(weightedSet(backendConfigs(4, nil))); at != nil {
		t.Errorf("got a table for equal weights; want nil (plain uniform draw)")
	}
}
