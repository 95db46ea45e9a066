package l4

import (
	"os"
	"strings"
	"testing"
)

// TestGnetVersion: registerFD reaches into gnet's internals as they are in
// gnetVersion; go.mod must require exactly that version (a new one is
// checked by hand, then written in gnetfd.go).
func TestGnetVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := gnetModule + " " + gnetVersion
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == gnetModule || len(f) >= 3 && f[1] == gnetModule {
			if got := strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require ")), " "); !strings.HasPrefix(got, want) {
				t.Fatalf("go.mod: got %q; want %q", got, want)
			}
			return
		}
	}
	t.Fatalf("go.mod does not require %s", gnetModule)
}
