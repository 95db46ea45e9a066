// Command capture records the first bytes a TLS client sends, for the
// ClientHello test vectors in l4/testdata. It lives under testdata so that
// "go build ./..." and "go vet ./..." skip it; run it by path:
//
//	go run ./l4/testdata/capture -addr 127.0.0.1:8443 -o l4/testdata/NAME.hex -note "how the client was run"
//
// then point the client at the address (see the header of each .hex file for
// the exact command). It accepts one connection, reads until the client has
// been silent for -idle (a client waits for the ServerHello after sending its
// hello, so everything read is the hello), writes the bytes as commented hex
// and exits without answering, so the client fails its handshake.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on (loopback only)")
	out := flag.String("o", "", "output .hex file")
	note := flag.String("note", "", "how the client was run; written as a comment")
	idle := flag.Duration("idle", time.Second, "stop reading after the client is silent this long")
	flag.Parse()
	if *out == "" {
		log.Fatal("capture: -o is required")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("capture: cannot listen: %s", err)
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		log.Fatalf("capture: cannot accept: %s", err)
	}
	defer c.Close()
	var got []byte
	buf := make([]byte, 64<<10)
	for len(got) < 64<<10 {
		_ = c.SetReadDeadline(time.Now().Add(*idle))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil { // the idle timeout, or the client gave up
			break
		}
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(*note), "\n") {
		fmt.Fprintf(&b, "# %s\n", line)
	}
	fmt.Fprintf(&b, "# captured %s by l4/testdata/capture; %d bytes as the client sent them.\n", time.Now().UTC().Format("2006-01-02"), len(got))
	for i := 0; i < len(got); i += 32 {
		b.WriteString(hex.EncodeToString(got[i:min(i+32, len(got))]))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		log.Fatalf("capture: cannot write %s: %s", *out, err)
	}
	log.Printf("capture: wrote %d bytes to %s", len(got), *out)
}
