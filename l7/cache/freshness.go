package cache

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// Field is one stored header field line.
type Field struct{ Name, Value string }

// Policy is a route's part of the storing decision.
type Policy struct {
	// DefaultTTL is the freshness lifetime of a response that states none
	// and allows no heuristic; 0: such responses are stored only when they
	// carry a validator (and are then revalidated before each use).
	DefaultTTL time.Duration
	// HeuristicFraction of the time since Last-Modified is the lifetime of a
	// response without explicit freshness (RFC 9111 section 4.2.2); 0: off.
	HeuristicFraction float64
	// HeuristicMax caps a heuristic lifetime.
	HeuristicMax time.Duration
	// StoreSetCookie lets responses with Set-Cookie be stored.
	StoreSetCookie bool
	// SurrogateTarget is this cache's name in Surrogate-Control targets;
	// directives aimed at other names are ignored.
	SurrogateTarget string
}

// Entry is a stored response: immutable once made, shared by every hit.
type Entry struct {
	Status int
	// Header holds the end-to-end fields as the origin sent them, Age
	// excluded; hop-by-hop fields are the caller's to leave out.
	Header []Field
	Body   []byte
	// Complete is false for a response stored without its body (HEAD).
	Complete bool

	RequestTime, ResponseTime time.Time
	// initialAge is corrected_initial_age of RFC 9111 section 4.2.3.
	initialAge time.Duration
	// Lifetime is the freshness lifetime (section 4.2.1).
	Lifetime  time.Duration
	Heuristic bool
	CC        Directives
	Date      time.Time
	ETag      string
	// LastModified is the field's text, for If-Modified-Since.
	LastModified string
	lastMod      time.Time
	// Vary lists the canonical names of the request fields the response
	// varies on; VaryStar is Vary: *, which is never served from cache.
	Vary     []string
	VaryStar bool
	// Backend names the backend that sent the response.
	Backend string
	// Extra is the proxy's own data for the entry (its prepared response
	// header), set with SetExtra before the entry is stored; read-only
	// after, like the rest.
	Extra any

	hasExpires, badExpires, setCookie bool
	expires                           time.Time
	size                              int
}

// NewEntry parses the caching metadata of a response received at
// respTime for a request sent at reqTime. The entry keeps fields and body
// as given, without a copy.
func NewEntry(status int, fields []Field, body []byte, reqTime, respTime time.Time, p *Policy) *Entry {
	e := &Entry{Status: status, Header: fields, Body: body, Complete: true, RequestTime: reqTime, ResponseTime: respTime}
	e.CC.Reset()
	var ageValue int64
	ages := 0
	var sc Directives
	sc.Reset()
	surrogate := false
	target := ""
	if p != nil {
		target = p.SurrogateTarget
	}
	for _, f := range fields {
		switch {
		case strings.EqualFold(f.Name, "Cache-Control"):
			e.CC.Parse(s2b(f.Value))
		case strings.EqualFold(f.Name, "Date"):
			e.Date, _ = http.ParseTime(f.Value)
		case strings.EqualFold(f.Name, "Expires"):
			e.hasExpires = true
			t, err := http.ParseTime(strings.TrimSpace(f.Value))
			e.expires, e.badExpires = t, err != nil
		case strings.EqualFold(f.Name, "Age"):
			// One Age line (see ParseAge), or the response is taken as
			// stale: a second line, a sign, a fraction or a parameter
			// all say the age is unknown.
			ages++
			if n, ok := ParseAge(s2b(f.Value)); ok && ages == 1 {
				ageValue = n
			} else {
				ageValue = maxDelta
			}
		case strings.EqualFold(f.Name, "ETag"):
			e.ETag = f.Value
		case strings.EqualFold(f.Name, "Last-Modified"):
			e.LastModified = f.Value
			e.lastMod, _ = http.ParseTime(f.Value)
		case strings.EqualFold(f.Name, "Vary"):
			for _, n := range strings.Split(f.Value, ",") {
				n = strings.TrimSpace(n)
				switch {
				case n == "*":
					e.VaryStar = true
				case n != "":
					e.Vary = append(e.Vary, textproto.CanonicalMIMEHeaderKey(n))
				}
			}
		case strings.EqualFold(f.Name, "Set-Cookie"):
			e.setCookie = true
		case strings.EqualFold(f.Name, "Surrogate-Control"):
			surrogate = sc.ParseSurrogate(s2b(f.Value), target) || surrogate
		}
		e.size += len(f.Name) + len(f.Value) + 32
	}
	e.size += len(body) + 256
	if surrogate {
		// Surrogate-Control speaks to this cache; Cache-Control, then, to
		// the caches downstream (Edge Architecture section 2.2).
		e.CC = sc
		e.hasExpires = false
	}
	date := e.Date
	if date.IsZero() {
		date = respTime
	}
	apparent := max(respTime.Sub(date), 0)
	corrected := time.Duration(ageValue)*time.Second + max(respTime.Sub(reqTime), 0)
	e.initialAge = max(apparent, corrected)
	e.Lifetime, e.Heuristic = e.lifetime(date, p)
	return e
}

