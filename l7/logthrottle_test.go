package l7

import (
	"testing"
	"time"
)

func TestLogThrottle(t *testing.T) {
	var l logThrottle
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int64
	}{
		{0, true, 0},
		{10 * time.Millisecond, false, 0},
		{500 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 3},
		{time.Second + time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
	}
	for _, s := range steps {
		suppressed, ok := l.allow(t0.Add(s.at))
		if ok != s.wantOK || suppressed != s.wantSuppressed {
			t.Errorf("at %v: got (%d, %v); want (%d, %v)", s.at, suppressed, ok, s.wantSuppressed, s.wantOK)
		}
	}
}
