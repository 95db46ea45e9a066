package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// patternBlock is the period of a Pattern in bytes.
const patternBlock = 1 << 20

// Pattern is a deterministic byte stream, cheap to write and to check: a
// pseudo-random 1 MiB block, repeated, with the first 8 bytes of each
// repetition replaced by its index (xor the seed). Lost, duplicated,
// reordered or altered bytes all show as a mismatch. It is safe for
// concurrent use once built.
type Pattern struct {
	seed  uint64
	block []byte
}

// NewPattern builds the pattern for seed. It costs 1 MiB and a few
// milliseconds; share one per seed.
func NewPattern(seed uint64) *Pattern {
	p := &Pattern{seed: seed, block: make([]byte, patternBlock)}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < patternBlock; i += 8 {
		binary.LittleEndian.PutUint64(p.block[i:], r.Uint64())
	}
	return p
}

// header returns the 8 bytes that start repetition n.
func (p *Pattern) header(n uint64) (h [8]byte) {
	binary.LittleEndian.PutUint64(h[:], n^p.seed)
	return h
}

// Fill writes the pattern's bytes from stream offset off into buf.
func (p *Pattern) Fill(buf []byte, off uint64) {
	for len(buf) > 0 {
		n, in := off/patternBlock, int(off%patternBlock)
		var k int
		if in < 8 {
			h := p.header(n)
			k = copy(buf, h[in:])
		} else {
			k = copy(buf, p.block[in:])
		}
		buf, off = buf[k:], off+uint64(k)
	}
}

// Check reports whether buf holds the pattern's bytes from stream offset
// off; the error names the first offset that differs.
func (p *Pattern) Check(buf []byte, off uint64) error {
	for len(buf) > 0 {
		n, in := off/patternBlock, int(off%patternBlock)
		var want []byte
		if in < 8 {
			h := p.header(n)
			want = h[in:]
		} else {
			want = p.block[in:]
		}
		if len(want) > len(buf) {
			want = want[:len(buf)]
		}
		if string(want) != string(buf[:len(want)]) {
			for i := range want {
				if want[i] != buf[i] {
					return fmt.Errorf("cannot verify stream: byte at offset %d is %#02x; want %#02x", off+uint64(i), buf[i], want[i])
				}
			}
		}
		buf, off = buf[len(want):], off+uint64(len(want))
	}
	return nil
}
