package main

import (
	"errors"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"portico/l7"
	"portico/lb"
)

// lines joins its arguments as the lines of a file, so that a test can
// count line numbers: the first argument is line 1.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// problemsOf returns the problem lines of a parseConfig error.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %T %v; want *configError", err, err)
	}
	if got, want := ce.Error(), strings.Join(ce.problems, "\n"); got != want {
		t.Errorf("Error() = %q; want the problems joined by newlines %q", got, want)
	}
	return ce.problems
}

func TestParseConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "syntax error names its line and key",
			src: lines(
				`[http]`,
				`x = = 1`,
			),
			want: []string{`config.toml: line 2: http.x: expected value but found '=' instead`},
		},
		{
			name: "syntax error in a header",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[http`,
			),
			want: []string{`config.toml: line 3: expected '.' or ']' to end table name, but got '\n' instead`},
		},
		{
			name: "wrong type",
			src: lines(
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`max_conns = "x"`,
			),
			want: []string{`config.toml: line 3: http.listeners[0].max_conns: want an integer, got a string`},
		},
		{
			// The decoder itself names the line of the last element.
			name: "wrong type in the first of two array elements",
			src: lines(
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`max_conns = "x"`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:1"`,
				`max_conns = 10`,
			),
			want: []string{`config.toml: line 3: http.listeners[0].max_conns: want an integer, got a string`},
		},
		{
			name: "every wrong type at once",
			src: lines(
				`[log]`,
				`level = 5`,
				`[shutdown]`,
				`drain_timeout = "1x"`,
				`[demo]`,
				`http = ["127.0.0.1:1", 5]`,
				`tcp_echo = false`,
				`[http]`,
				`forwarded = "yes"`,
				`[[http.routes]]`,
				`match = { hosts = "a.example", headers = { X-A = 1 } }`,
			),
			want: []string{
				`config.toml: line 2: log.level: want a string, got an integer`,
				`config.toml: line 4: shutdown.drain_timeout: invalid duration: "1x"`,
				`config.toml: line 6: demo.http[1]: want a string, got an integer`,
				`config.toml: line 7: demo.tcp_echo: want a string, got a boolean`,
				`config.toml: line 9: http.forwarded: want a table, got a string`,
				`config.toml: line 11: http.routes[0].match.headers.X-A: want a string, got an integer`,
				`config.toml: line 11: http.routes[0].match.hosts: want an array of strings, got a string`,
			},
		},
		{
			// The decoder would read 10 as 10ns.
			name: "integer duration",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[shutdown]`,
				`drain_timeout = 10`,
				`[pools.web]`,
				`  [[pools.web.backends]]`,
				`  address = "127.0.0.1:9001"`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`write_timeout = 0`,
				`idle_timeout = 60`,
				`[[http.routes]]`,
				`pool = "web"`,
			),
			want: []string{
				`config.toml: line 4: shutdown.drain_timeout: want a duration string such as "10s", got the integer 10`,
				`config.toml: line 11: http.listeners[0].idle_timeout: want a duration string such as "10s", got the integer 60`,
			},
		},
		{
			name: "unknown keys anywhere",
			src: lines(
				`colour = "blue"`,
				`[admin]`,
				`address = ""`,
				`[pools.web]`,
				`  [[pools.web.backends]]`,
				`  address = "127.0.0.1:9001"`,
				`  wieght = 2`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`[[http.routes]]`,
				`pool = "web"`,
				`timeout = "1s"`,
				`  [http.routes.match]`,
				`  path_prefix = "/"`,
				`  hostname = "x"`,
				`[[http.routes]]`,
				`pool = "web"`,
				`match.methodz = ["GET"]`,
				`[nonsense]`,
				`a = 1`,
				`[nonsense.deeper]`,
				`b = 2`,
			),
			want: []string{
				`config.toml: line 1: colour: unknown key`,
				`config.toml: line 7: pools.web.backends[0].wieght: unknown key`,
				`config.toml: line 12: http.routes[0].timeout: unknown key`,
				`config.toml: line 15: http.routes[0].match.hostname: unknown key`,
				`config.toml: line 18: http.routes[1].match.methodz: unknown key`,
				`config.toml: line 19: nonsense: unknown key`,
			},
		},
		{
			name: "unknown key in an inline table is reported at its key",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[pools.web]`,
				`  [[pools.web.backends]]`,
				`  address = "127.0.0.1:9001"`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`[[http.routes]]`,
				`pool = "web"`,
				`rewrite = { strip_prefix = "/a", prefix = "/b" }`,
			),
			want: []string{`config.toml: line 10: http.routes[0].rewrite.prefix: unknown key`},
		},
		{
			name: "validation error names the full path and line",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[pools.web]`,
				`  [[pools.web.backends]]`,
				`  address = "127.0.0.1:9001"`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`[[http.routes]]`,
				`name = "web"`,
				`pool = "web"`,
				`[[http.routes]]`,
				`pool = "api"`,
			),
			want: []string{`config.toml: line 12: http.routes[1].pool: pool "api" is not defined`},
		},
		{
			name: "missing key is reported at its table",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`[[http.routes]]`,
				`name = "r"`,
			),
			want: []string{`config.toml: line 5: http.routes[0].pool: required (or set redirect)`},
		},
		{
			name: "quoted pool name with a dot",
			src: lines(
				`[admin]`,
				`address = ""`,
				`[pools."api.v2"]`,
				`  [[pools."api.v2".backends]]`,
				`  address = "127.0.0.1:9001"`,
				`  [[pools."api.v2".backends]]`,
				`  address = "nowhere"`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`[[http.routes]]`,
				`pool = "api.v2"`,
			),
			want: []string{`config.toml: line 7: pools.api.v2.backends[1].address: want host:port, got "nowhere"`},
		},
		{
			name: "several problems in file order",
			src: lines(
				`[demo]`,
				`http = ["nope"]`,
				`tcp_echo = ""`,
				`[[http.listeners]]`,
				`address = "127.0.0.1:0"`,
				`max_header_bytes = 10`,
				`[[http.routes]]`,
				`pool = "web"`,
				`colour = "red"`,
				`[pools.web]`,
				`policy = "round_robin"`,
				`  [[pools.web.backends]]`,
				`  address = "nowhere"`,
				`  weight = 2000`,
				`[log]`,
				`level = "loud"`,
				`[admin]`,
				`address = ""`,
			),
			want: []string{
				`config.toml: line 2: demo.http[0]: want host:port, got "nope"`,
				`config.toml: line 6: http.listeners[0].max_header_bytes: must be 1024 to 1048576, got 10`,
				`config.toml: line 9: http.routes[0].colour: unknown key`,
				`config.toml: line 13: pools.web.backends[0].address: want host:port, got "nowhere"`,
				`config.toml: line 14: pools.web.backends[0].weight: must be 1 to 1000, got 2000`,
				`config.toml: line 16: log.level: want debug, info, warn or error, got "loud"`,
			},
		},
		{
			name: "problems without a line come last",
			src: lines(
				`[log]`,
				`format = "xml"`,
			),
			want: []string{
				`config.toml: line 2: log.format: want "text" or "json", got "xml"`,
				`config.toml: http.listeners: at least one listener is required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig("config.toml", tt.src)
			if err == nil {
				t.Fatalf("got config %+v, no error; want %q", c, tt.want)
			}
			got := problemsOf(t, err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got problems\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestParseConfigGood(t *testing.T) {
	src := lines(
		`[admin]`,
		`address = ""`,
		`[shutdown]`,
		`drain_timeout = "250ms"`,
		`[pools.web]`,
		`  [[pools.web.backends]]`,
		`  address = "127.0.0.1:9001"`,
		`[[http.listeners]]`,
		`address = "127.0.0.1:0"`,
		`write_timeout = 0 # integer 0 is unambiguous`,
		`[[http.routes]]`,
		`pool = "web"`,
		`match = { methods = ["GET"], headers = { "X-A" = "*" } }`,
	)
	c, err := parseConfig("config.toml", src)
	if err != nil {
		t.Fatalf("got error %v; want none", err)
	}
	if got, want := c.Shutdown.DrainTimeout, 250*time.Millisecond; got != want {
		t.Errorf("got drain_timeout %s; want %s", got, want)
	}
	if got, want := *c.Admin.Address, ""; got != want {
		t.Errorf("got admin.address %q; want %q", got, want)
	}
	if got, want := c.HTTP.Routes[0].Match.Headers["X-A"], "*"; got != want {
		t.Errorf("got match header X-A %q; want %q", got, want)
	}
	if got, want := c.Log.Level, "info"; got != want {
		t.Errorf("got default log.level %q; want %q", got, want)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig(t.TempDir() + "/nope.toml")
	ps := problemsOf(t, err)
	if len(ps) != 1 || !strings.HasPrefix(ps[0], "cannot read config: ") {
		t.Errorf("got %q; want one problem starting %q", ps, "cannot read config: ")
	}
}

func TestScanKeyLines(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int // path -> line; 0: not recorded
	}{
		{
			name: "arrays of tables",
			src: lines(
				`[[a]]`,
				`x = 1`,
				``,
				`[[a]]`,
				`x = 2`,
				`y = 3`,
			),
			want: map[string]int{"a": 1, "a[0]": 1, "a[0].x": 2, "a[1]": 4, "a[1].x": 5, "a[1].y": 6, "a[2]": 0, "a.x": 0},
		},
		{
			name: "tables nested under array elements",
			src: lines(
				`[http]`,
				`[[http.routes]]`,
				`name = "a"`,
				`  [http.routes.match]`,
				`  path = "/a"`,
				`[[http.routes]]`,
				`name = "b"`,
				`  [http.routes.match]`,
				`  path = "/b"`,
				`  [http.routes.headers]`,
				`  request_set = {}`,
			),
			want: map[string]int{
				"http": 1, "http.routes[0].match": 4, "http.routes[0].match.path": 5,
				"http.routes[1]": 6, "http.routes[1].match": 8, "http.routes[1].match.path": 9,
				"http.routes[1].headers.request_set": 11, "http.routes[0].headers": 0,
			},
		},
		{
			name: "arrays of tables nested under array elements",
			src: lines(
				`[[http.listeners]]`,
				`  [[http.listeners.certificates]]`,
				`  cert_file = "a"`,
				`  [[http.listeners.certificates]]`,
				`  cert_file = "b"`,
				`[[http.listeners]]`,
				`  [[http.listeners.certificates]]`,
				`  cert_file = "c"`,
			),
			want: map[string]int{
				"http": 1, "http.listeners": 1,
				"http.listeners[0].certificates[1].cert_file": 5,
				"http.listeners[1].certificates[0]":           7,
				"http.listeners[1].certificates[0].cert_file": 8,
				"http.listeners[1].certificates[1]":           0,
			},
		},
		{
			name: "dotted keys and implicit tables",
			src: lines(
				`[[http.routes]]`,
				`match.path_prefix = "/"`,
				`match . methods = ["GET"]`,
				`[pools.web.backends.x]`,
			),
			want: map[string]int{
				"http.routes[0].match": 2, "http.routes[0].match.path_prefix": 2, "http.routes[0].match.methods": 3,
				"pools": 4, "pools.web": 4, "pools.web.backends.x": 4,
			},
		},
		{
			name: "quoted keys",
			src: lines(
				`[pools."api.v2"]`,
				`"quoted key" = 1`,
				`'literal.key' = 2`,
				`[ pools . 'web' ]`,
				`"a\"b" = 3`,
			),
			want: map[string]int{
				"pools.api.v2": 1, "pools.api.v2.quoted key": 2, "pools.api.v2.literal.key": 3,
				"pools.web": 4, `pools.web.a"b`: 5,
			},
		},
		{
			name: "comments and # inside strings",
			src: lines(
				`# [commented] = 1`,
				`[a] # [b]`,
				`name = "x # y" # z = 1`,
				`"#k" = 'lit # [c]'`,
				`[d] # has "quotes" and = signs`,
				`  # k = 2`,
				`e = 1`,
			),
			want: map[string]int{"a": 2, "a.name": 3, "a.#k": 4, "a.z": 0, "b": 0, "c": 0, "d": 5, "d.k": 0, "d.e": 7, "commented": 0},
		},
		{
			name: "values over several lines",
			src: lines(
				`[a]`,
				`hosts = [`,
				`  "x = y",  # [not.a.table]`,
				`  [1, 2],`,
				`  { k = "v" },`,
				`]`,
				`after = 1`,
				`text = """`,
				`[not.a.table]`,
				`k = v \"""`,
				`"""`,
				`lit = '''`,
				`[no]`,
				`'''`,
				`last = 2`,
			),
			want: map[string]int{
				"a.hosts": 2, "a.after": 7, "a.text": 8, "a.lit": 12, "a.last": 15,
				"x": 0, "a.x": 0, "a.k": 0, "not.a.table": 0, "no": 0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := toml.Decode(tt.src, new(map[string]any)); err != nil {
				t.Fatalf("test source is not TOML: %v", err)
			}
			kl := scanKeyLines(tt.src)
			paths := make([]string, 0, len(tt.want))
			for p := range tt.want {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				if got := kl.exact[p]; got != tt.want[p] {
					t.Errorf("line of %q: got %d; want %d", p, got, tt.want[p])
				}
			}
		})
	}
}

func TestKeyLinesLine(t *testing.T) {
	kl := scanKeyLines(lines(
		`[admin]`,
		`address = ""`,
		`[[http.routes]]`,
		`pool = "a"`,
		`[[http.routes]]`,
		`  [http.routes.match]`,
		`  path = "/"`,
	))
	for _, tt := range []struct {
		path string
		want int
	}{
		{"admin.address", 2},
		{"admin.nothing", 1},                 // a missing key: its table
		{"http.routes[0].pool", 4},           //
		{"http.routes[1].pool", 5},           // missing: its array element
		{"http.routes[1].match.path", 7},     //
		{"http.routes[1].match.hosts[2]", 6}, // an element of a missing array
		{"http.routes[7].pool", 3},           // no such element: the array
		{"http.listeners", 3},                // the implicit [http]
		{"log.level", 0},                     //
		{"", 0},
	} {
		if got := kl.line(tt.path); got != tt.want {
			t.Errorf("line(%q): got %d; want %d", tt.path, got, tt.want)
		}
	}
	if got, want := kl.at[6], "http.routes[1].match"; got != want {
		t.Errorf("at[6]: got %q; want %q", got, want)
	}
}

// shippedConfig is the reference config.toml at the repository root.
func shippedConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestShippedConfigIsValid(t *testing.T) {
	c, err := parseConfig("config.toml", shippedConfig(t))
	if err != nil {
		t.Fatalf("got error:\n%v\nwant none", err)
	}
	if c.Demo == nil {
		t.Errorf("got no [demo]; want the demo backends on, so that the shipped file works on a bare machine")
	}
}

// TestShippedConfigShowsDefaults pins the claim at the top of config.toml:
// every key is listed with its default.
func TestShippedConfigShowsDefaults(t *testing.T) {
	var shipped Config
	if _, err := toml.Decode(shippedConfig(t), &shipped); err != nil {
		t.Fatal(err)
	}
	var def Config
	def.HTTP.Listeners = []l7.ListenerConfig{{Name: shipped.HTTP.Listeners[0].Name, Address: shipped.HTTP.Listeners[0].Address}}
	def.Demo = &DemoConfig{}
	def.setDefaults()
	shipped.setDefaults() // only fills pointers that the file leaves unset
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: config.toml has %+v; the default is %+v", name, got, want)
		}
	}
	check("log", shipped.Log, def.Log)
	check("admin.address", *shipped.Admin.Address, *def.Admin.Address)
	check("shutdown", shipped.Shutdown, def.Shutdown)
	check("http.listeners[0]", shipped.HTTP.Listeners[0], def.HTTP.Listeners[0])
	check("http.upstream", shipped.HTTP.Upstream, def.HTTP.Upstream)
	check("http.forwarded", shipped.HTTP.Forwarded, def.HTTP.Forwarded)
	check("http.access_log", shipped.HTTP.AccessLog, def.HTTP.AccessLog)
	check("demo.http", shipped.Demo.HTTP, def.Demo.HTTP)
	check("demo.tcp_echo", *shipped.Demo.TCPEcho, *def.Demo.TCPEcho)
	for name, p := range shipped.Pools {
		// Only what every pool shows; a pool may show optional sections
		// (health checks, hashing) with example values.
		d := lb.PoolConfig{}
		for _, b := range p.Backends {
			d.Backends = append(d.Backends, lb.BackendConfig{Name: b.Name, Address: b.Address})
		}
		d.SetDefaults()
		check("pools."+name+".policy", p.Policy, d.Policy)
		check("pools."+name+".backends", p.Backends, d.Backends)
	}
}

