package l7

import (
	"bytes"
	"testing"
)

func TestNormalPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"//a///b//", "/a/b/"},
		{"/a/./b", "/a/b"},
		{"/a/.", "/a/"},
		{"/.", "/"},
		{"/a/b/..", "/a/"},
		{"/a/../b", "/b"},
		{"/api/../admin", "/admin"},
		{"/..", "/"},
		{"/../../x", "/x"},
		{"/a/b/../../../c", "/c"},
		{"/.hidden/..x/...", "/.hidden/..x/..."},
		{"/api/%2e%2e/admin", "/admin"},
		{"/api/.%2E/admin", "/admin"},
		{"/%61pi/%7Eu_%2D", "/api/~u_-"},
		// Reserved and other escapes stay as they came, case included.
		{"/a%2Fb/../c", "/c"},
		{"/a%2fb", "/a%2fb"},
		{"/my%20docs/x%3Fy", "/my%20docs/x%3Fy"},
		{"/%25", "/%25"},
		{"/%252e%252e/x", "/%252e%252e/x"},
		// A "%" that starts no escape is encoded, so decoding never makes one.
		{"/100%", "/100%25"},
		{"/a%zz", "/a%25zz"},
		{"/%%32%65", "/%252e"},
		{"/a%2", "/a%252"},
		// Not a path: left alone.
		{"*", "*"},
		{"", ""},
	} {
		got := string(appendNormalPath(nil, []byte(tc.in)))
		if got != tc.want {
			t.Errorf("appendNormalPath(%q): got %q; want %q", tc.in, got, tc.want)
		}
		if normal := isNormalPath([]byte(tc.in)); normal != (tc.in == tc.want) {
			t.Errorf("isNormalPath(%q): got %v; want %v", tc.in, normal, tc.in == tc.want)
		}
	}
}

func TestNormalPathAppends(t *testing.T) {
	got := string(appendNormalPath([]byte("prefix"), []byte("/a/../..")))
	if want := "prefix/"; got != want {
		t.Fatalf("got %q; want %q (.. must not climb into dst)", got, want)
	}
}

func FuzzNormalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x/./y/", "/%2e%2E/%2F%61", "/%%32%65", "/a%", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p := []byte(in)
		n := appendNormalPath(nil, p)
		if normal := isNormalPath(p); normal != bytes.Equal(n, p) {
			t.Fatalf("isNormalPath(%q) = %v, but normal form is %q", in, normal, n)
		}
		if again := appendNormalPath(nil, n); !bytes.Equal(again, n) {
			t.Fatalf("not stable: %q -> %q -> %q", in, n, again)
		}
		if len(p) > 0 && p[0] == '/' {
			if len(n) == 0 || n[0] != '/' {
				t.Fatalf("%q -> %q: want a leading /", in, n)
			}
			for _, bad := range []string{"//", "/./", "/../"} {
				if bytes.Contains(n, []byte(bad)) {
					t.Fatalf("%q -> %q: contains %q", in, n, bad)
				}
			}
		}
	})
}
