package main

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// checkKeys reports, for a config file decoded into tree, every key that no
// config struct defines, every value the decoder would refuse (with its
// message), and every duration given as a bare integer, which the decoder
// would silently read as nanoseconds. typeErrs is set when a full decode
// would fail.
func checkKeys(tree map[string]any, root reflect.Type, lines *keyLines) (ps []problem, typeErrs bool) {
	walkKeys(tree, root, func(k rawKey) bool {
		add := func(format string, args ...any) {
			ps = append(ps, problem{lines.line(k.path), k.path + ": " + fmt.Sprintf(format, args...)})
		}
		if k.typ == nil {
			add("unknown key")
			return false
		}
		t := deref(k.typ)
		if !nested(t) {
			for _, p := range checkLeaf(k.value, t, k.path) {
				ps = append(ps, problem{lines.line(p.path), p.path + ": " + p.msg})
				typeErrs = typeErrs || p.typeErr
			}
			return false
		}
		if want := shapeError(k.value, t); want != "" {
			add("want %s, got %s", want, tomlType(k.value))
			typeErrs = true
			return false
		}
		return true
	})
	return ps, typeErrs
}

// nested reports whether t holds tables that walkKeys walks into: structs,
// and maps or slices of them.
func nested(t reflect.Type) bool {
	t = deref(t)
	switch {
	case t == nil:
		return false
	case t.Kind() == reflect.Struct:
		return !reflect.PointerTo(t).Implements(textUnmarshalerType)
	case t.Kind() == reflect.Map, t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
		return nested(t.Elem())
	}
	return false
}

// shapeError returns what a value of the nested type t must be ("a table",
// "an array of tables") when v is not that; "" when it is.
func shapeError(v any, t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if _, ok := v.(map[string]any); !ok {
			return "a table"
		}
	case reflect.Slice, reflect.Array:
		switch v := v.(type) {
		case []map[string]any:
		case []any:
			for _, e := range v {
				if _, ok := e.(map[string]any); !ok {
					return "an array of tables"
				}
			}
		default:
			return "an array of tables"
		}
	}
	return ""
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "an array"
	}
	return "a date or time"
}

// leafProblem is a problem with one value.
type leafProblem struct {
	path, msg string
	typeErr   bool // the decoder would refuse the value
}

// checkLeaf checks v, a value decoded from TOML, against t, a type that
// holds no tables: arrays element by element, maps value by value.
func checkLeaf(v any, t reflect.Type, path string) []leafProblem {
	t = deref(t)
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			return []leafProblem{{path, fmt.Sprintf("want %s, got %s", typeDesc(t), tomlType(v)), true}}
		}
		var ps []leafProblem
		for i, e := range a {
			ps = append(ps, checkLeaf(e, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
		return ps
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return []leafProblem{{path, fmt.Sprintf("want %s, got %s", typeDesc(t), tomlType(v)), true}}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ps []leafProblem
		for _, k := range keys {
			ps = append(ps, checkLeaf(m[k], t.Elem(), path+"."+k)...)
		}
		return ps
	}
	if msg := checkValue(v, t); msg != "" {
		return []leafProblem{{path, msg, true}}
	}
	if n, ok := v.(int64); ok && n != 0 && t == durationType {
		// The decoder reads it as nanoseconds: 10 would silently be 10ns.
		return []leafProblem{{path, fmt.Sprintf("want %s, got the integer %d", typeDesc(t), n), false}}
	}
	return nil
}

// checkValue decodes v, a value decoded from TOML, into a fresh value of
// type t with the TOML decoder itself, so that the rules are the decoder's.
// It returns "" if v fits, else why not.
func checkValue(v any, t reflect.Type) string {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"v": v}); err != nil {
		return "" // cannot happen for decoded values; the full decode decides
	}
	dst := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: t, Tag: `toml:"v"`}}))
	_, err := toml.Decode(buf.String(), dst.Interface())
	if err == nil {
		return ""
	}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message // the type fits but the text does not: invalid duration
	}
	return fmt.Sprintf("want %s, got %s", typeDesc(t), tomlType(v))
}

