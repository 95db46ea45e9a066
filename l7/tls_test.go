package l7

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert is a self-signed ECDSA certificate for one DNS name, written as
// PEM files.
type testCert struct {
	name, certFile, keyFile string
	cert                    *x509.Certificate
}

func newTestCert(t *testing.T, dir, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, so a client can trust it
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := testCert{name: name, certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key"), cert: cert}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// startTLSProxy starts a proxy whose one listener terminates TLS with certs,
// in order, in front of backend be; routeExtra is added to its one route.
func startTLSProxy(t *testing.T, be string, routeExtra string, certs ...testCert) *Server {
	t.Helper()
	var list []string
	for _, c := range certs {
		list = append(list, fmt.Sprintf("{ cert_file = %q, key_file = %q }", c.certFile, c.keyFile))
	}
	return startOneBackendProxy(t, oneBackend{
		Addr:     be,
		Listener: "certificates = [" + strings.Join(list, ", ") + "]",
		Route:    routeExtra,
	})
}

func TestTLSCertificateBySNI(t *testing.T) {
	dir := t.TempDir()
	a, b := newTestCert(t, dir, "a.test"), newTestCert(t, dir, "b.test")
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	s := startTLSProxy(t, be, "", a, b)
	roots := x509.NewCertPool()
	roots.AddCert(a.cert)
	roots.AddCert(b.cert)

	for _, tc := range []struct {
		sni  string
		want testCert
	}{
		{"a.test", a},
		{"b.test", b},
		{"unknown.test", a}, // no name matches: the first certificate
		{"", a},             // no SNI at all
	} {
		t.Run("sni="+tc.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, RootCAs: roots}
			if tc.sni != tc.want.name {
				// The certificate cannot verify for this name; look at it anyway.
				cfg = &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
			}
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", s.addr(), cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			peer := conn.ConnectionState().PeerCertificates
			if len(peer) == 0 || !peer[0].Equal(tc.want.cert) {
				got := "none"
				if len(peer) > 0 {
					got = strings.Join(peer[0].DNSNames, ",")
				}
				t.Errorf("got certificate for %s; want %s", got, tc.want.name)
			}
		})
	}
}

func TestTLSRefusesOldVersions(t *testing.T) {
	dir := t.TempDir()
	a := newTestCert(t, dir, "a.test")
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	s := startTLSProxy(t, be, "", a)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: v}
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", s.addr(), cfg)
		if err == nil {
			got := tls.VersionName(conn.ConnectionState().Version)
			conn.Close()
			t.Fatalf("max %s: got a %s connection; want a refused handshake", tls.VersionName(v), got)
		}
		if want := "remote error: tls: protocol version not supported"; !strings.Contains(err.Error(), want) {
			t.Errorf("max %s: got error %q; want the server's alert %q", tls.VersionName(v), err, want)
		}
	}
	// TLS 1.2 is the floor, and is accepted.
	cfg := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr(), cfg)
	if err != nil {
		t.Fatalf("max TLS 1.2: got %v; want a connection", err)
	}
	conn.Close()
}

func TestTLSALPN(t *testing.T) {
	dir := t.TempDir()
	a := newTestCert(t, dir, "a.test")
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	s := startTLSProxy(t, be, "", a)
	for _, offer := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}} {
		cfg := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, NextProtos: offer}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr(), cfg)
		if err != nil {
			t.Fatalf("offer %q: %v", offer, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
			t.Errorf("offer %q: got protocol %q; want %q", offer, got, "http/1.1")
		}
		conn.Close()
	}
}

func TestTLSForwardedProtoAndScheme(t *testing.T) {
	dir := t.TempDir()
	a := newTestCert(t, dir, "a.test")
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
	s := startTLSProxy(t, be.addr, `headers = { request_set = { "X-Scheme" = "{scheme}" }, response_set = { "X-Scheme" = "{scheme}" } }`, a)
	roots := x509.NewCertPool()
	roots.AddCert(a.cert)
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: roots}},
	}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+s.addr()+"/p?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, "ok")
	}
	if resp.TLS == nil || resp.TLS.ServerName != "a.test" {
		t.Errorf("got TLS state %+v; want a connection to a.test", resp.TLS)
	}
	head := be.next(t)
	if got, want := requestLine(head), "GET /p?q=1 HTTP/1.1"; got != want {
		t.Errorf("request line: got %q; want %q", got, want)
	}
	wantField(t, "request", head, "X-Forwarded-Proto", "https")
	wantField(t, "request", head, "X-Scheme", "https")
	if got := resp.Header.Get("X-Scheme"); got != "https" {
		t.Errorf("response X-Scheme: got %q; want %q", got, "https")
	}
}

// TestTLSRedirectKeepsHTTPS checks that a redirect that does not name a
// scheme keeps https, and the port, on a TLS listener.
func TestTLSRedirectKeepsHTTPS(t *testing.T) {
	dir := t.TempDir()
	a := newTestCert(t, dir, "a.test")
	certs := fmt.Sprintf("{ cert_file = %q, key_file = %q }", a.certFile, a.keyFile)
	s := startProxy(t, fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
certificates = [%s]
[[http.routes]]
redirect = { host = "b.test", path = "/moved" }
`, certs))
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+s.addr()+"/old?x=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a.test:8443"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "https://b.test:8443/moved?x=1"; resp.StatusCode != 302 || got != want {
		t.Errorf("got %d %q; want 302 %q", resp.StatusCode, got, want)
	}
}
