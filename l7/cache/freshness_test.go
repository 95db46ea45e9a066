package cache

import (
	"net/http"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func date(t time.Time) string { return t.Format(http.TimeFormat) }

func entry(status int, p *Policy, kv ...string) *Entry {
	var fs []Field
	for i := 0; i < len(kv); i += 2 {
		fs = append(fs, Field{kv[i], kv[i+1]})
	}
	return NewEntry(status, fs, []byte("body"), t0, t0, p)
}

func reqCC(s string) *Directives {
	var d Directives
	d.Reset()
	d.Parse([]byte(s))
	return &d
}

func TestLifetime(t *testing.T) {
	p := &Policy{HeuristicFraction: 0.1, HeuristicMax: time.Hour}
	cases := []struct {
		name      string
		e         *Entry
		want      time.Duration
		heuristic bool
	}{
		{"s-maxage over max-age", entry(200, p, "Cache-Control", "max-age=10, s-maxage=20"), 20 * time.Second, false},
		{"max-age over Expires", entry(200, p, "Cache-Control", "max-age=10", "Date", date(t0), "Expires", date(t0.Add(time.Hour))), 10 * time.Second, false},
		{"Expires minus Date", entry(200, p, "Date", date(t0), "Expires", date(t0.Add(30*time.Second))), 30 * time.Second, false},
		{"invalid Expires", entry(200, p, "Expires", "0"), 0, false},
		{"heuristic", entry(200, p, "Date", date(t0), "Last-Modified", date(t0.Add(-100*time.Second))), 10 * time.Second, true},
		{"heuristic cap", entry(200, p, "Date", date(t0), "Last-Modified", date(t0.Add(-100*time.Hour))), time.Hour, true},
		{"no heuristic for 302", entry(302, p, "Date", date(t0), "Last-Modified", date(t0.Add(-100*time.Second))), 0, false},
		{"default ttl", entry(200, &Policy{DefaultTTL: time.Minute}), time.Minute, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.e.Lifetime != c.want || c.e.Heuristic != c.heuristic {
				t.Errorf("got %v heuristic=%v; want %v heuristic=%v", c.e.Lifetime, c.e.Heuristic, c.want, c.heuristic)
			}
		})
	}
}

func TestStorable(t *testing.T) {
	p := &Policy{}
	none := reqCC("")
	cases := []struct {
		name string
		e    *Entry
		req  *Directives
		auth bool
		want bool
	}{
		{"max-age", entry(200, p, "Cache-Control", "max-age=60"), none, false, true},
		{"no-store", entry(200, p, "Cache-Control", "max-age=60, no-store"), none, false, false},
		{"request no-store", entry(200, p, "Cache-Control", "max-age=60"), reqCC("no-store"), false, false},
		{"private", entry(200, p, "Cache-Control", "private, max-age=60"), none, false, false},
		{"no-cache stored", entry(200, p, "Cache-Control", "no-cache", "ETag", `"a"`), none, false, true},
		{"nothing to go on", entry(200, p), none, false, false},
		{"validator only", entry(200, p, "ETag", `"a"`), none, false, true},
		{"302 without freshness", entry(302, p, "ETag", `"a"`), none, false, false},
		{"302 with max-age", entry(302, p, "Cache-Control", "max-age=5"), none, false, true},
		{"206", entry(206, p, "Cache-Control", "max-age=5"), none, false, false},
		{"vary star", entry(200, p, "Cache-Control", "max-age=5", "Vary", "*"), none, false, false},
		{"set-cookie", entry(200, p, "Cache-Control", "max-age=5", "Set-Cookie", "a=b"), none, false, false},
		{"set-cookie allowed", entry(200, &Policy{StoreSetCookie: true}, "Cache-Control", "max-age=5", "Set-Cookie", "a=b"), none, false, true},
		{"authorization", entry(200, p, "Cache-Control", "max-age=5"), none, true, false},
		{"authorization public", entry(200, p, "Cache-Control", "max-age=5, public"), none, true, true},
		{"authorization s-maxage", entry(200, p, "Cache-Control", "s-maxage=5"), none, true, true},
		{"must-understand overrides no-store", entry(200, p, "Cache-Control", "max-age=5, no-store, must-understand"), none, false, true},
		{"must-understand unknown status", entry(299, p, "Cache-Control", "max-age=5, must-understand"), none, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := p
			if c.name == "set-cookie allowed" {
				pol = &Policy{StoreSetCookie: true}
			}
			if got := c.e.Storable(c.req, c.auth, pol); got != c.want {
				t.Errorf("got %v; want %v", got, c.want)
			}
		})
	}
}

