// Package jwtauthtest makes keys and signs access tokens for tests of
// code behind jwtauth: an Issuer is a throwaway authorization server whose
// tokens a jwtauth.Verifier configured with its Config accepts.
package jwtauthtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Issuer and Audience of test tokens.
const (
	IssuerURL = "https://issuer.test"
	Audience  = "https://priorflow.test/fhir"
)

// NewKey returns a private signing key for alg (RS*/PS*: 2048-bit RSA;
// ES256/384/512: P-256/384/521) with alg, use and kid (its RFC 7638
// thumbprint) set.
func NewKey(tb testing.TB, alg jwa.SignatureAlgorithm) jwk.Key {
	tb.Helper()
	var (
		raw any
		err error
	)
	switch alg {
	case jwa.ES256():
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.ES384():
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jwa.ES512():
		raw, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		tb.Fatalf("jwtauthtest: generate key: %v", err)
	}
	k, err := jwk.Import(raw)
	if err != nil {
		tb.Fatalf("jwtauthtest: import key: %v", err)
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
		tb.Fatal(err)
	}
	if err := k.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		tb.Fatal(err)
	}
	if err := jwk.AssignKeyID(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// PublicSet is the public key set of keys.
func PublicSet(tb testing.TB, keys ...jwk.Key) jwk.Set {
	tb.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := k.PublicKey()
		if err != nil {
			tb.Fatalf("jwtauthtest: public key: %v", err)
		}
		if err := set.AddKey(pub); err != nil {
			tb.Fatalf("jwtauthtest: add key: %v", err)
		}
	}
	return set
}

// Sign signs claims, exactly as given, with key under key's alg and kid.
func Sign(tb testing.TB, key jwk.Key, claims map[string]any) string {
	tb.Helper()
	alg, ok := key.Algorithm()
	if !ok {
		tb.Fatal("jwtauthtest: the key has no alg")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	signed, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatalf("jwtauthtest: sign: %v", err)
	}
	return string(signed)
}

// Claims are the claims of a good token from IssuerURL for Audience with
// scope, valid for five minutes. Tests change or delete entries to break
// it.
func Claims(scope string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss":       IssuerURL,
		"aud":       Audience,
		"sub":       "test-client",
		"client_id": "test-client",
		"scope":     scope,
		"iat":       now,
		"exp":       now + 300,
		"jti":       "test-token",
	}
}

// JWKSServer serves a key set that tests can replace (a key rotation)
// and counts the fetches.
type JWKSServer struct {
	URL     string
	mu      sync.Mutex
	handler http.Handler
	fetches atomic.Int64
}

// NewJWKSServer serves h (a key set handler such as a token server's
// JWKSHandler) until the test ends.
func NewJWKSServer(tb testing.TB, h http.Handler) *JWKSServer {
	tb.Helper()
	s := &JWKSServer{handler: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		h := s.handler
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL + "/jwks.json"
	return s
}

// Serve replaces the handler.
func (s *JWKSServer) Serve(h http.Handler) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

// Fetches is how many requests the server has had.
func (s *JWKSServer) Fetches() int64 { return s.fetches.Load() }

// SetHandler serves set as JSON.
func SetHandler(tb testing.TB, set jwk.Set) http.Handler {
	tb.Helper()
	body, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}
