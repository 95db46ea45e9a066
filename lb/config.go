package lb

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Policy names accepted in PoolConfig.Policy.
const (
	PolicyRoundRobin = "round_robin"
)

// PoolConfig is one `[pools.NAME]` section, shared by the L4 and L7 paths.
type PoolConfig struct {
	// Policy selects the balancing policy. Default "round_robin".
	Policy string `toml:"policy"`
	// Backends are the pool's members, in order.
	Backends []BackendConfig `toml:"backends"`
}

// BackendConfig is one `[[pools.NAME.backends]]` entry.
type BackendConfig struct {
	// Name labels the backend in logs and metrics. Default: its address.
	Name string `toml:"name"`
	// Address is host:port. Required.
	Address string `toml:"address"`
	// Weight is the relative share of traffic, 1 to 1000. Default 1.
	Weight int `toml:"weight"`
}

// SetDefaults fills unset fields with their defaults.
func (c *PoolConfig) SetDefaults() {
	if c.Policy == "" {
		c.Policy = PolicyRoundRobin
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Name == "" {
			b.Name = b.Address
		}
		if b.Weight == 0 {
			b.Weight = 1
		}
	}
}

// Validate reports every problem in the section; path is the section's name
// in the config file, such as "pools.web".
func (c *PoolConfig) Validate(path string) error {
	var errs []error
	switch c.Policy {
	case PolicyRoundRobin:
	default:
		errs = append(errs, fmt.Errorf("%s.policy: unknown policy %q (want %q)", path, c.Policy, PolicyRoundRobin))
	}
	if len(c.Backends) == 0 {
		errs = append(errs, fmt.Errorf("%s.backends: a pool needs at least one backend", path))
	}
	names := make(map[string]int, len(c.Backends))
	for i, b := range c.Backends {
		p := path + ".backends[" + strconv.Itoa(i) + "]"
		if _, _, err := net.SplitHostPort(b.Address); err != nil || b.Address == "" {
			errs = append(errs, fmt.Errorf("%s.address: want host:port, got %q", p, b.Address))
		}
		if b.Weight < 1 || b.Weight > 1000 {
			errs = append(errs, fmt.Errorf("%s.weight: must be 1 to 1000, got %d", p, b.Weight))
		}
		if j, dup := names[b.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of backends[%d]", p, b.Name, j))
		}
		names[b.Name] = i
	}
	return errors.Join(errs...)
}

// Pool is a built pool: its backends and the picker over them. It is
// immutable; a config change builds a new Pool.
type Pool struct {
	Name     string
	Backends []*Backend
	Picker
}

// NewPool builds a pool from a validated config.
func NewPool(name string, c PoolConfig) (*Pool, error) {
	p := &Pool{Name: name}
	for _, bc := range c.Backends {
		p.Backends = append(p.Backends, &Backend{Name: bc.Name, Address: bc.Address, Weight: bc.Weight, Index: len(p.Backends)})
	}
	switch c.Policy {
	case PolicyRoundRobin:
		p.Picker = newRoundRobin(p.Backends)
	default:
		return nil, fmt.Errorf("cannot build pool %q: unknown policy %q", name, c.Policy)
	}
	return p, nil
}
