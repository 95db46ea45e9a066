package cache

import (
	"bytes"
	"sort"
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

// MultiHeaderGetter is a HeaderGetter that also returns every line of a
// field; *fasthttp.RequestHeader has it. Without it, a variant is keyed by
// a field's first line only.
type MultiHeaderGetter interface {
	HeaderGetter
	PeekAll(key string) [][]byte
}

// appendVariant appends to a primary key the request's values of the
// fields an entry varies on, normalised (RFC 9111 section 4.1): several
// lines of a field are joined into one list, the whitespace around its
// members dropped, empty members left out. The members of the fields in
// unorderedFields are also lower-cased and sorted, so that "en, de" and
// "De,EN" select the same variant. Names are canonical already.
func appendVariant(dst []byte, names []string, h HeaderGetter) []byte {
	dst = append(dst, 1)
	mh, multi := h.(MultiHeaderGetter)
	for _, n := range names {
		dst = append(append(dst, n...), ':')
		if multi {
			dst = appendFieldValue(dst, n, mh.PeekAll(n))
		} else {
			dst = appendFieldValue(dst, n, [][]byte{h.Peek(n)})
		}
		dst = append(dst, '\n')
	}
	return dst
}

// unorderedFields are the request fields whose list members are
// case-insensitive and whose order carries no meaning: each member states
// its own weight (RFC 9110 sections 12.5.3 and 12.5.4).
func unorderedField(name string) bool {
	return name == "Accept-Encoding" || name == "Accept-Language" || name == "Accept-Charset"
}

// maxSorted is the most members of an unordered field that are sorted; a
// longer list is keyed as sent, only lower-cased.
const maxSorted = 32

func appendFieldValue(dst []byte, name string, lines [][]byte) []byte {
	fold := unorderedField(name)
	start := len(dst)
	var spans [maxSorted][2]int
	n := 0
	for _, v := range lines {
		for len(v) > 0 {
			var m []byte
			m, v, _ = bytes.Cut(v, []byte(","))
			if m = trimOWS(m); len(m) == 0 {
				continue
			}
			if len(dst) > start {
				dst = append(dst, ',')
			}
			if !fold {
				dst = append(dst, m...)
				continue
			}
			s := len(dst)
			for _, c := range m {
				switch {
				case c == ' ' || c == '\t':
					continue // "de; q=0.5" is "de;q=0.5"
				case 'A' <= c && c <= 'Z':
					c += 'a' - 'A'
				}
				dst = append(dst, c)
			}
			if n < maxSorted {
				spans[n] = [2]int{s, len(dst)}
			}
			n++
		}
	}
	if !fold || n < 2 || n > maxSorted {
		return dst
	}
	sp := spans[:n]
	sort.Slice(sp, func(i, j int) bool { return bytes.Compare(dst[sp[i][0]:sp[i][1]], dst[sp[j][0]:sp[j][1]]) < 0 })
	end := len(dst)
	for i, x := range sp {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, dst[x[0]:x[1]]...)
	}
	return append(dst[:start], dst[end:]...)
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
