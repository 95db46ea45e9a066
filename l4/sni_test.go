package l4

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// helloVector is a ClientHello as a real client sent it.
type helloVector struct {
	name     string
	data     []byte
	wantName string
	wantALPN []string
}

// helloVectors returns the captured vectors in testdata (see the header of
// each file for the client and command) and hellos from Go's crypto/tls
// client, made afresh.
func helloVectors(tb testing.TB) []helloVector {
	tb.Helper()
	h2h1 := []string{"h2", "http/1.1"}
	return []helloVector{
		{"chromium", readHex(tb, "chromium.hex"), "www.portico.test", h2h1},
		{"curl-h2", readHex(tb, "curl_h2_sni.hex"), "portico.test", h2h1},
		{"curl-http1.1", readHex(tb, "curl_http11_sni.hex"), "api.portico.test", []string{"http/1.1"}},
		{"curl-ip-no-sni", readHex(tb, "curl_ip_nosni.hex"), "", h2h1},
		{"openssl-mixed-case", readHex(tb, "openssl_sni_alpn.hex"), "www.example.org", h2h1},
		{"openssl-no-sni", readHex(tb, "openssl_nosni.hex"), "", nil},
		{"openssl-tls1.2", readHex(tb, "openssl_tls12.hex"), "legacy.portico.test", []string{"http/1.1"}},
		{"openssl-fragmented", readHex(tb, "openssl_fragmented.hex"), "frag.portico.test", []string{
			"h2", "http/1.1", "acme-tls/1", "imap", "pop3", "managesieve",
			"xmpp-client", "xmpp-server", "postgresql", "mqtt", "ntske/1", "sunrpc",
		}},
		{"go", goHello(tb, &tls.Config{ServerName: "Go.Portico.Test", NextProtos: h2h1}), "go.portico.test", h2h1},
		{"go-trailing-dot", goHello(tb, &tls.Config{ServerName: "portico.test."}), "portico.test", nil},
		{"go-no-sni", goHello(tb, &tls.Config{InsecureSkipVerify: true}), "", nil},
		{"go-ip", goHello(tb, &tls.Config{ServerName: "127.0.0.1", NextProtos: []string{"h2"}}), "", []string{"h2"}},
		{"go-tls1.2", goHello(tb, &tls.Config{
			ServerName: "tls12.portico.test", MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		}), "tls12.portico.test", []string{"http/1.1"}},
	}
}

// readHex reads a testdata file of hex lines; lines starting with '#' are
// comments.
func readHex(tb testing.TB, name string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("cannot read vector: %s", err)
	}
	var b strings.Builder
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(strings.TrimSpace(line))
		}
	}
	data, err := hex.DecodeString(b.String())
	if err != nil {
		tb.Fatalf("cannot decode %s: %s", name, err)
	}
	return data
}

// goHello returns the ClientHello records that a crypto/tls client with cfg
// writes, read from the other end of a net.Pipe by record framing alone.
func goHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(client, cfg).Handshake() // fails when server closes
		client.Close()
	}()
	var out []byte
	msgLen := -1
	for got := 0; msgLen < 0 || got < msgLen; {
		hdr := make([]byte, recordHeaderLen)
		if _, err := io.ReadFull(server, hdr); err != nil {
			tb.Fatalf("cannot read record header: %s", err)
		}
		frag := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(server, frag); err != nil {
			tb.Fatalf("cannot read record: %s", err)
		}
		if msgLen < 0 {
			msgLen = 4 + (int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3]))
		}
		got += len(frag)
		out = append(append(out, hdr...), frag...)
	}
	server.Close()
	<-done
	return out
}

// handshakeMessage concatenates the record fragments of records, which must
// be well framed.
func handshakeMessage(records []byte) []byte {
	var msg []byte
	for len(records) > 0 {
		n := int(records[3])<<8 | int(records[4])
		msg = append(msg, records[recordHeaderLen:recordHeaderLen+n]...)
		records = records[recordHeaderLen+n:]
	}
	return msg
}

