package cache

import (
	"strings"
	"unsafe"
)

// KeySpec names the parts of a request that make its cache key. The URL
// parts come first, so that a key reads "http://example.com/a?b" with the
// default parts and purges by prefix work on it.
type KeySpec struct {
	Method, Scheme, Host, Path, Query bool
	// Headers are canonical request header names whose values join the key.
	Headers []string
}

// HeaderGetter is the part of a request header that keys read;
// *fasthttp.RequestHeader has it.
type HeaderGetter interface {
	Peek(key string) []byte
}

// KeyInput is the request as seen by the cache key.
type KeyInput struct {
	Method, Scheme, Host, Path, Query []byte
}

// Append appends the key of in to dst. HEAD has the key of GET, whose
// stored response answers it. The host is lower-cased.
func (k *KeySpec) Append(dst []byte, in *KeyInput, h HeaderGetter) []byte {
	if k.Scheme {
		dst = append(append(dst, in.Scheme...), "://"...)
	}
	if k.Host {
		for _, c := range in.Host {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
	}
	if k.Path {
		dst = append(dst, in.Path...)
	}
	if k.Query && len(in.Query) > 0 {
		dst = append(append(dst, '?'), in.Query...)
	}
	if k.Method {
		m := in.Method
		if string(m) == "HEAD" {
			m = []byte("GET")
		}
		dst = append(append(dst, 0), m...)
	}
	for _, name := range k.Headers {
		dst = append(append(append(append(dst, 0), name...), ':'), h.Peek(name)...)
	}
	return dst
}

// appendVariant appends to a primary key the request's values of the
// fields an entry varies on, normalised: surrounding whitespace trimmed
// and the whitespace around commas dropped (RFC 9111 section 4.1).
func appendVariant(dst []byte, names []string, h HeaderGetter) []byte {
	dst = append(dst, 1)
	for _, n := range names {
		dst = append(append(dst, n...), ':')
		v := trimOWS(h.Peek(n))
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c == ',' {
				for len(dst) > 0 && (dst[len(dst)-1] == ' ' || dst[len(dst)-1] == '\t') {
					dst = dst[:len(dst)-1]
				}
				dst = append(dst, ',')
				for i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t') {
					i++
				}
				continue
			}
			dst = append(dst, c)
		}
		dst = append(dst, '\n')
	}
	return dst
}

// keyURL is the URL part of a key: up to the first separator.
func keyURL(k string) string {
	if i := strings.IndexAny(k, "\x00\x01"); i >= 0 {
		return k[:i]
	}
	return k
}

func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
