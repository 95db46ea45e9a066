package l4

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestQueue pushes and drains random amounts and checks the bytes come out
// in order, and that drained chunks are reused.
func TestQueue(t *testing.T) {
	var p chunkPool
	var q queue
	var in, out bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		b := make([]byte, r.IntN(3*queueChunk))
		for j := range b {
			b[j] = byte(i + j)
		}
		q.push(&p, b)
		in.Write(b)
		for k := r.IntN(4); k > 0 && q.len() > 0; k-- {
			f := q.front()
			n := min(len(f), 1+r.IntN(len(f)))
			out.Write(f[:n])
			q.discard(&p, n)
		}
		if q.len() != in.Len()-out.Len() {
			t.Fatalf("len: got %d; want %d", q.len(), in.Len()-out.Len())
		}
	}
	for q.len() > 0 {
		f := q.front()
		out.Write(f)
		q.discard(&p, len(f))
	}
	if !bytes.Equal(in.Bytes(), out.Bytes()) {
		t.Fatal("bytes out differ from bytes in")
	}
	if len(p.free) == 0 || len(q.chunks) != 0 {
		t.Fatalf("after draining: %d free chunks, %d in the queue; want some, 0", len(p.free), len(q.chunks))
	}
}
