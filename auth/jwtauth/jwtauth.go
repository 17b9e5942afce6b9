// Package jwtauth is Priorflow's OAuth 2.0 resource server for SMART on
// FHIR: it verifies the JWT access tokens that callers present as
// "Authorization: Bearer …" (RFC 6750), turns their claims into an
// auth.Principal, and refuses everything else with an RFC 6750 §3
// challenge.
//
// The issuer's keys come either from its JWKS URL — cached, refreshed in
// the background, and refetched at once when a token names a key id the
// cache does not know (key rotation), at most once every 30 seconds so
// that tokens with made-up key ids cannot turn the server into a flood of
// requests to the issuer — or from a static key set, which is how the
// built-in token server (auth/tokenserver) hands over its own keys.
//
// Only asymmetric signatures are accepted (RS*, PS*, ES*): a resource
// server holding a shared HMAC secret could mint tokens itself, and "none"
// is no signature at all.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/priorflow/priorflow/auth"
)

// DefaultClockSkew is how far clocks of issuer and server may disagree.
const DefaultClockSkew = 60 * time.Second

const (
	// refetchInterval is the least time between two JWKS fetches caused
	// by unknown key ids. A rotation is picked up by the first token
	// signed with the new key; a flood of made-up key ids costs the
	// issuer one request per interval.
	refetchInterval = 30 * time.Second
	// The background refresh follows the issuer's Cache-Control within
	// these bounds, so that a removed (compromised) key stops verifying
	// within the hour even when the issuer says nothing.
	minRefreshInterval = 5 * time.Minute
	maxRefreshInterval = time.Hour
	// initialFetchTimeout bounds NewVerifier's first JWKS fetch when the
	// caller's context has no deadline.
	initialFetchTimeout = 30 * time.Second
	// maxTokenLength refuses absurd tokens before any parsing. SMART
	// tokens with many scopes stay well below it.
	maxTokenLength = 16 << 10
)

// Config says which tokens the resource server accepts.
type Config struct {
	// Issuer must equal the token's iss exactly (RFC 7519 §4.1.1).
	Issuer string
	// Audience must be among the token's aud: the FHIR base URL of this
	// server, so that a token issued for another resource server is
	// refused here.
	Audience string
	// JWKSURL is the issuer's key set (its jwks_uri). Exactly one of
	// JWKSURL and Keys is set.
	JWKSURL string
	// Keys is a static key set, e.g. the built-in token server's
	// PublicKeys. Private keys in it are reduced to their public halves;
	// symmetric keys are refused.
	Keys jwk.Set
	// ClockSkew is the tolerance on exp, nbf and iat; DefaultClockSkew
	// when zero.
	ClockSkew time.Duration
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	switch {
	case c.JWKSURL == "" && c.Keys == nil:
		errs = append(errs, errors.New("a JWKS URL or a static key set is required"))
	case c.JWKSURL != "" && c.Keys != nil:
		errs = append(errs, errors.New("set either a JWKS URL or a static key set, not both"))
	case c.JWKSURL != "":
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("JWKS URL %q is not an absolute http(s) URL", c.JWKSURL))
		}
	case c.Keys.Len() == 0:
		errs = append(errs, errors.New("the static key set is empty"))
	}
	if c.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("clock skew %s is negative", c.ClockSkew))
	}
	return errors.Join(errs...)
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	log    *slog.Logger
	static jwk.Set    // when the keys are static
	cache  *jwk.Cache // when they come from cfg.JWKSURL
	now    func() time.Time

	refetchMu   sync.Mutex
	nextRefetch time.Time // no refetch for an unknown kid before then
}

// NewVerifier returns a Verifier for cfg. With a JWKS URL it fetches the
// key set once before returning, so that a wrong URL or an unreachable
// issuer fails at startup rather than on the first request; ctx bounds
// that fetch (30 s when it has no deadline). Call Close to stop the
// background refresh.
func NewVerifier(ctx context.Context, cfg Config, log *slog.Logger) (*Verifier, error) {
	if log == nil {
		return nil, errors.New("jwtauth: a logger is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jwtauth: config: %w", err)
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	v := &Verifier{cfg: cfg, log: log, now: time.Now}
	if cfg.Keys != nil {
		pub, err := jwk.PublicSetOf(cfg.Keys)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: static keys: %w", err)
		}
		v.static = pub
		return v, nil
	}
	cache, err := startCache(ctx, cfg.JWKSURL, log)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	v.cache = cache
	return v, nil
}

// startCache starts a jwk.Cache for u and waits for its first fetch. The
// cache's goroutines outlive ctx (they stop on Close); a failed first
// fetch ends the wait at once instead of after httprc's retry interval.
func startCache(ctx context.Context, u string, log *slog.Logger) (*jwk.Cache, error) {
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		waitCtx, stop = context.WithTimeout(waitCtx, initialFetchTimeout)
		defer stop()
	}
	var (
		mu       sync.Mutex
		starting = true
	)
	sink := errsink.NewFunc(func(_ context.Context, err error) {
		mu.Lock()
		defer mu.Unlock()
		if starting {
			cancel(err)
			return
		}
		// A failed background refresh keeps the last good key set.
		log.Warn("refreshing the issuer's JWKS failed; keeping the keys fetched before", "url", u, "err", err)
	})
	client := httprc.NewClient(httprc.WithWorkers(1), httprc.WithErrorSink(sink))
	cache, err := jwk.NewCache(context.WithoutCancel(ctx), client)
	if err != nil {
		return nil, fmt.Errorf("start JWKS cache: %w", err)
	}
	err = cache.Register(waitCtx, u,
		jwk.WithHttprcResourceOption(httprc.WithMinInterval(minRefreshInterval)),
		jwk.WithHttprcResourceOption(httprc.WithMaxInterval(maxRefreshInterval)),
	)
	mu.Lock()
	starting = false
	mu.Unlock()
	if err != nil {
		if cause := context.Cause(waitCtx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			err = cause
		}
		_ = cache.Shutdown(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("fetch JWKS %s: %w", u, err)
	}
	return cache, nil
}