// TestShippedConfigListsEveryKey walks the config structs and checks that
// config.toml shows every key they define, either set or in a commented
// example ("#   key = value" lines; an example that starts with a key
// belongs to the table around it), so that the reference cannot fall behind
// the code. It also checks that every key shown, set or in an example, is
// one the structs define.
func TestShippedConfigListsEveryKey(t *testing.T) {
	want := map[string]bool{}
	structKeys(reflect.TypeFor[Config](), "", want)

	src := shippedConfig(t)
	have := map[string]bool{}
	add := func(what, doc string) {
		var tree map[string]any
		md, err := toml.Decode(doc, &tree)
		if err != nil {
			t.Fatalf("%s is not TOML: %v\n%s", what, err, doc)
		}
		for _, k := range md.Keys() {
			n, ok := normalizeKey(reflect.TypeFor[Config](), k)
			if !ok {
				t.Errorf("%s: key %q is not a config key", what, k.String())
				continue
			}
			// Tables named only as a prefix ([pools.web] names pools).
			for p := n; p != ""; p, _, _ = cutLast(p, ".") {
				have[p] = true
			}
		}
	}
	add("config.toml", src)
	var header string    // the last live table header
	var example []string // the example being read
	flush := func() {
		if len(example) == 0 {
			return
		}
		doc := strings.Join(example, "\n")
		if !strings.HasPrefix(example[0], "[") && header != "" {
			doc = header + "\n" + doc
		}
		add("example "+strings.TrimSpace(example[0]), doc)
		example = nil
	}
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if ex, ok := strings.CutPrefix(l, "#   "); ok {
			example = append(example, ex)
			continue
		}
		flush()
		if strings.HasPrefix(l, "[") {
			header = stripComment(l)
		}
	}
	flush()

	var missing []string
	for k := range want {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("config.toml does not show key %s", k)
	}
	if len(want) < 60 {
		t.Errorf("got %d keys from the config structs; want the whole tree (at least 60)", len(want))
	}
}

