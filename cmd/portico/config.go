package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"portico/l4"
	"portico/l7"
	"portico/lb"
)

// Config is the whole config.toml. Each package owns its section's type,
// defaults and validation; this file only composes them.
type Config struct {
	// Log configures portico's own log (not the access log).
	Log LogConfig `toml:"log"`
	// Admin is the listener for /metrics and health endpoints.
	Admin AdminConfig `toml:"admin"`
	// Shutdown controls how the process stops on SIGINT or SIGTERM.
	Shutdown ShutdownConfig `toml:"shutdown"`
	// HTTP is the L7 path.
	HTTP l7.Config `toml:"http"`
	// TCP is the L4 path: TCP proxying and TLS passthrough.
	TCP l4.Config `toml:"tcp"`
	// Pools are the backend pools that routes and listeners refer to.
	Pools map[string]lb.PoolConfig `toml:"pools"`
	// Demo starts built-in backends for trying portico out. Absent: none.
	Demo *DemoConfig `toml:"demo"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `toml:"level"`
	// Format is "text" or "json". Default "text".
	Format string `toml:"format"`
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Address is host:port for /metrics and /healthz; "" turns it off.
	// Default "127.0.0.1:9901".
	Address *string `toml:"address"`
}

// ShutdownConfig controls graceful shutdown.
type ShutdownConfig struct {
	// DrainTimeout is how long requests in flight (HTTP) and open
	// connections (TCP listeners) may take to finish after SIGINT or
	// SIGTERM before connections are cut. Default "10s".
	DrainTimeout time.Duration `toml:"drain_timeout"`
}

func (c *Config) setDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Admin.Address == nil {
		a := "127.0.0.1:9901"
		c.Admin.Address = &a
	}
	if c.Shutdown.DrainTimeout == 0 {
		c.Shutdown.DrainTimeout = 10 * time.Second
	}
	for name, p := range c.Pools {
		p.SetDefaults()
		c.Pools[name] = p
	}
	c.HTTP.SetDefaults()
	c.TCP.SetDefaults()
	if c.Demo != nil {
		c.Demo.setDefaults()
	}
}

func (c *Config) validate() error {
	var errs []error
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: want \"text\" or \"json\", got %q", c.Log.Format))
	}
	if c.Shutdown.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown.drain_timeout: must not be negative, got %s", c.Shutdown.DrainTimeout))
	}
	names := make([]string, 0, len(c.Pools))
	defined := map[string]bool{}
	for name := range c.Pools {
		names = append(names, name)
		defined[name] = true
	}
	sort.Strings(names)
	for _, name := range names {
		p := c.Pools[name]
		if err := p.Validate("pools." + name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.HTTP.Validate("http", defined); err != nil {
		errs = append(errs, err)
	}
	if err := c.TCP.Validate("tcp", defined); err != nil {
		errs = append(errs, err)
	}
	if c.Demo != nil {
		if err := c.Demo.validate("demo"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	if err != nil {
		return l, fmt.Errorf("want debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// configError is every problem found in a config file, one per line, each
// with the file, the line where known, and the key path.
type configError struct {
	file     string
	problems []string
}

func (e *configError) Error() string {
	return strings.Join(e.problems, "\n")
}

// loadConfig reads, strictly decodes, defaults and validates a config file.
// A returned error is a *configError listing every problem found.
func loadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{file: path, problems: []string{fmt.Sprintf("cannot read config: %v", err)}}
	}
	return parseConfig(path, string(src))
}

// problem is one line of a configError before formatting.
type problem struct {
	line int // 0: not known
	msg  string
}

// parseConfig decodes, checks, defaults and validates src, the text of the
// config file path. A returned error is a *configError with every problem
// found, in file order, each naming its line where known and its key path.
func parseConfig(path, src string) (*Config, error) {
	lines := scanKeyLines(src)
	fail := func(ps []problem) error {
		// File order; problems without a line go last, in the order found.
		sort.SliceStable(ps, func(i, j int) bool {
			a, b := ps[i].line, ps[j].line
			return a != 0 && (b == 0 || a < b)
		})
		e := &configError{file: path}
		for _, p := range ps {
			if p.line > 0 {
				e.problems = append(e.problems, fmt.Sprintf("%s: line %d: %s", path, p.line, p.msg))
			} else {
				e.problems = append(e.problems, fmt.Sprintf("%s: %s", path, p.msg))
			}
		}
		return e
	}
	// Decode into a plain tree first: syntax errors stop here, with their line.
	var tree map[string]any
	if _, err := toml.Decode(src, &tree); err != nil {
		return nil, fail([]problem{decodeProblem(err, src, lines)})
	}
	// Unknown keys, wrong types and integer durations, all at once and with
	// their full paths; the decoder would stop at the first and name an
	// array element by its last line.
	ps, typeErrs := checkKeys(tree, reflect.TypeFor[Config](), lines)
	if typeErrs {
		return nil, fail(ps)
	}
	var c Config
	md, err := toml.Decode(src, &c)
	if err != nil {
		return nil, fail(append(ps, decodeProblem(err, src, lines)))
	}
	if len(ps) == 0 && len(md.Undecoded()) > 0 {
		// checkKeys follows the decoder's rules; this is a safety net.
		for _, k := range md.Undecoded() {
			ps = append(ps, problem{0, k.String() + ": unknown key"})
		}
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		for _, e := range flatten(err) {
			msg := e.Error()
			keyPath, _, _ := strings.Cut(msg, ": ")
			ps = append(ps, problem{lines.line(keyPath), msg})
		}
	}
	if len(ps) > 0 {
		return nil, fail(ps)
	}
	return &c, nil
}

// decodeProblem turns a decoder error into a problem naming its line and,
// when the line defines the key the decoder was at, the key's full path.
func decodeProblem(err error, src string, lines *keyLines) problem {
	line, msg := decoderMessage(err)
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return problem{line, msg}
	}
	if n := pe.Position.Start; n > 0 && n <= len(src) {
		// The parser counts an error at a line's final newline (an
		// unterminated [header]) as on the next line.
		line = strings.Count(src[:n], "\n") + 1
	}
	if key := lines.at[line]; key != "" && barePath(key) == pe.LastKey {
		msg = key + ": " + msg
	}
	return problem{line, msg}
}

// flatten unpacks errors.Join trees into their leaves, in order.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