// Close stops the background refresh of the issuer's key set.
func (v *Verifier) Close() error {
	if v.cache == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.cache.Shutdown(ctx); err != nil {
		return fmt.Errorf("jwtauth: stop JWKS cache: %w", err)
	}
	return nil
}

// keys returns the current key set.
func (v *Verifier) keys(ctx context.Context) (jwk.Set, error) {
	if v.static != nil {
		return v.static, nil
	}
	set, err := v.cache.Lookup(ctx, v.cfg.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", v.cfg.JWKSURL, err)
	}
	return set, nil
}

// keysFor returns the key set to verify a token signed with key id kid.
// When the set does not hold kid and the keys come from a URL, it is
// refetched once — unless another refetch happened within
// refetchInterval, in which case the current set is returned and the
// token fails for want of a key.
func (v *Verifier) keysFor(ctx context.Context, kid string) (jwk.Set, error) {
	set, err := v.keys(ctx)
	if err != nil {
		return nil, err
	}
	if kid == "" || v.static != nil {
		return set, nil
	}
	if _, ok := set.LookupKeyID(kid); ok {
		return set, nil
	}
	// Requests for the same new kid queue here; the first refetches and
	// the others find the key when they get the lock.
	v.refetchMu.Lock()
	defer v.refetchMu.Unlock()
	if set, err = v.keys(ctx); err != nil {
		return nil, err
	}
	if _, ok := set.LookupKeyID(kid); ok {
		return set, nil
	}
	now := v.now()
	if now.Before(v.nextRefetch) {
		return set, nil
	}
	v.nextRefetch = now.Add(refetchInterval)
	fresh, err := v.cache.Refresh(ctx, v.cfg.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("refetch JWKS %s for an unknown key id: %w", v.cfg.JWKSURL, err)
	}
	v.log.Info("refetched the issuer's JWKS for an unknown key id", "url", v.cfg.JWKSURL, "kid", kid, "keys", fresh.Len())
	return fresh, nil
}

// Verify checks raw — the token of an Authorization: Bearer header — and
// returns its caller. Every error is an *Error fit to show the client.
func (v *Verifier) Verify(ctx context.Context, raw string) (*auth.Principal, error) {
	p, e := v.verify(ctx, raw)
	if e != nil {
		if e.err != nil {
			v.log.Warn("a bearer token could not be checked", "err", e.err)
		}
		return nil, e
	}
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*auth.Principal, *Error) {
	tok, e := parseToken(raw)
	if e != nil {
		return nil, e
	}
	set, err := v.keysFor(ctx, tok.kid)
	if err != nil {
		return nil, &Error{
			Status:      http.StatusServiceUnavailable,
			Code:        CodeUnavailable,
			Description: "the token issuer's keys cannot be fetched right now; try again later",
			err:         err,
		}
	}
	payload, e := tok.verify(set)
	if e != nil {
		return nil, e
	}
	c, e := decodeClaims(payload)
	if e != nil {
		return nil, e
	}
	return v.principal(c)
}

// principal checks the claims (RFC 7519 §4.1, SMART App Launch "scope")
// and maps them to the caller.
func (v *Verifier) principal(c *claims) (*auth.Principal, *Error) {
	if c.issuer != v.cfg.Issuer {
		return nil, invalidToken("the token's issuer is not %s", v.cfg.Issuer)
	}
	if !c.hasAudience(v.cfg.Audience) {
		return nil, invalidToken("the token's audience does not include %s", v.cfg.Audience)
	}
	now, skew := v.now(), v.cfg.ClockSkew
	if c.expiry == nil {
		return nil, invalidToken("the token has no expiry (exp)")
	}
	if !now.Before(c.expiry.Add(skew)) {
		return nil, invalidToken("the token expired at %s", stamp(*c.expiry))
	}
	if c.notBefore != nil && now.Add(skew).Before(*c.notBefore) {
		return nil, invalidToken("the token is not valid before %s", stamp(*c.notBefore))
	}
	if c.issuedAt != nil && now.Add(skew).Before(*c.issuedAt) {
		return nil, invalidToken("the token was issued in the future (iat %s)", stamp(*c.issuedAt))
	}
	if c.scope == nil {
		return nil, invalidToken("the token has no scope claim")
	}
	scopes, err := auth.ParseScopes(*c.scope)
	if err != nil {
		return nil, invalidToken("the token's scope is malformed: %v", err)
	}
	clientID := c.clientID
	if clientID == "" {
		clientID = c.azp
	}
	if c.subject == "" && clientID == "" {
		// Every access is audited under someone.
		return nil, invalidToken("the token names neither a subject (sub) nor a client (client_id)")
	}
	return &auth.Principal{
		Issuer:       c.issuer,
		Subject:      c.subject,
		ClientID:     clientID,
		Scopes:       scopes,
		Patient:      c.patient,
		FHIRUser:     c.fhirUser,
		PurposeOfUse: c.purposeOfUse,
		TokenID:      c.id,
		Expiry:       *c.expiry,
	}, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
