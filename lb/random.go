package lb

// randomPolicy picks a backend at random in proportion to its weight, with
// one random number per pick (alias.go).
type randomPolicy struct{ rand func() uint64 }

func (p randomPolicy) Build(set []Weighted) (Picker, error) {
	if len(set) == 0 {
		return nil, errEmptySet
	}
	return &random{backends: backendsOf(set), alias: newAliasTable(set), rand: p.rand}, nil
}

type random struct {
	backends []*Backend
	alias    *aliasTable // nil: equal weights
	rand     func() uint64
}

var _ Picker = (*random)(nil)

// Pick ignores the key: every pick, retries included, is an independent draw.
func (r *random) Pick(Key) (*Backend, error) {
	return r.backends[r.alias.sample(r.rand(), len(r.backends))], nil
}
