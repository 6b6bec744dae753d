package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Fields of the `tls` block.
const (
	fTLS          = "tls"
	fCertFile     = "cert_file"
	fKeyFile      = "key_file"
	fClientCAFile = "client_ca_file"
	fMinVersion   = "min_version"
)

var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

func tlsField() *service.ConfigField {
	return service.NewObjectField(fTLS,
		service.NewStringField(fCertFile).
			Description("The server's certificate (PEM; the chain after it, if any). Setting it and `key_file` turns TLS on: the input then answers HTTPS only.").
			Default("").
			Example("/etc/sluice/tls/tls.crt"),
		service.NewStringField(fKeyFile).
			Description("The private key of `cert_file` (PEM).").
			Default("").
			Example("/etc/sluice/tls/tls.key"),
		service.NewStringField(fClientCAFile).
			Description("When set, clients must present a certificate signed by one of the CAs in this PEM file (mutual TLS); a client without one, or with one from another CA, is refused during the handshake, before any request is read. Requires `cert_file`.").
			Default("").
			Example("/etc/sluice/tls/clients-ca.crt"),
		// Not an enum field: Benthos' enum lint looks options up as paths,
		// so "1.2" never matches itself; tlsLintRule checks it instead.
		service.NewStringField(fMinVersion).
			Description("The oldest TLS version accepted: `1.2` or `1.3`.").
			Default("1.2").
			Advanced(),
	).
		Description("Serve HTTPS, and optionally require client certificates (mTLS). It combines with `token`: with both, a request needs a trusted certificate and the bearer token. The files are read when the pipeline starts; a renewed certificate is picked up at the next restart. A client's certificate subject is in the metadata `" + MetaClientSubject + "`.").
		Advanced()
}

// tlsLintRule refuses a min_version that is not 1.2 or 1.3 at lint time.
const tlsLintRule = `root = if !["1.2", "1.3"].contains(this.tls.min_version.or("1.2").string()) { ["tls.min_version must be \"1.2\" or \"1.3\", got %v".format(this.tls.min_version)] }`

// parseTLS builds the server's TLS config from the `tls` block, or nil
// when TLS is off. Errors name the field and the file, as a user fixing a
// deployment has the config and the file system side by side.
func parseTLS(conf *service.ParsedConfig) (*tls.Config, error) {
	tc := conf.Namespace(fTLS)
	var errs []error
	str := func(f string) string {
		v, err := tc.FieldString(f)
		errs = append(errs, err)
		return v
	}
	certFile, keyFile, caFile, minVersion := str(fCertFile), str(fKeyFile), str(fClientCAFile), str(fMinVersion)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	switch {
	case certFile == "" && keyFile == "" && caFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, fmt.Errorf("tls.%s and tls.%s must be set together (got %s %q, %s %q)", fCertFile, fKeyFile, fCertFile, certFile, fKeyFile, keyFile)
	}
	cfg := &tls.Config{MinVersion: tlsVersions[minVersion]}
	if cfg.MinVersion == 0 {
		return nil, fmt.Errorf("tls.%s must be \"1.2\" or \"1.3\", got %q", fMinVersion, minVersion)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls.%s: %w", fCertFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.%s: %w", fKeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.%s %s with tls.%s %s: %w", fCertFile, certFile, fKeyFile, keyFile, err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls.%s: %w", fClientCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("tls.%s %s: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)", fClientCAFile, caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
