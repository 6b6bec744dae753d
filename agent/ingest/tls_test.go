package ingest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// pki is a CA and the certificates it signed, as PEM files in a temp dir.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

func newCA(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	return &pki{dir: dir, cert: cert, key: key}
}

// issue signs a certificate for name, a server's (for 127.0.0.1) or a
// client's, and writes name.crt and name.key.
func (ca *pki) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"sluice test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsSetup is a server CA and certificate, a clients' CA with one client,
// and a client from an unrelated CA.
type tlsSetup struct {
	dir                string
	serverCA, clientCA string // CA files
	serverCert, key    string
	good, bad          tls.Certificate
}

func newTLSSetup(t *testing.T) tlsSetup {
	t.Helper()
	dir := t.TempDir()
	s := tlsSetup{dir: dir}
	sca := newCA(t, dir, "server-ca")
	s.serverCert, s.key = sca.issue(t, "server", true)
	cca := newCA(t, dir, "clients-ca")
	other := newCA(t, dir, "other-ca")
	s.serverCA, s.clientCA = filepath.Join(dir, "server-ca.crt"), filepath.Join(dir, "clients-ca.crt")
	load := func(ca *pki, name string) tls.Certificate {
		c, k := ca.issue(t, name, false)
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	s.good, s.bad = load(cca, "app"), load(other, "intruder")
	return s
}

// fields is the input's config fragment for this setup.
func (s tlsSetup) fields(mtls bool) string {
	f := ", tls: {cert_file: " + strconv.Quote(s.serverCert) + ", key_file: " + strconv.Quote(s.key)
	if mtls {
		f += ", client_ca_file: " + strconv.Quote(s.clientCA)
	}
	return f + "}"
}

// client trusts the server's CA and presents the given certificates.
func (s tlsSetup) client(t *testing.T, certs ...tls.Certificate) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(s.serverCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots,
			// Sent whatever CAs the server asks for, so that the server's
			// verification is what refuses a foreign certificate (Go's
			// client would otherwise keep it back and send none).
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &certs[0], nil
			},
		}},
	}
}

func postWith(c *http.Client, url, body string, header ...string) (response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, b}, err
}

// TestMTLS: with client_ca_file, only clients holding a certificate from
// that CA get a request through; the others are refused in the handshake
// and nothing of theirs reaches the output. Events sent over mTLS are
// delivered, carrying the client's certificate subject.
func TestMTLS(t *testing.T) {
	s := newTLSSetup(t)
	url, rec := start(t, s.fields(true), "")
	url = strings.Replace(url, "http://", "https://", 1)

	res, err := postWith(s.client(t, s.good), url, `[{"id":1},{"id":2}]`)
	if err != nil || res.status != 202 || !match(res.body, `{"accepted":2}`) {
		t.Fatalf("client with a good certificate: %d %s, %v", res.status, res.body, err)
	}

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate from another CA", []tls.Certificate{s.bad}},
		// The server's own certificate is valid, but not for the clients' CA.
		{"certificate from the server's CA", []tls.Certificate{mustPair(t, s.serverCert, s.key)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := postWith(s.client(t, tc.certs...), url, `{"id":3}`)
			if err == nil {
				t.Fatalf("accepted: %d %s", res.status, res.body)
			}
			// TLS 1.3 clients learn of the refusal from the server's alert.
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "tls") {
				t.Errorf("error %v, want a TLS handshake error", err)
			}
		})
	}

	t.Run("plain HTTP", func(t *testing.T) {
		res := post(t, strings.Replace(url, "https://", "http://", 1), `{"id":4}`)
		if res.status != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d %s, want 400", res.status, res.body)
		}
	})

	if got, want := rec.got(), []string{`{"id":1}`, `{"id":2}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("the output got %q, want %q", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, subj := range rec.subjects {
		if subj != "CN=app,O=sluice test" {
			t.Errorf("%s: %q", MetaClientSubject, subj)
		}
	}
}

func mustPair(t *testing.T, cert, key string) tls.Certificate {
	t.Helper()
	p, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMTLSWithToken: a trusted certificate does not replace the token when
// both are configured.
func TestMTLSWithToken(t *testing.T) {
	s := newTLSSetup(t)
	url, rec := start(t, s.fields(true)+", token: s3cret", "")
	url = strings.Replace(url, "http://", "https://", 1)
	c := s.client(t, s.good)
	if res, err := postWith(c, url, `{"id":1}`); err != nil || res.status != 401 {
		t.Errorf("certificate, no token: %d %s, %v; want 401", res.status, res.body, err)
	}
	if res, err := postWith(c, url, `{"id":2}`, "Authorization", "Bearer s3cret"); err != nil || res.status != 202 {
		t.Errorf("certificate and token: %d %s, %v; want 202", res.status, res.body, err)
	}
	if res, err := postWith(s.client(t), url, `{"id":3}`, "Authorization", "Bearer s3cret"); err == nil {
		t.Errorf("token, no certificate: accepted with %d %s", res.status, res.body)
	}
	if got, want := rec.got(), []string{`{"id":2}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("the output got %q, want %q", got, want)
	}
}

