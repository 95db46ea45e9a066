package l4

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"portico/lb"
)

// selfSigned returns a certificate for names, signed by itself.
func selfSigned(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// tlsBackend serves TLS with cert and answers each connection with its
// name, then echoes.
func tlsBackend(t *testing.T, name string, cert tls.Certificate) string {
	t.Helper()
	s := newTCPServer(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.SetDeadline(time.Now().Add(testTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.Write([]byte(name + "\n"))
		io.Copy(tc, tc)
	})
	return s.addr()
}

// choppyConn writes in small pieces, so that the ClientHello reaches the
// proxy over several reads.
type choppyConn struct{ net.Conn }

func (c choppyConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), 37)
		m, err := c.Conn.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

// TestTLSPassthrough: two TLS backends with different certificates behind
// one listener; the client sees the certificate of the backend its SNI
// chose, and talks to that backend end to end.
func TestTLSPassthrough(t *testing.T) {
	certA := selfSigned(t, "a.example.com")
	certB := selfSigned(t, "*.b.example.com")
	roots := x509.NewCertPool()
	roots.AddCert(certA.Leaf)
	roots.AddCert(certB.Leaf)
	pools := map[string]*lb.Pool{
		"pa": newTestPool(t, "pa", "round_robin", tlsBackend(t, "backend-a", certA)),
		"pb": newTestPool(t, "pb", "round_robin", tlsBackend(t, "backend-b", certB)),
	}
	_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
		lc.Pool = ""
		lc.Routes = []RouteConfig{
			{ServerNames: []string{"a.example.com"}, Pool: "pa"},
			{ServerNames: []string{"*.b.example.com"}, Pool: "pb"},
		}
	}))

	try := func(sni string, choppy bool) (string, string, error) {
		raw := dial(t, addrs[0])
		var c net.Conn = raw
		if choppy {
			raw.SetNoDelay(true)
			c = choppyConn{raw}
		}
		tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: roots})
		if err := tc.Handshake(); err != nil {
			return "", "", err
		}
		line := make([]byte, 10)
		if _, err := io.ReadFull(tc, line); err != nil {
			return "", "", err
		}
		tc.Write([]byte("ping"))
		echo := make([]byte, 4)
		if _, err := io.ReadFull(tc, echo); err != nil || string(echo) != "ping" {
			return "", "", err
		}
		return tc.ConnectionState().PeerCertificates[0].Subject.CommonName, string(line[:9]), nil
	}
	for _, tc := range []struct {
		sni, wantCN, wantName string
		choppy                bool
	}{
		{"a.example.com", "a.example.com", "backend-a", false},
		{"x.b.example.com", "*.b.example.com", "backend-b", false},
		{"A.Example.COM", "a.example.com", "backend-a", true},
		{"y.b.example.com", "*.b.example.com", "backend-b", true},
	} {
		cn, name, err := try(tc.sni, tc.choppy)
		if err != nil {
			t.Fatalf("%s (choppy %v): %v", tc.sni, tc.choppy, err)
		}
		if cn != tc.wantCN || name != tc.wantName {
			t.Fatalf("%s: got certificate %q from %q; want %q from %q", tc.sni, cn, name, tc.wantCN, tc.wantName)
		}
	}

	// No route, no default: closed before any backend sees it.
	if _, _, err := try("c.example.com", false); err == nil {
		t.Fatal("c.example.com: handshake succeeded; want it closed")
	}
	// Not TLS at all.
	c := dial(t, addrs[0])
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("plain HTTP: got %d bytes back; want the connection closed", n)
	}
	waitFor(t, "rejections counted", func() bool {
		return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="no_route"}`) == 1 &&
			metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="bad_hello"}`) == 1
	})
}

// TestTLSPassthroughDefault: a hello without a matching name (or without
// SNI) goes to the default pool.
func TestTLSPassthroughDefault(t *testing.T) {
	cert := selfSigned(t, "default.example.com")
	pools := map[string]*lb.Pool{"pd": newTestPool(t, "pd", "round_robin", tlsBackend(t, "backend-d", cert))}
	_, _, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.Pool, lc.DefaultPool = "", "pd" }))
	for _, sni := range []string{"other.example.com", ""} {
		c := dial(t, addrs[0])
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("sni %q: %v", sni, err)
		}
		if got := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "default.example.com" {
			t.Fatalf("sni %q: got certificate %q; want default.example.com", sni, got)
		}
	}
}

// TestTLSPassthroughHashSNI: with maglev on the SNI, every connection for a
// server name goes to the same backend, and names spread over both.
func TestTLSPassthroughHashSNI(t *testing.T) {
	cert := selfSigned(t, "*.example.com")
	pc := lb.PoolConfig{Policy: lb.PolicyMaglev}
	pc.HashKey = "sni"
	addrs := []string{tlsBackend(t, "backend-1", cert), tlsBackend(t, "backend-2", cert)}
	for i, a := range addrs {
		pc.Backends = append(pc.Backends, lb.BackendConfig{Name: "b" + string(rune('1'+i)), Address: a})
	}
	pool, err := lb.NewPool("ps", pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, _, proxy := startProxy(t, map[string]*lb.Pool{"ps": pool}, testListener(func(lc *ListenerConfig) { lc.Pool, lc.DefaultPool = "", "ps" }))
	backendOf := func(sni string) string {
		c := dial(t, proxy[0])
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		line := make([]byte, 10)
		if _, err := io.ReadFull(tc, line); err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		return string(line[:9])
	}
	used := map[string]bool{}
	for i := range 16 {
		sni := "host" + string(rune('a'+i)) + ".example.com"
		first := backendOf(sni)
		for range 3 {
			if got := backendOf(sni); got != first {
				t.Fatalf("%s: got %s, then %s; want the same backend", sni, first, got)
			}
		}
		used[first] = true
	}
	if len(used) != 2 {
		t.Fatalf("backends used by 16 names: %v; want both", used)
	}
}