// frame splits a handshake message into handshake records of size bytes
// (the last one shorter), as a client may.
func frame(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// helloSpec describes a synthetic ClientHello; zero fields get valid
// defaults.
type helloSpec struct {
	version   uint16
	sessionID []byte
	suites    []byte
	comp      []byte
	noExts    bool                      // omit the extensions block, as TLS 1.2 and older allow
	exts      func(*cryptobyte.Builder) // extensions, inside the block
	tail      []byte                    // bytes after the extensions block
}

// msg returns the handshake message, header included.
func (s helloSpec) msg() []byte {
	if s.version == 0 {
		s.version = tls.VersionTLS12
	}
	if s.suites == nil {
		s.suites = []byte{0x13, 0x01}
	}
	if s.comp == nil {
		s.comp = []byte{0}
	}
	var b cryptobyte.Builder
	b.AddUint8(handshakeTypeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(s.version)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.suites) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.comp) })
		if !s.noExts {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				if s.exts != nil {
					s.exts(b)
				}
			})
		}
		b.AddBytes(s.tail)
	})
	return b.BytesOrPanic()
}

// records returns the ClientHello in one record.
func (s helloSpec) records() []byte { return frame(s.msg(), maxPlaintextLen) }

func addExt(b *cryptobyte.Builder, typ uint16, data []byte) {
	b.AddUint16(typ)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(data) })
}

// addSNI adds a server_name extension with a host_name entry per name.
func addSNI(b *cryptobyte.Builder, names ...string) {
	b.AddUint16(extServerName)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, n := range names {
				b.AddUint8(hostNameType)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
			}
		})
	})
}

func addALPN(b *cryptobyte.Builder, protos ...string) {
	b.AddUint16(extALPN)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, p := range protos {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
			}
		})
	})
}

// checkHello fails unless data parses to wantName and wantALPN, ending at
// wantLen.
func checkHello(t *testing.T, p *HelloParser, data []byte, wantName string, wantALPN []string, wantLen int) {
	t.Helper()
	h, need, err := p.Parse(data)
	if err != nil || need != 0 {
		t.Fatalf("Parse: got need %d, err %v; want a hello", need, err)
	}
	if h.ServerName != wantName {
		t.Errorf("ServerName: got %q; want %q", h.ServerName, wantName)
	}
	if got := alpnStrings(h.ALPN); !slices.Equal(got, wantALPN) {
		t.Errorf("ALPN: got %q; want %q", got, wantALPN)
	}
	if h.Len != wantLen {
		t.Errorf("Len: got %d; want %d", h.Len, wantLen)
	}
}

func alpnStrings(a ALPN) []string {
	var out []string
	for p := range a.All() {
		out = append(out, string(p))
	}
	return out
}

func TestParseHelloVectors(t *testing.T) {
	// What a client may send after its hello without waiting: a TLS 1.3
	// early data record.
	earlyData := []byte{recordTypeApplicationData, 3, 3, 0, 3, 1, 2, 3}
	for _, v := range helloVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			var p HelloParser
			checkHello(t, &p, v.data, v.wantName, v.wantALPN, len(v.data))
			more := append(slices.Clip(v.data), earlyData...)
			checkHello(t, &p, more, v.wantName, v.wantALPN, len(v.data))
		})
	}
}

// TestParseHelloEverySplit feeds each vector as every prefix a connection
// could have received: Parse is stateless over the bytes so far, so this
// covers every split into TCP reads.
func TestParseHelloEverySplit(t *testing.T) {
	for _, v := range helloVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			checkPrefixes(t, v.data)
		})
	}
}

// checkPrefixes checks that every proper prefix of a complete hello asks
// for more bytes, and never more than the rest of the hello.
func checkPrefixes(t *testing.T, data []byte) {
	t.Helper()
	var p HelloParser
	for k := range len(data) {
		_, need, err := p.Parse(data[:k])
		if err != nil || need <= 0 || k+need > len(data) {
			t.Fatalf("Parse(first %d of %d bytes): got need %d, err %v; want 1..%d more bytes",
				k, len(data), need, err, len(data)-k)
		}
	}
}

