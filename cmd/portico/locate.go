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
// array-of-table headers and key = value lines (bare, quoted and dotted
// keys), which is all that portico's config uses; a key it cannot place is
// reported without a line.
type keyLines struct {
	exact map[string]int   // "http.routes[2].pool" -> line
	bare  map[string][]int // "http.routes.pool" -> every line, for keys without indices
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func scanKeyLines(src string) *keyLines {
	kl := &keyLines{exact: map[string]int{}, bare: map[string][]int{}}
	arrays := map[string]int{} // array-of-tables path (with indices of parents) -> count
	var table string           // current table path, with indices
	record := func(path string, line int) {
		if _, ok := kl.exact[path]; !ok {
			kl.exact[path] = line
		}
		b := indexRE.ReplaceAllString(path, "")
		kl.bare[b] = append(kl.bare[b], line)
	}
	// resolve adds array indices to a dotted header path: every prefix that
	// is an array of tables refers to its last element.
	resolve := func(parts []string) string {
		var p string
		for i, part := range parts {
			if i > 0 {
				p += "."
			}
			p += part
			if n, ok := arrays[p]; ok && i < len(parts)-1 {
				p += "[" + strconv.Itoa(n-1) + "]"
			}
		}
		return p
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(stripComment(sc.Text()))
		switch {
		case s == "":
		case strings.HasPrefix(s, "[["):
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			parts := splitKey(s[2:end])
			base := resolve(parts)
			arrays[base]++
			table = base + "[" + strconv.Itoa(arrays[base]-1) + "]"
			record(table, line)
		case strings.HasPrefix(s, "["):
			end := strings.LastIndex(s, "]")
			if end < 0 {
				continue
			}
			table = resolve(splitKey(s[1:end]))
			record(table, line)
		default:
			eq := keyEnd(s)
			if eq < 0 {
				continue
			}
			key := strings.Join(splitKey(s[:eq]), ".")
			if table != "" {
				key = table + "." + key
			}
			record(key, line)
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

// stripComment drops a # comment that is not inside a string.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return s[:i]
		}
	}
	return s
}

// keyEnd is the index of the = that ends a key, outside quotes; -1 if none.
func keyEnd(s string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
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
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}
