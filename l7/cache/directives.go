package cache

import (
	"bytes"
	"strconv"
)

// Directives are the Cache-Control directives a cache acts on, from a
// request or a response. Durations are whole seconds; -1 means absent.
// The zero value is not ready: use Reset.
type Directives struct {
	MaxAge, SMaxAge, MaxStale, MinFresh      int64
	StaleWhileRevalidate, StaleIfError       int64
	NoStore, NoCache, Private, Public        bool
	MustRevalidate, ProxyRevalidate          bool
	OnlyIfCached, MustUnderstand, MaxStaleOK bool // MaxStaleOK: max-stale without a value (any staleness)
	NoTransform, Immutable                   bool
}

// Reset marks every duration absent and every flag unset.
func (d *Directives) Reset() {
	*d = Directives{MaxAge: -1, SMaxAge: -1, MaxStale: -1, MinFresh: -1, StaleWhileRevalidate: -1, StaleIfError: -1}
}

// maxDelta is the largest delta-seconds kept: 2^31, as RFC 9111 section
// 1.2.2 says a larger value is to be taken as.
const maxDelta = 1 << 31

// Parse adds the directives in one Cache-Control field value to d. Names
// are case-insensitive; a value may be a token or a quoted string; unknown
// directives are ignored. A duration that does not parse makes the directive
// count as present with a value of 0 (the stale-averse reading RFC 9111
// section 4.2.1 asks for); a repeated duration keeps the lowest value.
// Parse does not allocate.
func (d *Directives) Parse(v []byte) {
	for len(v) > 0 {
		var item []byte
		// A comma inside a quoted string does not end the item.
		i, inQuote := 0, false
		for ; i < len(v); i++ {
			c := v[i]
			if c == '"' {
				inQuote = !inQuote
			} else if c == '\\' && inQuote {
				i++
			} else if c == ',' && !inQuote {
				break
			}
		}
		if i > len(v) {
			i = len(v)
		}
		item, v = v[:i], v[min(i+1, len(v)):]
		item = trimOWS(item)
		if len(item) == 0 {
			continue
		}
		name, val := item, []byte(nil)
		hasVal := false
		if eq := bytes.IndexByte(item, '='); eq >= 0 {
			name, val, hasVal = trimOWS(item[:eq]), trimOWS(item[eq+1:]), true
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
		}
		switch {
		case eqFold(name, "max-age"):
			setDelta(&d.MaxAge, val)
		case eqFold(name, "s-maxage"):
			setDelta(&d.SMaxAge, val)
		case eqFold(name, "max-stale"):
			if hasVal {
				setDelta(&d.MaxStale, val)
			} else {
				d.MaxStaleOK = true
			}
		case eqFold(name, "min-fresh"):
			setDelta(&d.MinFresh, val)
		case eqFold(name, "stale-while-revalidate"):
			setDelta(&d.StaleWhileRevalidate, val)
		case eqFold(name, "stale-if-error"):
			setDelta(&d.StaleIfError, val)
		case eqFold(name, "no-store"):
			d.NoStore = true
		case eqFold(name, "no-cache"):
			// The qualified form (no-cache="Set-Cookie") is taken as the
			// unqualified one, which RFC 9111 section 5.2.2.4 allows.
			d.NoCache = true
		case eqFold(name, "private"):
			d.Private = true // qualified or not: a shared cache does not store it
		case eqFold(name, "public"):
			d.Public = true
		case eqFold(name, "must-revalidate"):
			d.MustRevalidate = true
		case eqFold(name, "proxy-revalidate"):
			d.ProxyRevalidate = true
		case eqFold(name, "only-if-cached"):
			d.OnlyIfCached = true
		case eqFold(name, "must-understand"):
			d.MustUnderstand = true
		case eqFold(name, "no-transform"):
			d.NoTransform = true
		case eqFold(name, "immutable"):
			d.Immutable = true
		}
	}
}

// ParseSurrogate adds to d the directives of a Surrogate-Control field
// value (W3C Edge Architecture 1.0) that apply to the surrogate named
// target: those without a target, and those whose ";target" is it.
// It reports whether any applied.
func (d *Directives) ParseSurrogate(v []byte, target string) bool {
	applied := false
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		item := trimOWS(v[:i])
		v = v[min(i+1, len(v)):]
		if j := bytes.IndexByte(item, ';'); j >= 0 {
			if target == "" || string(trimOWS(item[j+1:])) != target {
				continue
			}
			item = trimOWS(item[:j])
		}
		if len(item) > 0 {
			d.Parse(item)
			applied = true
		}
	}
	return applied
}

func setDelta(dst *int64, v []byte) {
	n, ok := parseDelta(v)
	if !ok {
		n = 0
	}
	if *dst < 0 || n < *dst {
		*dst = n
	}
}

// parseDelta parses delta-seconds: digits only, saturating at maxDelta.
func parseDelta(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + int64(c-'0'); n > maxDelta {
			n = maxDelta
		}
	}
	return n, true
}

// ParseAge parses one Age field line; ok is false when its age is unknown
// (the caller then takes the response as stale). Age is a singleton,
// delta-seconds (RFC 9111 section 5.1); a list in one line, which an
// intermediary that appends instead of replacing leaves, is read at its
// first member ("0,7200" is 0), as the HTTP WG cache tests expect and as
// Varnish, Squid, Traffic Server, Fastly and the browsers do. Every member
// must be delta-seconds, and a list that repeats a value ("0, 0") is
// unknown: the tests expect that too (age-parse-dup-0, -dup-old), though
// RFC 9110 section 5.3 would read it as two equal lines.
func ParseAge(v []byte) (int64, bool) {
	first, rest, list := bytes.Cut(v, []byte(","))
	n, ok := parseDelta(trimOWS(first))
	if !ok || !list {
		return n, ok
	}
	for len(rest) > 0 {
		var m []byte
		m, rest, _ = bytes.Cut(rest, []byte(","))
		k, ok := parseDelta(trimOWS(m))
		if !ok || k == n {
			return 0, false
		}
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// eqFold reports whether b equals the lower-case ASCII s, ignoring case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// AppendAge appends an Age value in seconds, capped at 2^31.
func AppendAge(dst []byte, seconds int64) []byte {
	if seconds < 0 {
		seconds = 0
	}
	if seconds > maxDelta {
		seconds = maxDelta
	}
	return strconv.AppendInt(dst, seconds, 10)
}