func TestParseHelloFragmented(t *testing.T) {
	for _, v := range helloVectors(t) {
		msg := handshakeMessage(v.data)
		// Sizes 1 to 3 split the handshake header itself across records.
		for _, size := range []int{1, 2, 3, 4, 5, 100, 512, len(msg) - 1} {
			data := frame(msg, size)
			t.Run(v.name+"/size="+itoa(size), func(t *testing.T) {
				var p HelloParser
				checkHello(t, &p, data, v.wantName, v.wantALPN, len(data))
				if size == 3 || size == 512 {
					checkPrefixes(t, data)
				}
			})
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

func TestParseHelloNeed(t *testing.T) {
	curl := readHex(t, "curl_h2_sni.hex") // one 512-byte record
	frag := readHex(t, "openssl_fragmented.hex")
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		// A record header and the smallest ClientHello.
		{"empty", nil, recordHeaderLen + handshakeHeaderLen + minHelloBodyLen},
		{"one byte", curl[:1], recordHeaderLen - 1 + handshakeHeaderLen + minHelloBodyLen},
		{"record header", curl[:5], 512},
		{"handshake header", curl[:9], 508},
		{"all but one byte", curl[:len(curl)-1], 1},
		// The handshake header says the message goes on in a next record.
		{"first of two records", frag[:517], recordHeaderLen + 42},
		{"first record and a byte", frag[:518], recordHeaderLen - 1 + 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p HelloParser
			_, need, err := p.Parse(tc.data)
			if err != nil || need != tc.want {
				t.Fatalf("got need %d, err %v; want need %d", need, err, tc.want)
			}
		})
	}
}

func TestParseHelloErrors(t *testing.T) {
	chrome := readHex(t, "chromium.hex")
	curl := readHex(t, "curl_h2_sni.hex")
	set := func(data []byte, i int, b ...byte) []byte {
		data = slices.Clone(data)
		copy(data[i:], b)
		return data
	}
	// The curl hello less its last 10 bytes, with record and handshake
	// lengths that agree: the extensions run past the message.
	cut := handshakeMessage(curl)
	cut = cut[:len(cut)-10]
	n := len(cut) - handshakeHeaderLen
	cut[1], cut[2], cut[3] = byte(n>>16), byte(n>>8), byte(n)
	truncated := frame(cut, maxPlaintextLen)
	// A 20 KiB hello: too big for one record, so in two.
	big := frame(helloSpec{exts: func(b *cryptobyte.Builder) {
		addSNI(b, "big.portico.test")
		addExt(b, 21, make([]byte, 20<<10)) // padding
	}}.msg(), maxPlaintextLen)
	for _, tc := range []struct {
		name   string
		data   []byte
		maxLen int
		want   error
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: portico.test\r\n\r\n"), 0, ErrNotTLS},
		{"first byte of http request", []byte("G"), 0, ErrNotTLS},
		{"proxy protocol v1", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"), 0, ErrNotTLS},
		{"proxy protocol v2", []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), 0, ErrNotTLS},
		// An SSL 2.0-compatible CLIENT-HELLO (RFC 5246 appendix E.2): a
		// 2-byte header with the high bit set, msg_type 1, version 3.1.
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, 0, ErrNotTLS},
		{"record version 2.x", []byte{recordTypeHandshake, 2, 0, 0, 10}, 0, ErrNotTLS},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, 0, ErrNotHandshake},
		{"change_cipher_spec record", []byte{20, 3, 3, 0, 1, 1}, 0, ErrNotHandshake},
		{"application data record", []byte{23, 3, 3, 0, 1}, 0, ErrNotHandshake},
		{"server hello", set(curl, 5, 2), 0, ErrNotClientHello},
		{"record of 2^14+1 bytes", []byte{recordTypeHandshake, 3, 1, 0x40, 0x01}, 0, ErrRecordTooLarge},
		{"empty record", []byte{recordTypeHandshake, 3, 1, 0, 0}, 0, ErrMalformedHello},
		{"handshake length shorter than the smallest hello", set(curl, 6, 0, 0, 40), 0, ErrMalformedHello},
		{"bytes after the hello in its record", set(curl, 6, 0, 0x01, 0xfb), 0, ErrMalformedHello},
		{"hello cut short inside consistent framing", truncated, 0, ErrMalformedHello},
		{"alert between fragments", append(frame(handshakeMessage(curl), 100)[:105], 21, 3, 3, 0, 2), 0, ErrMalformedHello},
		{"handshake length of 1 MiB", []byte{recordTypeHandshake, 3, 1, 0x40, 0, 1, 0x10, 0, 0}, 0, ErrHelloTooLarge},
		{"record past MaxLen", curl[:5], 100, ErrHelloTooLarge},
		{"20 KiB hello", big, 0, ErrHelloTooLarge},
		{"1-byte records past MaxLen", frame(handshakeMessage(chrome), 1), 10 << 10, ErrHelloTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := HelloParser{MaxLen: tc.maxLen}
			h, need, err := p.Parse(tc.data)
			if err != tc.want || need != 0 || h.ServerName != "" || h.ALPN.Len() != 0 || h.Len != 0 {
				t.Fatalf("got %+v, need %d, err %v; want err %v", h, need, err, tc.want)
			}
		})
	}

	t.Run("20 KiB hello under a raised MaxLen", func(t *testing.T) {
		p := HelloParser{MaxLen: 32 << 10}
		checkHello(t, &p, big, "big.portico.test", nil, len(big))
	})
}

