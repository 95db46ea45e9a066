package bench

import (
	"strings"
	"testing"
)

func TestPatternRoundTrip(t *testing.T) {
	p := NewPattern(7)
	const size = 3*patternBlock + 12345
	buf := make([]byte, size)
	// Fill in odd-sized pieces, then check in other odd-sized pieces.
	for off := 0; off < size; off += 4093 {
		end := min(off+4093, size)
		p.Fill(buf[off:end], uint64(off))
	}
	for off := 0; off < size; off += 65539 {
		end := min(off+65539, size)
		if err := p.Check(buf[off:end], uint64(off)); err != nil {
			t.Fatalf("Check at %d: %v", off, err)
		}
	}
}

func TestPatternDetects(t *testing.T) {
	p := NewPattern(1)
	good := make([]byte, 2*patternBlock+100)
	p.Fill(good, 0)
	cases := []struct {
		name string
		mut  func([]byte) []byte
		want string
	}{
		{"flipped byte", func(b []byte) []byte { b[patternBlock+77] ^= 1; return b }, "offset 1048653"},
		{"lost byte", func(b []byte) []byte { return append(b[:10:10], b[11:]...) }, "offset"},
		{"swapped blocks", func(b []byte) []byte {
			out := append([]byte(nil), b[patternBlock:2*patternBlock]...)
			return append(out, b[:patternBlock]...)
		}, "offset 0"},
		{"other seed", func(b []byte) []byte { NewPattern(2).Fill(b, 0); return b }, "offset 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mut(append([]byte(nil), good...))
			err := p.Check(b, 0)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error with %q", err, c.want)
			}
		})
	}
	if err := p.Check(good[500:600], 500); err != nil {
		t.Fatalf("Check of a good piece: %v", err)
	}
}

func BenchmarkPatternCheck(b *testing.B) {
	p := NewPattern(3)
	buf := make([]byte, 64<<10)
	p.Fill(buf, 12345)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Check(buf, 12345); err != nil {
			b.Fatal(err)
		}
	}
}
