package l7

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// checkCtx parses raw as a portico listener would (header names kept as
// they came) into a RequestCtx.
func checkCtx(tb testing.TB, raw string) *fasthttp.RequestCtx {
	tb.Helper()
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.DisableNormalizing()
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	if len(ctx.Request.Header.RawHeaders()) == 0 {
		tb.Fatalf("parse %q: fasthttp kept no raw header block", raw)
	}
	return ctx
}

// checkBenchRequests are header blocks of the sizes portico sees.
var checkBenchRequests = []struct{ name, raw string }{
	{"minimal", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{"browser", "GET /articles/2024/05/some-article?ref=home HTTP/1.1\r\n" +
		"Host: www.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" +
		"Accept-Language: en-GB,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
		"Referer: https://www.example.com/\r\n" +
		"Connection: keep-alive\r\n" +
		"Cookie: session=4f9a1c2e8b7d6a5f4e3d2c1b0a998877; theme=dark; consent=1\r\n" +
		"Upgrade-Insecure-Requests: 1\r\n" +
		"Sec-Fetch-Dest: document\r\n" +
		"Sec-Fetch-Mode: navigate\r\n" +
		"Sec-Fetch-Site: same-origin\r\n" +
		"Priority: u=0, i\r\n\r\n"},
	{"api-post", "POST /v1/orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n" +
		"Content-Length: 512\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl\r\n" +
		"X-Request-Id: 0f8e7d6c5b4a39281706f5e4d3c2b1a0\r\n\r\n"},
	{"chunked", "PUT /upload HTTP/1.1\r\nHost: files.example.com\r\nTransfer-Encoding: chunked\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n"},
	{"big-cookie", "GET / HTTP/1.1\r\nHost: example.com\r\nCookie: " + strings.Repeat("k=0123456789abcdef; ", 200) + "\r\n\r\n"},
	{"absolute-form", "GET http://www.example.com/a?b=c HTTP/1.1\r\nHost: other.example.com\r\nAccept: */*\r\n\r\n"},
	{"reject-cl-te", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
}

// BenchmarkCheckRequest measures checkRequest, which runs on every request;
// MB/s is over the raw header block.
//
//	go test ./l7 -run '^$' -bench BenchmarkCheckRequest -benchmem
func BenchmarkCheckRequest(b *testing.B) {
	for _, br := range checkBenchRequests {
		b.Run(br.name, func(b *testing.B) {
			ctx := checkCtx(b, br.raw)
			b.SetBytes(int64(len(ctx.Request.Header.RawHeaders())))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				checkRequest(ctx)
			}
		})
	}
}

func TestCheckRequestDoesNotAllocate(t *testing.T) {
	for _, br := range checkBenchRequests {
		ctx := checkCtx(t, br.raw)
		checkRequest(ctx) // warm: absolute-form grows the Host buffer once
		if n := testing.AllocsPerRun(100, func() { checkRequest(ctx) }); n != 0 {
			t.Errorf("%s: got %v allocations per check; want 0", br.name, n)
		}
	}
}
