package l7

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// Upstream failure kinds, as counted in portico_http_upstream_errors_total.
const (
	kindRefused  = iota // connect failed
	kindTimeout         // connect or response timeout
	kindReset           // connection broke before a full response
	kindPoolFull        // no free connection within max_conn_wait
	kindOther
	numKinds
)

var kindNames = [numKinds]string{"refused", "timeout", "reset", "pool_full", "other"}

// errBodyTooLarge is returned by the body reader when a request body exceeds
// the listener's max_body_bytes.
var errBodyTooLarge = errors.New("l7: request body too large")

// classify maps an upstream error to a failure kind, a status for the client
// and a short reason. connectFailed reports whether nothing reached the
// backend, so that any request may be retried elsewhere.
func classify(err error) (kind int, status int, reason string, connectFailed bool) {
	var opErr *net.OpError
	switch {
	case errors.Is(err, errBodyTooLarge):
		return kindOther, fasthttp.StatusRequestEntityTooLarge, "request body too large", false
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return kindPoolFull, fasthttp.StatusServiceUnavailable, "backend connection pool full", true
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return kindTimeout, fasthttp.StatusGatewayTimeout, "backend connect timeout", true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		if opErr.Timeout() {
			return kindTimeout, fasthttp.StatusGatewayTimeout, "backend connect timeout", true
		}
		return kindRefused, fasthttp.StatusBadGateway, "backend refused connection", true
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return kindTimeout, fasthttp.StatusGatewayTimeout, "backend timeout", false
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return kindReset, fasthttp.StatusBadGateway, "backend closed connection", false
	case errors.Is(err, lb.ErrNoBackend):
		return kindOther, fasthttp.StatusServiceUnavailable, "no backend available", false
	}
	return kindOther, fasthttp.StatusBadGateway, "bad response from backend", false
}

// clientBodyError maps a failure reading a request body from the client
// (including a body over max_body_bytes) to a status for the client and a
// short reason; chunked reports a chunked body. The client broke the
// exchange, so the backend is not blamed.
func clientBodyError(err error, chunked bool) (status int, reason string) {
	var opErr *net.OpError
	switch {
	case errors.Is(err, errBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case isTimeout(err):
		return fasthttp.StatusRequestTimeout, "request body timeout"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return fasthttp.StatusBadRequest, "request body incomplete"
	case chunked:
		return fasthttp.StatusBadRequest, "malformed chunked body"
	}
	return fasthttp.StatusBadRequest, "request body incomplete"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
