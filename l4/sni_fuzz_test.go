package l4

import (
	"slices"
	"testing"
)

// FuzzParseClientHello checks that Parse never panics and that its result
// depends only on the bytes, not on how they arrive:
//
//   - a result is exactly one of error, need > 0, or a hello within data;
//   - every proper prefix of data (a sample of them, for long inputs) asks
//     for more bytes, never more than the full result shows are still to
//     come, or fails with the same error;
//   - a parsed hello parses the same from data[:Len], and from its handshake
//     message framed in records of another size;
//   - a server name is valid and lower-case, and ALPN entries are non-empty.
func FuzzParseClientHello(f *testing.F) {
	for _, v := range helloVectors(f) {
		f.Add(v.data)
		f.Add(frame(handshakeMessage(v.data), 7))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10})
	f.Add([]byte{recordTypeHandshake, 3, 1, 0x40, 0, 1, 0x10, 0, 0})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		var p HelloParser
		h, need, err := p.Parse(data)
		name, alpn := h.ServerName, alpnStrings(h.ALPN)
		switch {
		case err != nil:
			if !isSentinel(err) || need != 0 || h.Len != 0 || name != "" || alpn != nil {
				t.Fatalf("got %q %q Len %d, need %d, err %v; want zero with a sentinel", name, alpn, h.Len, need, err)
			}
		case need > 0:
			if h.Len != 0 || name != "" || alpn != nil {
				t.Fatalf("got %q %q Len %d with need %d; want zero", name, alpn, h.Len, need)
			}
		default:
			if need != 0 || h.Len < recordHeaderLen || h.Len > len(data) || h.Len > DefaultMaxHelloLen {
				t.Fatalf("got Len %d, need %d for %d bytes", h.Len, need, len(data))
			}
			if s, ok := lowerHostName([]byte(name)); name != "" && (!ok || s != name) {
				t.Fatalf("got server name %q; want a valid lower-case host name", name)
			}
			if slices.Contains(alpn, "") {
				t.Fatalf("got ALPN %q with an empty protocol", alpn)
			}
		}

		// Every split: a prefix is a valid start, or fails as the whole.
		end := len(data) + need // what the whole result shows is needed
		if err == nil && need == 0 {
			end = h.Len
		}
		// All prefixes of short inputs; of long ones, a sample that keeps an
		// execution near linear time.
		n := min(len(data), end)
		step := max(1, n/1024)
		for k := len(data) % step; k < n; k += step {
			_, kneed, kerr := p.Parse(data[:k])
			switch {
			case kerr != nil:
				if kerr != err {
					t.Fatalf("first %d bytes: got err %v; want need or the whole's %v", k, kerr, err)
				}
			case kneed <= 0:
				t.Fatalf("first %d bytes: got a hello; want need (whole: need %d, err %v)", k, need, err)
			case err == nil && k+kneed > end:
				t.Fatalf("first %d bytes: got need %d; want at most %d", k, kneed, end-k)
			}
		}
		if err != nil || need > 0 {
			return
		}

		// The reported prefix alone, and the message reframed.
		checkSame := func(what string, data []byte, wantLen int, maxLen int) {
			t.Helper()
			q := HelloParser{MaxLen: maxLen}
			g, gneed, gerr := q.Parse(data)
			if gerr != nil || gneed != 0 || g.ServerName != name || !slices.Equal(alpnStrings(g.ALPN), alpn) || g.Len != wantLen {
				t.Fatalf("%s: got %q %q Len %d, need %d, err %v; want %q %q Len %d",
					what, g.ServerName, alpnStrings(g.ALPN), g.Len, gneed, gerr, name, alpn, wantLen)
			}
		}
		checkSame("data[:Len]", data[:h.Len], h.Len, 0)
		msg := handshakeMessage(data[:h.Len])
		size := 1 + int(data[len(data)-1])%600
		reframed := frame(msg, size)
		checkSame("reframed", reframed, len(reframed), len(reframed))
	})
}