// TestParseHelloCorrupted checks that flipping each byte of the Chrome
// hello either fails with a sentinel or parses; never panics.
func TestParseHelloCorrupted(t *testing.T) {
	chrome := readHex(t, "chromium.hex")
	var p HelloParser
	for i := range chrome {
		data := slices.Clone(chrome)
		data[i] ^= 0xff
		_, need, err := p.Parse(data)
		if err != nil && !isSentinel(err) {
			t.Fatalf("byte %d: got err %v; want a sentinel", i, err)
		}
		if err == nil && need < 0 {
			t.Fatalf("byte %d: got need %d", i, need)
		}
	}
}

func isSentinel(err error) bool {
	for _, e := range []error{
		ErrNotTLS, ErrNotHandshake, ErrNotClientHello, ErrRecordTooLarge,
		ErrHelloTooLarge, ErrMalformedHello, ErrInvalidServerName,
	} {
		if err == e {
			return true
		}
	}
	return false
}

func TestParseHelloRandomGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var p HelloParser
	for range 10000 {
		data := make([]byte, rng.IntN(600))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		_, need, err := p.Parse(data)
		if len(data) > 0 && data[0] != recordTypeHandshake && err == nil {
			t.Fatalf("Parse(%x): got need %d; want an error", data, need)
		}
		if err != nil && !isSentinel(err) {
			t.Fatalf("Parse(%x): got err %v; want a sentinel", data, err)
		}
	}
}

func TestParseHelloServerName(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	// 4 labels of 63 and the dots: 255; trimmed to exactly 253.
	name253 := (long(63) + "." + long(63) + "." + long(63) + "." + long(63))[:253]
	for _, tc := range []struct {
		name string
		exts func(*cryptobyte.Builder)
		want string
		err  error
	}{
		{"lower-cased", sni("Example.COM"), "example.com", nil},
		{"single label", sni("localhost"), "localhost", nil},
		{"punycode", sni("xn--bcher-kva.example"), "xn--bcher-kva.example", nil},
		{"underscore", sni("_acme-challenge.Portico.test"), "_acme-challenge.portico.test", nil},
		{"numeric first label", sni("123.example"), "123.example", nil},
		{"label of 63", sni(long(63) + ".test"), long(63) + ".test", nil},
		{"253 bytes", sni(name253), name253, nil},
		{"label of 64", sni(long(64) + ".test"), "", ErrInvalidServerName},
		{"254 bytes", sni(name253 + "a"), "", ErrInvalidServerName},
		{"trailing dot", sni("example.com."), "", ErrInvalidServerName},
		{"dot", sni("."), "", ErrInvalidServerName},
		{"leading dot", sni(".example.com"), "", ErrInvalidServerName},
		{"empty label", sni("example..com"), "", ErrInvalidServerName},
		{"ipv4", sni("192.0.2.1"), "", ErrInvalidServerName},
		{"short ipv4", sni("127.1"), "", ErrInvalidServerName},
		{"numeric tld", sni("example.123"), "", ErrInvalidServerName},
		{"ipv6", sni("::1"), "", ErrInvalidServerName},
		{"bracketed ipv6", sni("[2001:db8::1]"), "", ErrInvalidServerName},
		{"port", sni("example.com:443"), "", ErrInvalidServerName},
		{"space", sni("exa mple.com"), "", ErrInvalidServerName},
		{"nul", sni("example.com\x00.evil.test"), "", ErrInvalidServerName},
		{"utf-8", sni("bücher.example"), "", ErrInvalidServerName},
		{"two host names", sni("a.test", "b.test"), "", ErrMalformedHello},
		{"empty host name", sni(""), "", ErrMalformedHello},
		{"two extensions", func(b *cryptobyte.Builder) { addSNI(b, "a.test"); addSNI(b, "b.test") }, "", ErrMalformedHello},
		{"empty extension", func(b *cryptobyte.Builder) { addExt(b, extServerName, nil) }, "", ErrMalformedHello},
		{"empty list", func(b *cryptobyte.Builder) { addExt(b, extServerName, []byte{0, 0}) }, "", ErrMalformedHello},
		{"byte after list", func(b *cryptobyte.Builder) {
			addExt(b, extServerName, []byte{0, 4, 0, 0, 1, 'a', 0})
		}, "", ErrMalformedHello},
		{"unknown name type only", func(b *cryptobyte.Builder) {
			addExt(b, extServerName, []byte{0, 4, 7, 0, 1, 'a'})
		}, "", nil},
		{"unknown name type, then host name", func(b *cryptobyte.Builder) {
			addExt(b, extServerName, []byte{0, 8, 7, 0, 1, 'x', 0, 0, 1, 'a'})
		}, "a", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p HelloParser
			h, _, err := p.Parse(helloSpec{exts: tc.exts}.records())
			if err != tc.err || h.ServerName != tc.want {
				t.Fatalf("got %q, err %v; want %q, err %v", h.ServerName, err, tc.want, tc.err)
			}
		})
	}
}