// TestTLSWithoutClientCA: with only a server certificate, any client that
// trusts it gets through, with or without a certificate of its own, and
// min_version is enforced.
func TestTLSWithoutClientCA(t *testing.T) {
	s := newTLSSetup(t)
	url, rec := start(t, s.fields(false)[:len(s.fields(false))-1]+", min_version: \"1.3\"}", "")
	url = strings.Replace(url, "http://", "https://", 1)
	if res, err := postWith(s.client(t), url, `{"id":1}`); err != nil || res.status != 202 {
		t.Errorf("no client certificate: %d %s, %v; want 202", res.status, res.body, err)
	}
	old := s.client(t)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
	if res, err := postWith(old, url, `{"id":2}`); err == nil {
		t.Errorf("a TLS 1.2 client with min_version 1.3: accepted with %d %s", res.status, res.body)
	}
	if got, want := rec.got(), []string{`{"id":1}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("the output got %q, want %q", got, want)
	}
}

// TestTLSConfigErrors: a missing or unusable file is refused when the
// stream is built, with the field and the file named.
func TestTLSConfigErrors(t *testing.T) {
	s := newTLSSetup(t)
	garbage := filepath.Join(s.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(s.dir, "missing.crt")
	for _, tc := range []struct {
		name, cert, key, ca string
		want                []string
	}{
		{"missing cert", missing, s.key, "", []string{"tls.cert_file", missing, "no such file"}},
		{"missing key", s.serverCert, missing, "", []string{"tls.key_file", missing}},
		{"garbage cert", garbage, s.key, "", []string{"tls.cert_file " + garbage, "tls.key_file " + s.key}},
		{"key of another cert", s.serverCert, filepath.Join(s.dir, "app.key"), "", []string{"tls.cert_file", "tls.key_file", "app.key"}},
		{"missing client CA", s.serverCert, s.key, missing, []string{"tls.client_ca_file", missing}},
		{"garbage client CA", s.serverCert, s.key, garbage, []string{"tls.client_ca_file " + garbage, "no PEM certificate"}},
		{"cert without key", s.serverCert, "", "", []string{"tls.cert_file and tls.key_file must be set together"}},
		{"client CA without cert", "", "", s.clientCA, []string{"tls.cert_file and tls.key_file must be set together"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := "{address: 127.0.0.1:0, tls: {cert_file: " + strconv.Quote(tc.cert) + ", key_file: " + strconv.Quote(tc.key) + ", client_ca_file: " + strconv.Quote(tc.ca) + "}}"
			parsed, err := ConfigSpec().ParseYAML(conf, service.NewEnvironment())
			if err != nil {
				t.Fatal(err)
			}
			_, err = newInput(parsed, service.MockResources().Logger())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A bad min_version is a lint error, found before anything is built.
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		t.Fatal(err)
	}
	err := env.NewStreamBuilder().SetYAML("input:\n  http_ingest:\n    tls: {min_version: \"1.1\"}\noutput:\n  drop: {}\n")
	if err == nil || !strings.Contains(err.Error(), "min_version") {
		t.Errorf("min_version 1.1: %v, want a lint error naming it", err)
	}
}