// structKeys adds to out the key of every field under t, as dotted paths
// without indices; map keys (pool names) are "*". The entries of maps of
// plain values (header maps) are not keys.
func structKeys(t reflect.Type, prefix string, out map[string]bool) {
	t = deref(t)
	switch {
	case t.Kind() == reflect.Struct && nested(t):
		for i := 0; i < t.NumField(); i++ {
			name := tomlName(t.Field(i))
			if name == "" {
				continue
			}
			k := name
			if prefix != "" {
				k = prefix + "." + name
			}
			out[k] = true
			structKeys(t.Field(i).Type, k, out)
		}
	case t.Kind() == reflect.Map && nested(t.Elem()):
		structKeys(t.Elem(), prefix+".*", out)
	case t.Kind() == reflect.Slice && nested(t.Elem()):
		structKeys(t.Elem(), prefix, out)
	}
}

// normalizeKey maps a key of a TOML file to the form structKeys uses, or
// reports that the structs do not define it.
func normalizeKey(t reflect.Type, k toml.Key) (string, bool) {
	var parts []string
	for _, part := range k {
		t = deref(t)
		for t != nil && t.Kind() == reflect.Slice {
			t = deref(t.Elem())
		}
		if t == nil {
			return "", false
		}
		if t.Kind() == reflect.Map {
			if !nested(t.Elem()) {
				break // an entry of a header map
			}
			part = "*"
		}
		t = childType(t, part)
		if t == nil && part != "*" {
			return "", false
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "."), true
}

// cutLast is strings.Cut from the right.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}
