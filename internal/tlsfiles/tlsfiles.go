// Package tlsfiles builds TLS configurations from PEM files: the one way
// Priorflow's listeners (MLLP, the DICOM Storage SCP) and clients (MLLP,
// HTTP and DIMSE sources) load certificates, TLS 1.2 at least. Errors name
// the files, never their content.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Server returns a server configuration: the certificate chain and key.
// If clientCAFile is not empty, peers must present a certificate signed by
// one of its CAs (mutual TLS, tls.RequireAndVerifyClientCert).
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("server TLS: certificate and key files are both required")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server TLS: certificate %s, key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pool, err := CAs(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server TLS: client CA: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns a client configuration, in the argument order of Server:
// an optional client certificate and key (for a server that requires
// mutual TLS), and an optional CA file to verify the server with instead
// of the system roots.
func Client(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client TLS: certificate %s, key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("client TLS: certificate and key files go together")
	}
	if caFile != "" {
		pool, err := CAs(caFile)
		if err != nil {
			return nil, fmt.Errorf("client TLS: CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// CAs reads a file of PEM certificates into a pool.
func CAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err // os errors name the file
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
