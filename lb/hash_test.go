package lb

import (
	"net/netip"
	"testing"
)

// TestHashStable pins Hash's output: several portico instances, and
// versions, must map a key to the same backend.
func TestHashStable(t *testing.T) {
	for s, want := range map[string]uint64{
		"":            0xefd01f60ba992926,
		"10.0.0.1":    0xc879e56ddc6c5c88,
		"session=abc": 0xdd6837764d5d4f79,
	} {
		if got := HashString(s); got != want {
			t.Errorf("HashString(%q) = %#x; want %#x", s, got, want)
		}
		if got := Hash([]byte(s)); got != want {
			t.Errorf("Hash(%q) = %#x; want %#x", s, got, want)
		}
	}
	if finish(0) == 0 {
		t.Error("finish(0) is 0; Key.Hash reserves 0 for no key")
	}
}

func TestParseHashKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HashKey
		err  string
	}{
		{"", HashKey{}, ""},
		{"client_ip", HashKey{Source: HashClientIP}, ""},
		{"sni", HashKey{Source: HashSNI}, ""},
		{"uri", HashKey{Source: HashURI}, ""},
		{"header:X-User-Id", HashKey{Source: HashHeader, Name: "X-User-Id"}, ""},
		{"cookie:session", HashKey{Source: HashCookie, Name: "session"}, ""},
		{"query:tenant", HashKey{Source: HashQuery, Name: "tenant"}, ""},
		{"cookie:a b", HashKey{}, `cookie name must be a non-empty token, got "a b"`},
		{"ip", HashKey{}, `want client_ip, sni, host, uri, path, header:NAME, cookie:NAME or query:NAME, got "ip"`},
	} {
		got, err := ParseHashKey(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseHashKey(%q): got error %v; want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseHashKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("ParseHashKey(%q).String() = %q; want it back", tc.in, got.String())
		}
	}
}

func TestHashIP(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.9")
	if got, want := HashIP(v4), Hash([]byte{203, 0, 113, 9}); got != want {
		t.Errorf("HashIP(%s) = %#x; want Hash of its 4 bytes, %#x", v4, got, want)
	}
	if got, want := HashIP(netip.MustParseAddr("::ffff:203.0.113.9")), HashIP(v4); got != want {
		t.Errorf("v4-mapped address hashes to %#x; want %#x, as the plain IPv4", got, want)
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	if got, want := HashIP(v6), Hash(v6.AsSlice()); got != want {
		t.Errorf("HashIP(%s) = %#x; want Hash of its 16 bytes, %#x", v6, got, want)
	}
}

func TestHashAllocs(t *testing.T) {
	b := []byte("203.0.113.9")
	ip := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { _ = Hash(b); _ = HashString("x"); _ = HashIP(ip) }); n != 0 {
		t.Errorf("Hash allocates %v times; want 0", n)
	}
}