func TestAge(t *testing.T) {
	// Origin said Age: 10, the response took 2s, its Date is 5s before
	// it arrived: corrected_initial_age = max(5, 10+2) = 12.
	fs := []Field{{"Age", "10"}, {"Date", date(t0.Add(-5 * time.Second))}, {"Cache-Control", "max-age=60"}}
	e := NewEntry(200, fs, nil, t0.Add(-2*time.Second), t0, nil)
	if got := e.Age(t0.Add(3 * time.Second)); got != 15*time.Second {
		t.Errorf("got %v; want 15s", got)
	}
	// A Date far in the past dominates.
	e = NewEntry(200, []Field{{"Date", date(t0.Add(-100 * time.Second))}}, nil, t0, t0, nil)
	if got := e.Age(t0); got != 100*time.Second {
		t.Errorf("got %v; want 100s", got)
	}
}

func TestDecide(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	cases := []struct {
		name   string
		e      *Entry
		now    time.Time
		req    string
		pragma bool
		want   Verdict
	}{
		{"fresh", entry(200, nil, "Cache-Control", "max-age=10"), at(5), "", false, Fresh},
		{"stale", entry(200, nil, "Cache-Control", "max-age=10"), at(10), "", false, Validate},
		{"response no-cache", entry(200, nil, "Cache-Control", "max-age=10, no-cache"), at(1), "", false, Validate},
		{"request no-cache", entry(200, nil, "Cache-Control", "max-age=10"), at(1), "no-cache", false, Validate},
		{"pragma", entry(200, nil, "Cache-Control", "max-age=10"), at(1), "", true, Validate},
		{"request max-age", entry(200, nil, "Cache-Control", "max-age=10"), at(5), "max-age=3", false, Validate},
		{"request max-age ok", entry(200, nil, "Cache-Control", "max-age=10"), at(5), "max-age=6", false, Fresh},
		{"min-fresh", entry(200, nil, "Cache-Control", "max-age=10"), at(5), "min-fresh=6", false, Validate},
		{"min-fresh ok", entry(200, nil, "Cache-Control", "max-age=10"), at(5), "min-fresh=4", false, Fresh},
		{"max-stale", entry(200, nil, "Cache-Control", "max-age=10"), at(15), "max-stale=10", false, Stale},
		{"max-stale too little", entry(200, nil, "Cache-Control", "max-age=10"), at(25), "max-stale=10", false, Validate},
		{"max-stale any", entry(200, nil, "Cache-Control", "max-age=10"), at(1000), "max-stale", false, Stale},
		{"must-revalidate beats max-stale", entry(200, nil, "Cache-Control", "max-age=10, must-revalidate"), at(15), "max-stale", false, Validate},
		{"proxy-revalidate beats max-stale", entry(200, nil, "Cache-Control", "max-age=10, proxy-revalidate"), at(15), "max-stale", false, Validate},
		{"s-maxage beats max-stale", entry(200, nil, "Cache-Control", "s-maxage=10"), at(15), "max-stale", false, Validate},
		{"swr", entry(200, nil, "Cache-Control", "max-age=10, stale-while-revalidate=10"), at(15), "", false, StaleRevalidate},
		{"swr over", entry(200, nil, "Cache-Control", "max-age=10, stale-while-revalidate=10"), at(25), "", false, Validate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.e.Decide(c.now, reqCC(c.req), c.pragma); got != c.want {
				t.Errorf("got %v; want %v", got, c.want)
			}
		})
	}
}

