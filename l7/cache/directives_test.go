package cache

import "testing"

func TestDirectivesParse(t *testing.T) {
	cases := []struct {
		name, in string
		check    func(d Directives) bool
	}{
		{"max-age", "max-age=60", func(d Directives) bool { return d.MaxAge == 60 && d.SMaxAge == -1 }},
		{"case and spaces", " Max-Age = 5 , NO-STORE", func(d Directives) bool { return d.MaxAge == 5 && d.NoStore }},
		{"quoted", `max-age="7"`, func(d Directives) bool { return d.MaxAge == 7 }},
		{"quoted comma", `private="a,b", max-age=3`, func(d Directives) bool { return d.Private && d.MaxAge == 3 }},
		{"bad value is zero", "max-age=abc", func(d Directives) bool { return d.MaxAge == 0 }},
		{"repeated keeps lowest", "max-age=10, max-age=3", func(d Directives) bool { return d.MaxAge == 3 }},
		{"huge saturates", "max-age=99999999999999999999", func(d Directives) bool { return d.MaxAge == maxDelta }},
		{"max-stale bare", "max-stale", func(d Directives) bool { return d.MaxStaleOK && d.MaxStale == -1 }},
		{"max-stale value", "max-stale=9", func(d Directives) bool { return !d.MaxStaleOK && d.MaxStale == 9 }},
		{"rfc5861", "stale-while-revalidate=30, stale-if-error=60", func(d Directives) bool {
			return d.StaleWhileRevalidate == 30 && d.StaleIfError == 60
		}},
		{"flags", "no-cache, must-revalidate, proxy-revalidate, public, only-if-cached, s-maxage=4, min-fresh=2",
			func(d Directives) bool {
				return d.NoCache && d.MustRevalidate && d.ProxyRevalidate && d.Public && d.OnlyIfCached && d.SMaxAge == 4 && d.MinFresh == 2
			}},
		{"empty items", ",,max-age=1,,", func(d Directives) bool { return d.MaxAge == 1 }},
		{"unknown ignored", "foo=bar, baz", func(d Directives) bool { return d.MaxAge == -1 && !d.NoStore }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Directives
			d.Reset()
			d.Parse([]byte(c.in))
			if !c.check(d) {
				t.Errorf("Parse(%q) = %+v", c.in, d)
			}
		})
	}
}

func TestDirectivesParseNoAlloc(t *testing.T) {
	v := []byte(`public, max-age=60, s-maxage=30, stale-while-revalidate=5, private="x,y"`)
	var d Directives
	if n := testing.AllocsPerRun(100, func() { d.Reset(); d.Parse(v) }); n != 0 {
		t.Errorf("got %v allocs; want 0", n)
	}
}

func FuzzDirectivesParse(f *testing.F) {
	f.Add(`max-age=1, private="a,b\"c", no-store`)
	f.Fuzz(func(t *testing.T, s string) {
		var d Directives
		d.Reset()
		d.Parse([]byte(s))
	})
}

func TestParseSurrogate(t *testing.T) {
	var d Directives
	d.Reset()
	if !d.ParseSurrogate([]byte("max-age=10;other, no-store;me, max-age=5"), "me") {
		t.Fatal("nothing applied")
	}
	if d.MaxAge != 5 || !d.NoStore {
		t.Errorf("got max-age %d no-store %v; want 5 true", d.MaxAge, d.NoStore)
	}
	d.Reset()
	if d.ParseSurrogate([]byte("max-age=10;other"), "me") || d.MaxAge != -1 {
		t.Errorf("a directive for another target applied: %+v", d)
	}
}

func TestParseAge(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"60", 60, true},
		{" 60 ", 60, true},
		{"0,7200", 0, true},
		{"7200,0", 7200, true},
		{"0, 0", 0, false},
		{"3600, 3600", 0, false},
		{"0,abc", 0, false},
		{"abc", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"7200;foo=bar", 0, false},
		{"", 0, false},
		{"99999999999", maxDelta, true},
	}
	for _, c := range cases {
		n, ok := ParseAge([]byte(c.in))
		if ok != c.ok || ok && n != c.want {
			t.Errorf("ParseAge(%q) = %d, %v; want %d, %v", c.in, n, ok, c.want, c.ok)
		}
	}
}
