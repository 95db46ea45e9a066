package l7

import "github.com/valyala/fasthttp"

// Request paths are routed, rewritten and forwarded in one form, the
// normalised form below, so that a route decision cannot be bypassed by a
// path that the backend reads differently ("/api/../admin", "/%61dmin",
// "//admin"). The form stays percent-encoded: an encoded slash (%2F) is data
// inside its segment, not a separator, and is never decoded, so that what the
// backend receives is what the client sent, less dot segments and repeated
// slashes.

// requestPath returns the raw path of the request, as received and still
// percent-encoded, without the query string. An absolute-form request target
// ("http://host/p") gives its path; an empty path is "/".
func requestPath(ctx *fasthttp.RequestCtx) []byte {
	p := ctx.URI().PathOriginal()
	if len(p) == 0 {
		return strSlash
	}
	return p
}

var strSlash = []byte("/")

// appendNormalPath appends to dst the normalised form of the raw path p:
//   - percent-encoded unreserved characters (RFC 3986 section 2.3: letters,
//     digits, "-", ".", "_", "~") are decoded, so "%2e%2e" is ".." and
//     "%61" is "a"; every other escape, such as %2F or %20, is kept as it
//     came, and a "%" that starts no escape becomes "%25", so that decoding
//     never makes a new escape ("%%32%65" is "%252e", not "%2e");
//   - runs of "/" become one "/";
//   - "." and ".." segments are removed as RFC 3986 section 5.2.4 says; ".."
//     never climbs above the root, and a trailing "." or ".." segment leaves
//     a trailing "/".
//
// A path that does not start with "/" (the "*" of "OPTIONS *") is appended
// as it is. The result is stable: normalising it again changes nothing.
func appendNormalPath(dst, p []byte) []byte {
	if len(p) == 0 || p[0] != '/' {
		return append(dst, p...)
	}
	base := len(dst)
	i := 0
	for i < len(p) {
		for i < len(p) && p[i] == '/' {
			i++
		}
		seg := len(dst) // index of the segment's "/"
		dst = append(dst, '/')
		for i < len(p) && p[i] != '/' {
			c := p[i]
			if c == '%' {
				v, ok := escapeAt(p, i)
				switch {
				case !ok:
					dst = append(dst, "%25"...)
					i++
				case isUnreserved(v):
					dst = append(dst, v)
					i += 3
				default:
					dst = append(dst, p[i:i+3]...)
					i += 3
				}
				continue
			}
			dst = append(dst, c)
			i++
		}
		last := i == len(p)
		switch s := dst[seg+1:]; {
		case len(s) == 1 && s[0] == '.':
			dst = dst[:seg]
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			dst = dst[:seg]
			for len(dst) > base && dst[len(dst)-1] != '/' {
				dst = dst[:len(dst)-1]
			}
			if len(dst) > base {
				dst = dst[:len(dst)-1] // the parent's "/"
			}
		default:
			continue
		}
		if last {
			dst = append(dst, '/')
		}
	}
	return dst
}

// isNormalPath reports whether appendNormalPath would return p unchanged,
// without copying it: the common case, checked on every request.
func isNormalPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return true
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '/':
			rest := p[i+1:]
			if len(rest) > 0 && rest[0] == '/' {
				return false
			}
			if len(rest) > 0 && rest[0] == '.' {
				rest = rest[1:]
				if len(rest) > 0 && rest[0] == '.' {
					rest = rest[1:]
				}
				if len(rest) == 0 || rest[0] == '/' {
					return false
				}
			}
		case '%':
			if v, ok := escapeAt(p, i); !ok || isUnreserved(v) {
				return false
			}
		}
	}
	return true
}

// appendRequestPath appends the request's normalised path to dst.
func appendRequestPath(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	p := requestPath(ctx)
	if isNormalPath(p) {
		return append(dst, p...)
	}
	return appendNormalPath(dst, p)
}

func isUnreserved(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

// escapeAt decodes the escape "%XX" at p[i].
func escapeAt(p []byte, i int) (byte, bool) {
	if i+2 >= len(p) {
		return 0, false
	}
	x, ok1 := unhex(p[i+1])
	y, ok2 := unhex(p[i+2])
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