func sni(names ...string) func(*cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) { addSNI(b, names...) }
}

func TestParseHelloStructure(t *testing.T) {
	alpn := func(protos ...string) func(*cryptobyte.Builder) {
		return func(b *cryptobyte.Builder) { addALPN(b, protos...) }
	}
	for _, tc := range []struct {
		name     string
		spec     helloSpec
		wantALPN []string
		err      error
	}{
		{"no extensions block", helloSpec{noExts: true}, nil, nil},
		{"empty extensions block", helloSpec{}, nil, nil},
		{"unknown extensions", helloSpec{exts: func(b *cryptobyte.Builder) {
			addExt(b, 0x0a0a, nil) // GREASE
			addALPN(b, "h2")
			addExt(b, 0xfe0d, []byte{1, 2, 3})
		}}, []string{"h2"}, nil},
		{"alpn", helloSpec{exts: alpn("h2", "http/1.1")}, []string{"h2", "http/1.1"}, nil},
		{"alpn of 255 bytes", helloSpec{exts: alpn(strings.Repeat("x", 255))}, []string{strings.Repeat("x", 255)}, nil},
		{"alpn empty protocol", helloSpec{exts: alpn("h2", "")}, nil, ErrMalformedHello},
		{"alpn empty list", helloSpec{exts: alpn()}, nil, ErrMalformedHello},
		{"alpn empty extension", helloSpec{exts: func(b *cryptobyte.Builder) { addExt(b, extALPN, nil) }}, nil, ErrMalformedHello},
		{"alpn protocol past list", helloSpec{exts: func(b *cryptobyte.Builder) {
			addExt(b, extALPN, []byte{0, 3, 2, 'h', '2', '3'})
		}}, nil, ErrMalformedHello},
		{"two alpn extensions", helloSpec{exts: func(b *cryptobyte.Builder) {
			addALPN(b, "h2")
			addALPN(b, "http/1.1")
		}}, nil, ErrMalformedHello},
		{"truncated extension header", helloSpec{exts: func(b *cryptobyte.Builder) { b.AddBytes([]byte{0, 16, 0}) }}, nil, ErrMalformedHello},
		{"extension length past block", helloSpec{exts: func(b *cryptobyte.Builder) { b.AddBytes([]byte{0, 16, 0, 9, 0}) }}, nil, ErrMalformedHello},
		{"bytes after extensions", helloSpec{tail: []byte{0}}, nil, ErrMalformedHello},
		{"session id of 33 bytes", helloSpec{sessionID: make([]byte, 33)}, nil, ErrMalformedHello},
		{"odd cipher suites length", helloSpec{suites: []byte{0x13, 0x01, 0x13}}, nil, ErrMalformedHello},
		{"no cipher suites", helloSpec{suites: []byte{}}, nil, ErrMalformedHello},
		{"no compression methods", helloSpec{comp: []byte{}, tail: []byte{0, 0, 0}}, nil, ErrMalformedHello},
		{"version 2.0", helloSpec{version: 0x0200}, nil, ErrMalformedHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p HelloParser
			data := tc.spec.records()
			h, _, err := p.Parse(data)
			if err != tc.err {
				t.Fatalf("got err %v; want %v", err, tc.err)
			}
			if got := alpnStrings(h.ALPN); !slices.Equal(got, tc.wantALPN) {
				t.Fatalf("ALPN: got %q; want %q", got, tc.wantALPN)
			}
		})
	}
}