// typeDesc describes what a config value of type t must be.
func typeDesc(t reflect.Type) string {
	t = deref(t)
	if t == durationType {
		return `a duration string such as "10s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		// "a string" -> "an array of strings"
		if _, noun, ok := strings.Cut(typeDesc(t.Elem()), " "); ok && !strings.Contains(noun, " ") {
			return "an array of " + noun + "s"
		}
		return "an array"
	case reflect.Map:
		return "a table"
	}
	return t.String()
}

var decodeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?(?:\(last key "((?:[^"\\]|\\.)*)"\): )?`)

// decoderMessage splits a TOML decoder error into its line (0 if none) and
// its message without the "toml: line N (last key ...)" prefix.
func decoderMessage(err error) (line int, msg string) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Position.Line, pe.Message
	}
	msg = err.Error()
	if m := decodeErrRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return line, msg
}

// rawKey is one key of a config file as walkKeys sees it.
type rawKey struct {
	// parts is the key without array indices, as in toml.Key.
	parts []string
	// path is the key with array indices: "http.routes[1].pool".
	path string
	// value is the decoded TOML value (map[string]any for tables).
	value any
	// typ is the Go type the value decodes into; nil when the key is not a
	// field of the config structs.
	typ reflect.Type
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// walkKeys calls f for every key of tree, a config file decoded into
// map[string]any, in a stable order (table keys sorted, array elements in
// order), with the Go type that t (the struct the file decodes into) gives
// it. f returns false to skip the keys below the one it was given.
func walkKeys(tree map[string]any, t reflect.Type, f func(k rawKey) bool) {
	walkTable(tree, t, nil, "", f)
}

func walkTable(m map[string]any, t reflect.Type, parts []string, path string, f func(rawKey) bool) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := name
		if path != "" {
			p = path + "." + name
		}
		walkValue(m[name], childType(t, name), append(parts[:len(parts):len(parts)], name), p, f)
	}
}

func walkValue(v any, t reflect.Type, parts []string, path string, f func(rawKey) bool) {
	if !f(rawKey{parts: parts, path: path, value: v, typ: t}) {
		return
	}
	walkElems(v, t, parts, path, f)
}

// walkElems walks into the tables and arrays that v holds.
func walkElems(v any, t reflect.Type, parts []string, path string, f func(rawKey) bool) {
	t = deref(t)
	switch v := v.(type) {
	case map[string]any:
		walkTable(v, t, parts, path, f)
	case []map[string]any:
		for i, e := range v {
			walkElems(e, elemType(t), parts, path+"["+strconv.Itoa(i)+"]", f)
		}
	case []any:
		for i, e := range v {
			walkElems(e, elemType(t), parts, path+"["+strconv.Itoa(i)+"]", f)
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func elemType(t reflect.Type) reflect.Type {
	if t = deref(t); t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		return t.Elem()
	}
	return nil
}

// childType is the type that key name of a table of type t decodes into:
// the struct field tagged name (matched as the TOML decoder does: exactly,
// else ignoring case), or the element of a map. Nil if none.
func childType(t reflect.Type, name string) reflect.Type {
	t = deref(t)
	if t == nil || t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Map:
		return t.Elem()
	case reflect.Struct:
		var fold reflect.Type
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := tomlName(sf)
			if tag == name {
				return sf.Type
			}
			if fold == nil && strings.EqualFold(tag, name) {
				fold = sf.Type
			}
		}
		return fold
	}
	return nil
}

// tomlName is the key of a struct field: its toml tag, else its name; ""
// for fields the decoder skips.
func tomlName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
	switch tag {
	case "-":
		return ""
	case "":
		return sf.Name
	}
	return tag
}
