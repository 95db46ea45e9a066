package lb

import (
	"fmt"
	"math/bits"
)

// maglevPolicy is the lookup table of Maglev (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, section
// 3.4). Each backend has a permutation of the table's M slots, from two
// hashes of its name: offset = h1 mod M, skip = h2 mod (M-1) + 1, slot j =
// (offset + j*skip) mod M; M prime makes every permutation cover the table.
// Backends take turns claiming their next free slot until the table is full,
// so each owns about M/N slots, and removing one changes few of the others'
// slots. Weights are honoured as Envoy does: in turn k a backend claims a
// slot only while count × max weight ≤ k × its weight.
//
// Pick is one table read: O(1) whatever the pool's size.
type maglevPolicy struct {
	tableSize int
	rand      func() uint64
}

func (p maglevPolicy) Build(set []Weighted) (Picker, error) {
	n, m := len(set), p.tableSize
	if n == 0 {
		return nil, errEmptySet
	}
	if n > m {
		return nil, fmt.Errorf("%d backends do not fit a table of %d", n, m)
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	count := make([]uint64, n)
	var maxW uint64
	for i, w := range set {
		h := HashString(w.Backend.Name)
		offset[i] = h % uint64(m)
		skip[i] = mix64(h)%uint64(m-1) + 1
		maxW = max(maxW, uint64(w.Weight))
	}
	table := make([]uint32, m)
	filled := make([]bool, m)
	left := m
	for turn := uint64(1); left > 0; turn++ {
		for i, w := range set {
			if turn*uint64(w.Weight) < count[i]*maxW {
				continue // not this backend's turn yet
			}
			c := offset[i]
			for filled[c] {
				c += skip[i]
				if c >= uint64(m) {
					c -= uint64(m)
				}
			}
			table[c], filled[c] = uint32(i), true
			offset[i] = c // the next claim resumes the permutation here
			count[i]++
			if left--; left == 0 {
				break
			}
		}
	}
	return &maglev{backends: backendsOf(set), table: table, rand: p.rand}, nil
}

type maglev struct {
	backends []*Backend
	table    []uint32 // slot -> index into backends
	rand     func() uint64
}

var (
	_ Picker    = (*maglev)(nil)
	_ hashTable = (*maglev)(nil)
)

// Pick returns the backend of the key's slot. A retry (Attempt > 0) takes
// the first slot from a rehashed position whose backend differs from the
// first choice's. A keyless pick (Hash 0) uses a random slot.
func (m *maglev) Pick(key Key) (*Backend, error) {
	h := key.Hash
	if h == 0 {
		h = m.rand()
	}
	i := m.slot(h)
	if key.Attempt > 0 && len(m.backends) > 1 {
		first := m.table[i]
		i = m.slot(mix64(h + uint64(key.Attempt)))
		for m.table[i] == first {
			if i++; i == len(m.table) {
				i = 0
			}
		}
	}
	return m.backends[m.table[i]], nil
}

// probe is the key's slot for i = 0, then slots at rehashed positions.
func (m *maglev) probe(h uint64, i uint32) *Backend {
	if i > 0 {
		h = mix64(h + uint64(i))
	}
	return m.backends[m.table[m.slot(h)]]
}

// slot maps a hash to a table index by multiply-shift, without division.
func (m *maglev) slot(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(m.table)))
	return int(hi)
}
