package l7

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
)

// requestIDs makes X-Request-Id values: 32 hex digits, a random 64-bit
// process prefix and a counter, so they are unique without a syscall or an
// allocation per request.
type requestIDs struct {
	prefix uint64
	n      atomic.Uint64
}

func (r *requestIDs) init() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	r.prefix = binary.LittleEndian.Uint64(b[:])
}

const hexDigits = "0123456789abcdef"

func (r *requestIDs) append(dst []byte) []byte {
	dst = appendHex64(dst, r.prefix)
	return appendHex64(dst, r.n.Add(1))
}

func appendHex64(dst []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(v>>uint(shift))&0xf])
	}
	return dst
}
