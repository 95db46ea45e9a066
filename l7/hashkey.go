package l7

import (
	"net/netip"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// requestHash computes the affinity hash a pool asks for (its hash_key) from
// the request, for lb.Key.Hash. It returns 0 when the pool does not hash or
// the request lacks the key (no such header, cookie or argument), which the
// hashing policies treat as "no key". It does not allocate.
func requestHash(ctx *fasthttp.RequestCtx, k lb.HashKey) uint64 {
	var b []byte
	switch k.Source {
	case lb.HashNone:
		return 0
	case lb.HashClientIP:
		if a, ok := remoteAddrPort(ctx); ok {
			return lb.HashIP(a.Addr())
		}
		return 0
	case lb.HashSNI:
		if ctx.IsTLS() {
			if cs := ctx.TLSConnectionState(); cs != nil && cs.ServerName != "" {
				return lb.HashString(cs.ServerName)
			}
		}
		return 0
	case lb.HashHost:
		b = hostWithoutPort(ctx.Request.Header.Host())
	case lb.HashURI:
		b = ctx.Request.Header.RequestURI()
	case lb.HashPath:
		b = ctx.Path()
	case lb.HashHeader:
		b = ctx.Request.Header.Peek(k.Name)
	case lb.HashCookie:
		b = ctx.Request.Header.Cookie(k.Name)
	case lb.HashQuery:
		b = ctx.QueryArgs().Peek(k.Name)
	}
	if len(b) == 0 {
		return 0
	}
	return lb.Hash(b)
}

// remoteAddrPort is the client's address without allocating.
func remoteAddrPort(ctx *fasthttp.RequestCtx) (netip.AddrPort, bool) {
	if ta, ok := ctx.RemoteAddr().(interface{ AddrPort() netip.AddrPort }); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	return netip.AddrPort{}, false
}

// stickyHash is requestHash, except that a pool keyed on a cookie the client
// does not have yet issues one: a fresh value is hashed for this pick and
// kept in st.sticky for setStickyCookie, so the client's next requests carry
// it and land on the same backend (HAProxy's "cookie ... insert"). Use a
// cookie name of the proxy's own: a cookie the application sets itself
// changes the hash after the first request.
func (s *Server) stickyHash(ctx *fasthttp.RequestCtx, k lb.HashKey, st *reqState) uint64 {
	h := requestHash(ctx, k)
	if h != 0 || k.Source != lb.HashCookie {
		return h
	}
	st.sticky = s.ids.append(st.sticky[:0])
	return lb.Hash(st.sticky)
}

// setStickyCookie adds the Set-Cookie that pins a client to its backend,
// unless the backend's response already sets that cookie.
func setStickyCookie(h *fasthttp.ResponseHeader, name string, value []byte, secure bool) {
	if len(h.PeekCookie(name)) > 0 {
		return
	}
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(name)
	c.SetValueBytes(value)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	c.SetSecure(secure)
	h.SetCookie(c)
}
