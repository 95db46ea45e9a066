package lb

import (
	"fmt"
	"math/bits"
	"slices"
)

// ringHashPolicy is Ketama-style consistent hashing (Karger et al. 1997;
// libketama): each backend owns virtual_nodes points per unit of weight on a
// 64-bit ring, placed by hashing its name, and a key goes to the owner of
// the first point at or after the key's hash. Removing a backend moves only
// the keys on its arcs; a backend's points do not depend on the others, so
// adding weight only adds points.
//
// Pick finds the point with a bucket index on the hash's top bits (about one
// point per bucket) and a binary search inside the bucket. A point costs 8
// bytes.
type ringHashPolicy struct {
	virtualNodes int
	rand         func() uint64
}

func (p ringHashPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	total := 0
	counts := make([]int, len(set))
	for i, w := range set {
		counts[i] = max(1, int(uint64(p.virtualNodes)*uint64(w.Weight)/WeightScale))
		total += counts[i]
	}
	if total > maxRingPoints {
		return nil, fmt.Errorf("ring of %d points, more than %d", total, maxRingPoints)
	}
	// A point is its hash with the low bits replaced by its owner's index:
	// one sort of plain integers orders the ring and carries the owners.
	// The low bits move a point by less than 2^-40 of the ring.
	r := &ringHash{backends: backendsOf(set), rand: p.rand}
	r.ownerBits = uint(max(bits.Len(uint(len(set)-1)), 1))
	mask := uint64(1)<<r.ownerBits - 1
	r.points = make([]uint64, 0, total)
	for i, w := range set {
		seed := HashString(w.Backend.Name)
		for j := range counts[i] {
			h := mix64(seed + uint64(j)*0x9e3779b97f4a7c15)
			r.points = append(r.points, h&^mask|uint64(i))
		}
	}
	slices.Sort(r.points)
	nbits := min(max(bits.Len(uint(total)), 1), 20)
	r.shift = uint(64 - nbits)
	r.buckets = make([]uint32, 1<<nbits+1)
	for k, i := 0, 0; k <= 1<<nbits; k++ {
		for i < total && r.points[i]>>r.shift < uint64(k) {
			i++
		}
		r.buckets[k] = uint32(i)
	}
	r.buckets[1<<nbits] = uint32(total)
	return r, nil
}

type ringHash struct {
	backends  []*Backend
	points    []uint64 // sorted; the low ownerBits of each are an index into backends
	ownerBits uint
	buckets   []uint32 // buckets[k]: first point whose top bits (>>shift) are k or more
	shift     uint
	rand      func() uint64
}

var (
	_ Picker    = (*ringHash)(nil)
	_ hashTable = (*ringHash)(nil)
)

func (r *ringHash) owner(i int) *Backend {
	return r.backends[r.points[i]&(1<<r.ownerBits-1)]
}

// Pick returns the owner of the key's point. A retry (Attempt a > 0) walks
// clockwise to the a-th change of owner after it. A keyless pick (Hash 0)
// uses a random point.
func (r *ringHash) Pick(key Key) (*Backend, error) {
	h := key.Hash
	if h == 0 {
		h = r.rand()
	}
	i := r.search(h)
	if key.Attempt > 0 && len(r.backends) > 1 {
		i = r.nextOwners(i, int(key.Attempt))
	}
	return r.owner(i), nil
}

// probe is the i-th point clockwise from the key's: bounded load walks the
// ring as Mirrokni et al. do.
func (r *ringHash) probe(h uint64, i uint32) *Backend {
	return r.owner((r.search(h) + int(i)) % len(r.points))
}

// search returns the index of the first point at or after h, wrapping.
func (r *ringHash) search(h uint64) int {
	k := h >> r.shift
	lo, hi := int(r.buckets[k]), int(r.buckets[k+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

// nextOwners walks clockwise from point i past n changes of owner.
func (r *ringHash) nextOwners(i, n int) int {
	mask := uint64(1)<<r.ownerBits - 1
	owner := r.points[i] & mask
	for steps := 0; n > 0 && steps < len(r.points); steps++ {
		if i++; i == len(r.points) {
			i = 0
		}
		if o := r.points[i] & mask; o != owner {
			owner = o
			n--
		}
	}
	return i
}
