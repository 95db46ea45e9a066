package l4

// queue is a FIFO of bytes kept in fixed-size chunks. A queue that grows
// and drains reuses its loop's chunks instead of growing a slice by
// doubling, so a slow receiver costs the bytes it has queued, rounded up
// to a chunk, and no garbage. A queue belongs to one event loop.
type queue struct {
	chunks [][]byte // each: len = bytes filled, cap = queueChunk
	head   int      // bytes of chunks[0] already written
	n      int      // bytes queued
}

// queueChunk is the size of a queue's chunks: one gnet read.
const queueChunk = readChunk

// maxFreeChunks bounds the chunks a loop keeps for reuse: 2 MiB.
const maxFreeChunks = 32

// chunkPool is a loop's free chunks.
type chunkPool struct{ free [][]byte }

func (p *chunkPool) get() []byte {
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return c[:0]
	}
	return make([]byte, 0, queueChunk)
}

func (p *chunkPool) put(c []byte) {
	if len(p.free) < maxFreeChunks {
		p.free = append(p.free, c)
	}
}

func (q *queue) len() int { return q.n }

// push appends a copy of b.
func (q *queue) push(p *chunkPool, b []byte) {
	q.n += len(b)
	if k := len(q.chunks); k > 0 {
		last := q.chunks[k-1]
		m := copy(last[len(last):cap(last)], b)
		q.chunks[k-1] = last[:len(last)+m]
		b = b[m:]
	}
	for len(b) > 0 {
		c := p.get()
		m := copy(c[:cap(c)], b)
		q.chunks = append(q.chunks, c[:m])
		b = b[m:]
	}
}

// front returns the oldest queued bytes: part of the queue, or all of it.
func (q *queue) front() []byte {
	if q.n == 0 {
		return nil
	}
	return q.chunks[0][q.head:]
}

// discard drops the n oldest bytes, n <= len(front()).
func (q *queue) discard(p *chunkPool, n int) {
	q.n -= n
	q.head += n
	if q.head == len(q.chunks[0]) && (len(q.chunks) > 1 || q.n == 0) {
		p.put(q.chunks[0])
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
		if len(q.chunks) == 0 {
			q.chunks = nil
		}
	}
}

// reset drops everything, returning the chunks to p.
func (q *queue) reset(p *chunkPool) {
	for _, c := range q.chunks {
		p.put(c)
	}
	*q = queue{}
}
