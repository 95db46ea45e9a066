package cache

import (
	"bytes"
	"strings"
	"testing"
)

// lines is a request header with several lines per field.
type lines map[string][]string

func (h lines) Peek(k string) []byte {
	if v := h[k]; len(v) > 0 {
		return []byte(v[0])
	}
	return nil
}

func (h lines) PeekAll(k string) [][]byte {
	var out [][]byte
	for _, v := range h[k] {
		out = append(out, []byte(v))
	}
	return out
}

func TestAppendVariantNormalises(t *testing.T) {
	cases := []struct {
		name  string
		field string
		a, b  []string
		same  bool
	}{
		{"lines joined", "Foo", []string{"1, 2"}, []string{"1", "2"}, true},
		{"whitespace", "Foo", []string{"1,2"}, []string{" 1 ,\t2 "}, true},
		{"empty members", "Foo", []string{"1,2"}, []string{"1,,2,"}, true},
		{"order kept for others", "Foo", []string{"1, 2"}, []string{"2, 1"}, false},
		{"case kept for others", "Foo", []string{"a"}, []string{"A"}, false},
		{"language order", "Accept-Language", []string{"en, de"}, []string{"de, en"}, true},
		{"language case", "Accept-Language", []string{"en, de"}, []string{"eN, De"}, true},
		{"language lines", "Accept-Language", []string{"en, de"}, []string{"de", "en"}, true},
		{"weight spacing", "Accept-Encoding", []string{"gzip;q=0.5, br"}, []string{"BR,gzip ; q=0.5"}, true},
		{"weights differ", "Accept-Encoding", []string{"gzip;q=0.5, br"}, []string{"gzip, br"}, false},
		{"absent and empty", "Foo", nil, []string{""}, true},
	}
	for _, c := range cases {
		ka := appendVariant(nil, []string{c.field}, lines{c.field: c.a})
		kb := appendVariant(nil, []string{c.field}, lines{c.field: c.b})
		if bytes.Equal(ka, kb) != c.same {
			t.Errorf("%s: %q and %q: same key %v; want %v", c.name, ka, kb, !c.same, c.same)
		}
	}
	// Without PeekAll, the first line.
	if got := string(appendVariant(nil, []string{"Foo"}, hdr{"Foo": " 1 , 2"})); got != "\x01Foo:1,2\n" {
		t.Errorf("got %q", got)
	}
}

func FuzzAppendVariant(f *testing.F) {
	f.Add("en, de;q=0.5", "x")
	f.Fuzz(func(t *testing.T, a, b string) {
		h := lines{"Accept-Language": {a, b}, "Foo": {a, b}}
		k := appendVariant(nil, []string{"Accept-Language", "Foo"}, h)
		if bytes.Count(k, []byte("\n")) < 2 && !strings.ContainsAny(a+b, "\n") {
			t.Fatalf("key %q: want a line per field", k)
		}
		// The unordered field's key does not depend on the order of lines.
		r := appendVariant(nil, []string{"Accept-Language"}, lines{"Accept-Language": {b, a}})
		l := appendVariant(nil, []string{"Accept-Language"}, lines{"Accept-Language": {a, b}})
		if !bytes.Equal(r, l) && strings.Count(a+","+b, ",") < maxSorted {
			t.Errorf("lines %q, %q: keys %q and %q differ", a, b, l, r)
		}
	})
}

func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"0", "0,7200", "7200, 0", "0, 0", "1.5", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, ok := ParseAge([]byte(v))
		if ok && (n < 0 || n > maxDelta) {
			t.Errorf("ParseAge(%q) = %d: out of range", v, n)
		}
	})
}
