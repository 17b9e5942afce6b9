package jwtauth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestVerifier_UnknownKidRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES256())
	jwks := jwtauthtest.NewJWKSServer(t, jwtauthtest.SetHandler(t, jwtauthtest.PublicSet(t, key)))
	v, err := NewVerifier(context.Background(), Config{Issuer: jwtauthtest.IssuerURL, Audience: jwtauthtest.Audience, JWKSURL: jwks.URL}, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	clock := time.Now()
	v.now = func() time.Time { return clock }
	ctx := context.Background()
	start := jwks.Fetches()

	// A flood of tokens naming made-up keys costs the issuer one fetch.
	for range 20 {
		bogus := jwtauthtest.NewKey(t, jwa.ES256())
		_, err := v.Verify(ctx, jwtauthtest.Sign(t, bogus, jwtauthtest.Claims("system/ImagingStudy.rs")))
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(e.Description, "not among the issuer's keys") {
			t.Fatalf("a token of an unknown key: %v", err)
		}
	}
	if got, want := jwks.Fetches(), start+1; got != want {
		t.Errorf("fetches=%d after a flood of unknown kids, want %d", got, want)
	}

	// Known keys never cause a fetch.
	if _, err := v.Verify(ctx, jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))); err != nil {
		t.Fatalf("a token of the known key: %v", err)
	}
	if got, want := jwks.Fetches(), start+1; got != want {
		t.Errorf("fetches=%d after a known kid, want %d", got, want)
	}

	// After the interval a rotation is picked up again, with one fetch
	// however many requests carry the new key at once.
	clock = clock.Add(refetchInterval + time.Second)
	rotated := jwtauthtest.NewKey(t, jwa.ES256())
	jwks.Serve(jwtauthtest.SetHandler(t, jwtauthtest.PublicSet(t, key, rotated)))
	tok := jwtauthtest.Sign(t, rotated, jwtauthtest.Claims("system/ImagingStudy.rs"))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := v.Verify(ctx, tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a token of the rotated key: %v", err)
	}
	if got, want := jwks.Fetches(), start+2; got != want {
		t.Errorf("fetches=%d after the rotation, want %d", got, want)
	}
}

func TestVerifier_RefetchFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES256())
	jwks := jwtauthtest.NewJWKSServer(t, jwtauthtest.SetHandler(t, jwtauthtest.PublicSet(t, key)))
	v, err := NewVerifier(context.Background(), Config{Issuer: jwtauthtest.IssuerURL, Audience: jwtauthtest.Audience, JWKSURL: jwks.URL}, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	jwks.Serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))

	// The issuer's JWKS breaks: a token of a new key can be neither
	// accepted nor refused for good, so the client is told to retry;
	// tokens of known keys still verify.
	rotated := jwtauthtest.NewKey(t, jwa.ES256())
	_, err = v.Verify(context.Background(), jwtauthtest.Sign(t, rotated, jwtauthtest.Claims("system/ImagingStudy.rs")))
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != CodeUnavailable {
		t.Fatalf("a token of a new key while the JWKS is broken: %v", err)
	}
	if _, err := v.Verify(context.Background(), jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))); err != nil {
		t.Errorf("a token of a known key while the JWKS is broken: %v", err)
	}
}