// heuristicStatus reports whether status is cacheable by default (RFC 9110
// section 15.1).
func heuristicStatus(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus: the status codes whose caching rules this cache
// implements, for must-understand (RFC 9111 section 5.2.2.3).
func understoodStatus(status int) bool {
	return heuristicStatus(status) || status == 302 || status == 303 || status == 307 || status == 403 || status == 500 || status == 502 || status == 503 || status == 504
}

func (e *Entry) lifetime(date time.Time, p *Policy) (time.Duration, bool) {
	switch {
	case e.CC.SMaxAge >= 0:
		return time.Duration(e.CC.SMaxAge) * time.Second, false
	case e.CC.MaxAge >= 0:
		return time.Duration(e.CC.MaxAge) * time.Second, false
	case e.hasExpires:
		if e.badExpires {
			return 0, false // an invalid Expires means already expired
		}
		return max(e.expires.Sub(date), 0), false
	}
	if !heuristicStatus(e.Status) {
		return 0, false
	}
	if p != nil && p.HeuristicFraction > 0 && !e.lastMod.IsZero() && date.After(e.lastMod) {
		d := time.Duration(float64(date.Sub(e.lastMod)) * p.HeuristicFraction)
		if p.HeuristicMax > 0 && d > p.HeuristicMax {
			d = p.HeuristicMax
		}
		return d.Truncate(time.Second), true
	}
	if p != nil && p.DefaultTTL > 0 {
		return p.DefaultTTL, true
	}
	return 0, false
}

// Storable reports whether a shared cache may store the response for a
// GET request with directives req (RFC 9111 section 3); authorized is
// whether the request had Authorization (section 3.5).
func (e *Entry) Storable(req *Directives, authorized bool, p *Policy) bool {
	switch {
	case e.Status < 200 || e.Status == 206 || e.Status == 304 || e.Status > 599:
		return false
	case e.CC.MustUnderstand && !understoodStatus(e.Status):
		return false
	case e.CC.NoStore && !(e.CC.MustUnderstand && understoodStatus(e.Status)):
		return false
	case req.NoStore, e.CC.Private, e.VaryStar:
		return false
	case e.setCookie && (p == nil || !p.StoreSetCookie):
		return false
	case authorized && !e.CC.MustRevalidate && !e.CC.Public && e.CC.SMaxAge < 0:
		return false
	}
	explicit := e.CC.Public || e.CC.MaxAge >= 0 || e.CC.SMaxAge >= 0 || e.hasExpires
	if !explicit && !heuristicStatus(e.Status) {
		return false
	}
	// Keep what can be used: fresh for a while, revalidated by a validator,
	// or served stale under RFC 5861.
	return e.Lifetime > 0 || e.ETag != "" || e.LastModified != "" ||
		e.CC.StaleWhileRevalidate > 0 || e.CC.StaleIfError > 0
}

// SetExtra sets Extra, whose size in bytes counts toward the entry's, on
// an entry being built (before it is stored).
func (e *Entry) SetExtra(x any, size int) {
	e.Extra = x
	e.size += size
}

// SetBody sets the body of an entry being built (before it is stored).
func (e *Entry) SetBody(b []byte) {
	e.size += len(b) - len(e.Body)
	e.Body = b
}

// Age is the entry's current age at now (RFC 9111 section 4.2.3).
func (e *Entry) Age(now time.Time) time.Duration {
	return e.initialAge + max(now.Sub(e.ResponseTime), 0)
}

// Size is the entry's weight in the byte budget.
func (e *Entry) Size() int { return e.size }

// Verdict is how a stored response may serve a request.
type Verdict int

const (
	// Validate: send a conditional request; use the entry only on 304.
	Validate Verdict = iota
	// Fresh: serve it.
	Fresh
	// Stale: serve it, stale, as the request allows (max-stale).
	Stale
	// StaleRevalidate: serve it stale and revalidate in the background
	// (stale-while-revalidate).
	StaleRevalidate
)

// Decide tells how e may serve a request with directives req at now;
// pragmaNoCache is Pragma: no-cache on a request without Cache-Control.
func (e *Entry) Decide(now time.Time, req *Directives, pragmaNoCache bool) Verdict {
	if e.CC.NoCache || req.NoCache || pragmaNoCache || !e.Complete {
		return Validate
	}
	age := e.Age(now)
	if req.MaxAge >= 0 && age > time.Duration(req.MaxAge)*time.Second {
		return Validate
	}
	if age < e.Lifetime {
		if req.MinFresh >= 0 && e.Lifetime-age < time.Duration(req.MinFresh)*time.Second {
			return Validate
		}
		return Fresh
	}
	if e.noStale() {
		return Validate
	}
	staleness := age - e.Lifetime
	if req.MaxStaleOK || req.MaxStale >= 0 && staleness <= time.Duration(req.MaxStale)*time.Second {
		return Stale
	}
	if e.CC.StaleWhileRevalidate >= 0 && staleness < time.Duration(e.CC.StaleWhileRevalidate)*time.Second {
		return StaleRevalidate
	}
	return Validate
}

// noStale: a shared cache must not serve the entry stale (RFC 9111
// sections 5.2.2.2, 5.2.2.8 and 5.2.2.10).
func (e *Entry) noStale() bool {
	return e.CC.MustRevalidate || e.CC.ProxyRevalidate || e.CC.SMaxAge >= 0 || e.CC.NoCache
}

// StaleIfError reports whether e may stand in for an origin error at now
// (RFC 5861 section 4), under the response's or the request's window.
func (e *Entry) StaleIfError(now time.Time, req *Directives) bool {
	if e.noStale() || !e.Complete {
		return false
	}
	w := max(e.CC.StaleIfError, req.StaleIfError)
	if w < 0 {
		return false
	}
	return e.Age(now)-e.Lifetime <= time.Duration(w)*time.Second
}

// Field returns the first value of the named field, and whether it is there.
func (e *Entry) Field(name string) (string, bool) {
	for _, f := range e.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Refresh merges the fields of a 304 answer to a revalidation into e
// (RFC 9111 section 4.3.4) and returns the new entry; e is not changed.
// The body is shared.
func (e *Entry) Refresh(fields []Field, reqTime, respTime time.Time, p *Policy) *Entry {
	merged := make([]Field, 0, len(e.Header)+len(fields))
	for _, f := range e.Header {
		if !hasField(fields, f.Name) || skipOnRefresh(f.Name) {
			merged = append(merged, f)
		}
	}
	for _, f := range fields {
		if !skipOnRefresh(f.Name) {
			merged = append(merged, f)
		}
	}
	n := NewEntry(e.Status, merged, e.Body, reqTime, respTime, p)
	n.Complete, n.Backend = e.Complete, e.Backend
	return n
}

func hasField(fields []Field, name string) bool {
	for _, f := range fields {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// skipOnRefresh names the fields a 304 does not replace: those that
// describe the stored body (RFC 9111 section 3.2), and its validator and
// digest, which the HTTP WG cache tests expect kept.
func skipOnRefresh(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Content-Encoding") ||
		strings.EqualFold(name, "Transfer-Encoding") || strings.EqualFold(name, "Content-Range") ||
		strings.EqualFold(name, "ETag") || strings.EqualFold(name, "Content-MD5")
}

// NotModified reports whether a client's conditional GET or HEAD is
// answered with 304 by e (RFC 9110 section 13.2.2): If-None-Match first,
// else If-Modified-Since.
func (e *Entry) NotModified(ifNoneMatch, ifModifiedSince []byte) bool {
	if len(ifNoneMatch) > 0 {
		if e.ETag == "" {
			return false
		}
		return etagMatchWeak(ifNoneMatch, e.ETag)
	}
	if len(ifModifiedSince) == 0 {
		return false
	}
	// Without Last-Modified, the stored Date, or the time the response
	// was received (RFC 9111 section 4.3.2).
	lm := e.lastMod
	if lm.IsZero() {
		lm = e.Date
	}
	if lm.IsZero() {
		lm = e.ResponseTime
	}
	t, err := http.ParseTime(string(ifModifiedSince))
	return err == nil && !lm.After(t)
}

// etagMatchWeak matches a list of entity tags (or *) with weak comparison.
func etagMatchWeak(list []byte, etag string) bool {
	if bytes.Equal(trimOWS(list), []byte("*")) {
		return true
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range bytes.Split(list, []byte(",")) {
		t = bytes.TrimPrefix(trimOWS(t), []byte("W/"))
		if string(t) == want {
			return true
		}
	}
	return false
}
