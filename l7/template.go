package l7

import (
	"fmt"
	"strings"
)

// placeholder names a value taken from the request being served.
type placeholder uint8

const (
	phLiteral placeholder = iota
	phClientIP
	phHost
	phPath
	phMethod
	phScheme
	phRequestID
	phRoute
	phBackend
)

var placeholders = map[string]placeholder{
	"client_ip":  phClientIP,
	"host":       phHost,
	"path":       phPath,
	"method":     phMethod,
	"scheme":     phScheme,
	"request_id": phRequestID,
	"route":      phRoute,
	"backend":    phBackend,
}

type segment struct {
	kind    placeholder
	literal string
}

// template is a header value with {placeholders}, parsed once at build.
type template struct {
	segs []segment
}

// has reports whether t uses placeholder ph.
func (t *template) has(ph placeholder) bool {
	for _, s := range t.segs {
		if s.kind == ph {
			return true
		}
	}
	return false
}

// parseTemplate splits s into literals and placeholders. "{{" and "}}" stand
// for literal braces.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return t, fmt.Errorf("unclosed { at offset %d in %q", i, s)
			}
			name := s[i+1 : i+end]
			ph, ok := placeholders[name]
			if !ok {
				return t, fmt.Errorf("unknown placeholder {%s} in %q", name, s)
			}
			flush()
			t.segs = append(t.segs, segment{kind: ph})
			i += end
		case c == '}':
			return t, fmt.Errorf("unmatched } at offset %d in %q", i, s)
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return t, fmt.Errorf("control character in %q", s)
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}