func TestALPN(t *testing.T) {
	var p HelloParser
	h, _, err := p.Parse(helloSpec{exts: func(b *cryptobyte.Builder) { addALPN(b, "h2", "http/1.1", "x") }}.records())
	if err != nil {
		t.Fatal(err)
	}
	a := h.ALPN
	if got := a.Len(); got != 3 {
		t.Errorf("Len: got %d; want 3", got)
	}
	if got := a.String(); got != "h2,http/1.1,x" {
		t.Errorf("String: got %q; want %q", got, "h2,http/1.1,x")
	}
	for _, proto := range []string{"h2", "http/1.1", "x"} {
		if !a.Contains(proto) {
			t.Errorf("Contains(%q): got false; want true", proto)
		}
	}
	for _, proto := range []string{"h3", "http/1", "", "h2,http/1.1"} {
		if a.Contains(proto) {
			t.Errorf("Contains(%q): got true; want false", proto)
		}
	}
	var first []string
	for proto := range a.All() {
		first = append(first, string(proto))
		break
	}
	if !slices.Equal(first, []string{"h2"}) {
		t.Errorf("All with break: got %q; want [h2]", first)
	}
	var zero ALPN
	if zero.Len() != 0 || zero.Contains("h2") || zero.String() != "" {
		t.Errorf("zero ALPN: got Len %d, String %q", zero.Len(), zero.String())
	}
}

// TestParseHelloKeepsInput checks that Parse does not write to data, which
// is the connection's buffer.
func TestParseHelloKeepsInput(t *testing.T) {
	for _, v := range helloVectors(t) {
		data := frame(handshakeMessage(v.data), 100)
		orig := slices.Clone(data)
		var p HelloParser
		if _, _, err := p.Parse(data); err != nil {
			t.Fatalf("%s: %s", v.name, err)
		}
		if !bytes.Equal(data, orig) {
			t.Fatalf("%s: Parse modified its input", v.name)
		}
	}
}

// TestParseHelloReusedParser checks that a parser used for a fragmented
// hello parses the next ones unaffected.
func TestParseHelloReusedParser(t *testing.T) {
	var p HelloParser
	vs := helloVectors(t)
	for range 2 {
		for _, v := range vs {
			checkHello(t, &p, frame(handshakeMessage(v.data), 64), v.wantName, v.wantALPN, len(frame(handshakeMessage(v.data), 64)))
			checkHello(t, &p, v.data, v.wantName, v.wantALPN, len(v.data))
		}
	}
}

func TestParseHelloAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	chrome := readHex(t, "chromium.hex")
	for _, tc := range []struct {
		name string
		data []byte
		want float64
	}{
		{"chromium", chrome, 1}, // the server name string
		{"no sni", readHex(t, "openssl_nosni.hex"), 0},
		{"fragmented", readHex(t, "openssl_fragmented.hex"), 1},
		{"chromium in 512-byte records", frame(handshakeMessage(chrome), 512), 1},
		{"incomplete", chrome[:1000], 0},
		{"garbage", []byte("GET / HTTP/1.1\r\n"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p HelloParser
			p.Parse(tc.data) // grow the reassembly buffer
			got := testing.AllocsPerRun(100, func() {
				h, _, _ := p.Parse(tc.data)
				if !h.ALPN.Contains("h2") && h.ALPN.Len() < 0 {
					panic("unreachable")
				}
			})
			if got != tc.want {
				t.Fatalf("got %v allocs; want %v", got, tc.want)
			}
		})
	}
}

func TestErrorsArePrefixed(t *testing.T) {
	for _, err := range []error{
		ErrNotTLS, ErrNotHandshake, ErrNotClientHello, ErrRecordTooLarge,
		ErrHelloTooLarge, ErrMalformedHello, ErrInvalidServerName,
	} {
		if !strings.HasPrefix(err.Error(), "l4: ") || errors.Unwrap(err) != nil {
			t.Errorf("got %q; want an unwrapped error starting with %q", err, "l4: ")
		}
	}
}
