package main

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

// keyLines maps the keys of a TOML document to the lines that define them,
// so that validation errors, which name a key path such as
// "http.routes[2].pool", can also name a line. TOML decoders do not expose
// key positions, so this is a light line scanner: it understands table and
// array-of-table headers, key = value lines (bare, quoted and dotted keys)
// and values that span lines (arrays, inline tables, multi-line strings),
// which is all that portico's config uses; a key it cannot place is
// reported without a line.
type keyLines struct {
	exact map[string]int // "http.routes[2].pool" -> line of its first definition
	at    map[int]string // line -> the key or table defined there
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// barePath drops the array indices of a key path: "http.routes[2].pool" is
// "http.routes.pool".
func barePath(path string) string { return indexRE.ReplaceAllString(path, "") }

func scanKeyLines(src string) *keyLines {
	kl := &keyLines{exact: map[string]int{}, at: map[int]string{}}
	arrays := map[string]int{} // array-of-tables path (with indices of parents) -> count
	var table string           // current table path, with indices
	record := func(path string, line int) {
		if _, ok := kl.exact[path]; !ok {
			kl.exact[path] = line
		}
		kl.at[line] = path
	}
	// implicit records the tables that a header or dotted key creates on
	// the way to its last part, unless they were defined earlier.
	implicit := func(prefixes []string, line int) {
		for _, p := range prefixes {
			if _, ok := kl.exact[p]; !ok {
				kl.exact[p] = line
			}
		}
	}
	// resolve adds array indices to a dotted header path: every prefix that
	// is an array of tables refers to its last element. It also returns the
	// resolved proper prefixes.
	resolve := func(parts []string) (string, []string) {
		var p string
		var prefixes []string
		for i, part := range parts {
			if i > 0 {
				p += "."
			}
			p += part
			if i < len(parts)-1 {
				if n, ok := arrays[p]; ok {
					p += "[" + strconv.Itoa(n-1) + "]"
				}
				prefixes = append(prefixes, p)
			}
		}
		return p, prefixes
	}
	var val valueScan // state of a value that continues on the next line
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Text()
		if val.open() {
			val.scan(raw)
			continue
		}
		s := strings.TrimSpace(raw)
		switch {
		case s == "" || s[0] == '#':
		case strings.HasPrefix(s, "[["):
			s = strings.TrimSpace(stripComment(s))
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			base, prefixes := resolve(splitKey(s[2:end]))
			implicit(append(prefixes, base), line)
			arrays[base]++
			table = base + "[" + strconv.Itoa(arrays[base]-1) + "]"
			record(table, line)
		case s[0] == '[':
			s = strings.TrimSpace(stripComment(s))
			end := strings.LastIndex(s, "]")
			if end < 0 {
				continue
			}
			var prefixes []string
			table, prefixes = resolve(splitKey(s[1:end]))
			implicit(prefixes, line)
			record(table, line)
		default:
			eq := keyEnd(s)
			if eq < 0 {
				continue
			}
			key := table
			for _, part := range splitKey(s[:eq]) {
				if key != "" {
					implicit([]string{key}, line)
					key += "."
				}
				key += part
			}
			record(key, line)
			val.scan(s[eq+1:])
		}
	}
	return kl
}

// line returns the line of path, or of its nearest enclosing key that has
// one (a missing key is reported at its table), or 0.
func (kl *keyLines) line(path string) int {
	for p := path; p != ""; {
		if n, ok := kl.exact[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// valueScan follows a TOML value across lines: open brackets and braces,
// and multi-line strings, so that their inner lines are not taken for keys
// or headers.
type valueScan struct {
	depth int    // open [ and {
	multi string // `"""` or `'''` while inside a multi-line string
}

func (v *valueScan) open() bool { return v.depth > 0 || v.multi != "" }

// scan consumes one line (or the value part of a key line).
func (v *valueScan) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.multi != "" {
			if v.multi == `"""` && s[i] == '\\' {
				i++
				continue
			}
			if strings.HasPrefix(s[i:], v.multi) {
				i += len(v.multi) - 1
				// Up to two more quotes belong to the string: """a""""".
				for k := 0; k < 2 && i+1 < len(s) && s[i+1] == v.multi[0]; k++ {
					i++
				}
				v.multi = ""
			}
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		case '"', '\'':
			q := s[i : i+1]
			if strings.HasPrefix(s[i:], q+q+q) {
				v.multi = q + q + q
				i += 2
				continue
			}
			// A one-line string: skip to its closing quote.
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		}
	}
}

// stripComment drops a # comment that is not inside a string.
func stripComment(s string) string {
	if i := indexUnquoted(s, '#'); i >= 0 {
		return s[:i]
	}
	return s
}

// keyEnd is the index of the = that ends a key, outside quotes; -1 if none.
func keyEnd(s string) int { return indexUnquoted(s, '=') }

// indexUnquoted is the index of the first c in s outside a TOML string, or -1.
func indexUnquoted(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case quote != 0:
			if b == '\\' && quote == '"' {
				i++
			} else if b == quote {
				quote = 0
			}
		case b == '"' || b == '\'':
			quote = b
		case b == c:
			return i
		}
	}
	return -1
}

// splitKey splits a dotted TOML key into its parts, unquoting quoted parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			switch {
			case c == quote:
				quote = 0
			case c == '\\' && quote == '"' && i+1 < len(s):
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}