func TestStaleIfError(t *testing.T) {
	e := entry(200, nil, "Cache-Control", "max-age=10, stale-if-error=20")
	if !e.StaleIfError(t0.Add(25*time.Second), reqCC("")) {
		t.Error("within the window: got false; want true")
	}
	if e.StaleIfError(t0.Add(31*time.Second), reqCC("")) {
		t.Error("past the window: got true; want false")
	}
	e = entry(200, nil, "Cache-Control", "max-age=10")
	if !e.StaleIfError(t0.Add(25*time.Second), reqCC("stale-if-error=60")) {
		t.Error("request's window: got false; want true")
	}
}

func TestRefresh(t *testing.T) {
	e := entry(200, nil, "Cache-Control", "max-age=1", "ETag", `"v1"`, "X-A", "old", "Content-Length", "4")
	n := e.Refresh([]Field{{"Cache-Control", "max-age=100"}, {"X-A", "new"}, {"Content-Length", "0"}}, t0.Add(time.Minute), t0.Add(time.Minute), nil)
	if n.Lifetime != 100*time.Second {
		t.Errorf("lifetime: got %v; want 100s", n.Lifetime)
	}
	if v, _ := n.Field("X-A"); v != "new" {
		t.Errorf("X-A: got %q; want %q", v, "new")
	}
	if v, _ := n.Field("Content-Length"); v != "4" {
		t.Errorf("Content-Length: got %q; want %q", v, "4")
	}
	if v, _ := n.Field("ETag"); v != `"v1"` || string(n.Body) != "body" {
		t.Errorf("ETag/body: got %q %q", v, n.Body)
	}
}

func TestNotModified(t *testing.T) {
	e := entry(200, nil, "ETag", `W/"x"`, "Last-Modified", date(t0))
	cases := []struct {
		inm, ims string
		want     bool
	}{
		{`"x"`, "", true},
		{`"y", W/"x"`, "", true},
		{`*`, "", true},
		{`"y"`, date(t0), false}, // If-None-Match wins
		{"", date(t0), true},
		{"", date(t0.Add(-time.Second)), false},
	}
	for _, c := range cases {
		if got := e.NotModified([]byte(c.inm), []byte(c.ims)); got != c.want {
			t.Errorf("NotModified(%q, %q) = %v; want %v", c.inm, c.ims, got, c.want)
		}
	}
	// No Last-Modified: the stored Date stands in (RFC 9111 section 4.3.2).
	d := entry(200, nil, "Date", date(t0))
	for ims, want := range map[string]bool{date(t0): true, date(t0.Add(time.Hour)): true, date(t0.Add(-time.Second)): false, "junk": false} {
		if got := d.NotModified(nil, []byte(ims)); got != want {
			t.Errorf("without Last-Modified: NotModified(%q) = %v; want %v", ims, got, want)
		}
	}
}

func TestAgeMalformedIsStale(t *testing.T) {
	for _, ages := range [][]string{{"abc"}, {"-7200"}, {"1.5"}, {"0s"}, {"0, 0"}, {"0", "0"}, {"0;a=b"}} {
		fs := []Field{{"Cache-Control", "max-age=3600"}}
		for _, a := range ages {
			fs = append(fs, Field{"Age", a})
		}
		e := NewEntry(200, fs, nil, t0, t0, nil)
		if v := e.Decide(t0, reqCC(""), false); v != Validate {
			t.Errorf("Age %q: got %v; want Validate (stale)", ages, v)
		}
	}
}

func TestSurrogateControl(t *testing.T) {
	p := &Policy{SurrogateTarget: "portico"}
	e := entry(200, p, "Cache-Control", "no-store", "Surrogate-Control", "max-age=100")
	if !e.Storable(reqCC(""), false, p) || e.Lifetime != 100*time.Second {
		t.Errorf("Surrogate-Control max-age over Cache-Control no-store: storable %v lifetime %v", e.Storable(reqCC(""), false, p), e.Lifetime)
	}
	e = entry(200, p, "Cache-Control", "max-age=100", "Surrogate-Control", "no-store")
	if e.Storable(reqCC(""), false, p) {
		t.Error("Surrogate-Control no-store: stored")
	}
	e = entry(200, p, "Cache-Control", "max-age=100", "Surrogate-Control", "no-store;cdn")
	if !e.Storable(reqCC(""), false, p) {
		t.Error("Surrogate-Control no-store for another target: not stored")
	}
}
