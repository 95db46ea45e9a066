package lb

// aliasTable samples an index in proportion to weights in O(1): Vose's alias
// method ("A Linear Algorithm for Generating Random Numbers with a Given
// Distribution", 1991). A nil table means equal weights.
type aliasTable struct {
	accept []uint64 // keep index i when the low 32 random bits are below accept[i]
	alias  []uint32 // else take alias[i]
}

func newAliasTable(set []Weighted) *aliasTable {
	n := len(set)
	equal := true
	var total float64
	for _, w := range set {
		total += float64(w.Weight)
		equal = equal && w.Weight == set[0].Weight
	}
	if equal {
		return nil
	}
	t := &aliasTable{accept: make([]uint64, n), alias: make([]uint32, n)}
	scaled := make([]float64, n)
	var small, large []int
	for i, w := range set {
		scaled[i] = float64(w.Weight) * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		t.accept[s] = uint64(scaled[s] * (1 << 32))
		t.alias[s] = uint32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What remains is 1 up to rounding: always keep it.
	for _, i := range append(small, large...) {
		t.accept[i] = 1 << 32
		t.alias[i] = uint32(i)
	}
	return t
}

// sample maps one uniform 64-bit r to an index below n: the high 32 bits
// choose a column, the low 32 bits the column's index or its alias.
func (t *aliasTable) sample(r uint64, n int) int {
	i := int((r >> 32) * uint64(n) >> 32)
	if t == nil || r&(1<<32-1) < t.accept[i] {
		return i
	}
	return int(t.alias[i])
}
