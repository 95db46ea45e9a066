package lb

import "testing"

func TestRoundRobinOrder(t *testing.T) {
	p := newTestPool(t, poolConfig(PolicyRoundRobin, backendConfigs(3, nil)))
	var got []string
	for range 7 {
		l, err := p.Pick(Key{})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.Name)
		l.Release(Success)
	}
	if want := []string{"b0", "b1", "b2", "b0", "b1", "b2", "b0"}; !equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestRoundRobinRetryGetsNextBackend pins the fix for a retry over two
// backends landing on the backend that just failed: the counter and Attempt
// both moved by one, so the retry's index had the first try's parity.
func TestRoundRobinRetryGetsNextBackend(t *testing.T) {
	p := newTestPool(t, poolConfig(PolicyRoundRobin, backendConfigs(2, nil)))
	for range 4 {
		first, _ := p.Pick(Key{})
		first.Release(Failure)
		retry, _ := p.Pick(Key{Attempt: 1})
		retry.Release(Success)
		if first.Backend == retry.Backend {
			t.Fatalf("retry got %s, the backend of the first try", retry.Name)
		}
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
