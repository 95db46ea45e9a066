package lb

import (
	"fmt"
	"net/netip"
	"strings"
)

// Hash returns the 64-bit hash of an affinity key, for Key.Hash. It is FNV-1a
// finished with the MurmurHash3 64-bit mixer, so short keys (IP addresses,
// cookie values) spread over the whole range. It is stable across processes
// and versions, so that several portico instances map a key alike, and it
// never returns 0, which Key.Hash reserves for "no key".
func Hash(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return finish(h)
}

// HashString is Hash for a string, without converting it.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return finish(h)
}

// HashIP is Hash of a client address for the client_ip hash key: its 4
// bytes for IPv4 (and IPv4-mapped IPv6), else its 16, so that the L4 and L7
// paths, and v4 clients seen over v6 sockets, map a client alike. The zone
// is ignored. It does not allocate.
func HashIP(ip netip.Addr) uint64 {
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		return Hash(a[:])
	}
	a := ip.As16()
	return Hash(a[:])
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func finish(h uint64) uint64 {
	h = fmix64(h)
	if h == 0 {
		return 1
	}
	return h
}

// fmix64 is MurmurHash3's finalizer: every input bit affects every output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// mix64 is the SplitMix64 output function; seeds and derived hashes use it.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// HashSource says where a request's affinity key comes from.
type HashSource uint8

// Hash sources accepted in PoolConfig.HashKey.
const (
	HashNone     HashSource = iota // no key: hashing policies are not in use
	HashClientIP                   // "client_ip": the client's IP address (L4 and L7)
	HashSNI                        // "sni": the TLS server name (L4 and L7 over TLS)
	HashHost                       // "host": the Host header, port removed (L7)
	HashURI                        // "uri": the request path and query (L7)
	HashPath                       // "path": the request path without the query (L7)
	HashHeader                     // "header:NAME": a request header's value (L7)
	HashCookie                     // "cookie:NAME": a cookie's value; sticky sessions (L7)
	HashQuery                      // "query:NAME": a query argument's value (L7)
)

// HashKey is a parsed PoolConfig.HashKey: where the listener or route takes
// the bytes it hashes with Hash for Key.Hash. A request that lacks them (no
// such header or cookie) is picked with Key.Hash 0.
type HashKey struct {
	Source HashSource
	// Name is the header, cookie or query argument for those sources.
	Name string
}

var hashSourceNames = map[string]HashSource{
	"client_ip": HashClientIP,
	"sni":       HashSNI,
	"host":      HashHost,
	"uri":       HashURI,
	"path":      HashPath,
}

var hashSourcePrefixes = map[string]HashSource{
	"header": HashHeader,
	"cookie": HashCookie,
	"query":  HashQuery,
}

const hashKeyForms = "client_ip, sni, host, uri, path, header:NAME, cookie:NAME or query:NAME"

// ParseHashKey parses the hash_key setting; "" gives the zero HashKey.
func ParseHashKey(s string) (HashKey, error) {
	if s == "" {
		return HashKey{}, nil
	}
	if src, ok := hashSourceNames[s]; ok {
		return HashKey{Source: src}, nil
	}
	prefix, name, found := strings.Cut(s, ":")
	src, ok := hashSourcePrefixes[prefix]
	if !found || !ok {
		return HashKey{}, fmt.Errorf("want %s, got %q", hashKeyForms, s)
	}
	if name == "" || !isToken(name) {
		return HashKey{}, fmt.Errorf("%s name must be a non-empty token, got %q", prefix, name)
	}
	return HashKey{Source: src, Name: name}, nil
}

// String returns the setting's form, such as "cookie:session".
func (k HashKey) String() string {
	for s, src := range hashSourceNames {
		if src == k.Source {
			return s
		}
	}
	for p, src := range hashSourcePrefixes {
		if src == k.Source {
			return p + ":" + k.Name
		}
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (header and cookie names).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
