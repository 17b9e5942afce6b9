// Package tokenserver is Priorflow's built-in SMART Backend Services
// authorization server, for deployments without an authorization server
// of their own: backend clients registered in a YAML file authenticate
// with a JWT signed by their private key (private_key_jwt, RFC 7523 §2.2)
// and receive short-lived JWT access tokens for the client_credentials
// grant (RFC 6749 §4.4), signed with the server's key.
//
// Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html.
//
// The tokens it issues are verified like any other issuer's by
// auth/jwtauth, configured with this server's PublicKeys (or its JWKS
// URL). Client assertion ids are remembered in PostgreSQL until the
// assertion expires, so that an assertion cannot be replayed to any
// replica.
package tokenserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/priorflow/priorflow/auth"
)

const (
	// DefaultTokenTTL is the lifetime of issued access tokens: short,
	// since a backend client can always get a new one and there is no
	// revocation.
	DefaultTokenTTL = 5 * time.Minute
	// clockSkew is the tolerance on the times in client assertions.
	clockSkew = 60 * time.Second
	// maxAssertionLifetime is how far ahead of now an assertion may
	// expire: SMART Backend Services asks clients for no more than five
	// minutes, which also bounds how long a jti is remembered.
	maxAssertionLifetime = 5 * time.Minute
)

// AssertionType is the client_assertion_type of private_key_jwt (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Config configures the token server.
type Config struct {
	// Issuer is the server's base URL, the iss of every issued token.
	Issuer string
	// TokenURL is the absolute URL of the token endpoint. Client
	// assertions must name it as their aud (RFC 7523 §3).
	TokenURL string
	// Audience is the FHIR base URL put in issued tokens' aud, the one
	// jwtauth.Config.Audience expects.
	Audience string
	// TokenTTL is the lifetime of issued tokens; DefaultTokenTTL when zero.
	TokenTTL time.Duration
	// Key is the private signing key (LoadOrCreateKey).
	Key jwk.Key
	// Clients are the registered backend services (LoadClients).
	Clients *Clients
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	for _, u := range []struct{ name, value string }{{"issuer", c.Issuer}, {"token URL", c.TokenURL}, {"audience", c.Audience}} {
		if p, err := url.Parse(u.value); u.value == "" || err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute http(s) URL", u.name, u.value))
		}
	}
	if c.TokenTTL < 0 {
		errs = append(errs, fmt.Errorf("token TTL %s is negative", c.TokenTTL))
	}
	if c.Key == nil {
		errs = append(errs, errors.New("a signing key is required"))
	} else if private, err := jwk.IsPrivateKey(c.Key); err != nil || !private {
		errs = append(errs, errors.New("the signing key is not an asymmetric private key"))
	} else if _, err := signingAlgorithm(c.Key); err != nil {
		errs = append(errs, fmt.Errorf("signing key: %w", err))
	} else if _, ok := c.Key.KeyID(); !ok {
		errs = append(errs, errors.New("the signing key has no kid"))
	}
	if c.Clients == nil {
		errs = append(errs, errors.New("a client registry is required (an empty one will do)"))
	}
	return errors.Join(errs...)
}

// Server issues access tokens. It is safe for concurrent use.
type Server struct {
	cfg    Config
	alg    jwa.SignatureAlgorithm
	public jwk.Set
	replay *ReplayStore
	remote *remoteKeys
	log    *slog.Logger
	now    func() time.Time
}

// New returns a token server. replay remembers client assertion ids.
func New(cfg Config, replay *ReplayStore, log *slog.Logger) (*Server, error) {
	if replay == nil || log == nil {
		return nil, errors.New("tokenserver: a replay store and a logger are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tokenserver: config: %w", err)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	alg, err := signingAlgorithm(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("tokenserver: %w", err)
	}
	pub, err := cfg.Key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("tokenserver: public key: %w", err)
	}
	for name, v := range map[string]any{jwk.AlgorithmKey: alg, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := pub.Set(name, v); err != nil {
			return nil, fmt.Errorf("tokenserver: public key: set %s: %w", name, err)
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("tokenserver: public key set: %w", err)
	}
	return &Server{
		cfg:    cfg,
		alg:    alg,
		public: set,
		replay: replay,
		remote: newRemoteKeys(log),
		log:    log,
		now:    time.Now,
	}, nil
}

// PublicKeys is the server's public key set, the static keys for a
// jwtauth.Verifier in the same process.
func (s *Server) PublicKeys() jwk.Set { return s.public }

// Mint issues an access token for subject without a client assertion,
// for development (`make run` prints one). scope is any SMART scope
// string and is not checked against the client registry; ttl is the
// server's TokenTTL when zero or negative. Never expose Mint over HTTP.
func (s *Server) Mint(subject, scope string, ttl time.Duration) (string, error) {
	if subject == "" {
		return "", errors.New("tokenserver: mint: a subject is required")
	}
	scopes, err := auth.ParseScopes(scope)
	if err != nil {
		return "", fmt.Errorf("tokenserver: mint: %w", err)
	}
	if ttl <= 0 {
		ttl = s.cfg.TokenTTL
	}
	tok, err := s.issue(subject, scopes.String(), nil, ttl)
	if err != nil {
		return "", fmt.Errorf("tokenserver: mint: %w", err)
	}
	return tok, nil
}

// issue signs an access token (RFC 9068 profile: typ at+jwt) carrying the
// claims jwtauth reads.
func (s *Server) issue(clientID, scope string, purposeOfUse []string, ttl time.Duration) (string, error) {
	now := s.now().Truncate(time.Second)
	jti, err := randomID()
	if err != nil {
		return "", err
	}
	b := jwt.NewBuilder().
		Issuer(s.cfg.Issuer).
		Audience([]string{s.cfg.Audience}).
		Subject(clientID).
		IssuedAt(now).
		Expiration(now.Add(ttl)).
		JwtID(jti).
		Claim("client_id", clientID).
		Claim("scope", scope)
	if len(purposeOfUse) > 0 {
		b = b.Claim("purpose_of_use", purposeOfUse)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("build access token: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		return "", fmt.Errorf("build access token header: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(s.alg, s.cfg.Key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return string(signed), nil
}

// ClientAssertion signs a private_key_jwt client assertion for clientID
// at the token endpoint tokenURL, as SMART Backend Services asks of a
// client: iss and sub the client id, aud the token URL, a fresh random
// jti, and exp five minutes ahead. key is the client's private key; its
// kid (the RFC 7638 thumbprint when it has none) goes in the header, and
// it signs with its alg, else ES256/ES384/ES512 by curve or RS384.
func ClientAssertion(clientID, tokenURL string, key jwk.Key) (string, error) {
	if clientID == "" || tokenURL == "" || key == nil {
		return "", errors.New("tokenserver: client assertion: client id, token URL and key are required")
	}
	key, err := thumbprint(key)
	if err != nil {
		return "", fmt.Errorf("tokenserver: client assertion: kid: %w", err)
	}
	alg, err := signingAlgorithm(key)
	if err != nil {
		return "", fmt.Errorf("tokenserver: client assertion: %w", err)
	}
	jti, err := randomID()
	if err != nil {
		return "", fmt.Errorf("tokenserver: client assertion: %w", err)
	}
	now := time.Now().Truncate(time.Second)
	tok, err := jwt.NewBuilder().
		Issuer(clientID).
		Subject(clientID).
		Audience([]string{tokenURL}).
		IssuedAt(now).
		Expiration(now.Add(maxAssertionLifetime)).
		JwtID(jti).
		Build()
	if err != nil {
		return "", fmt.Errorf("tokenserver: client assertion: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		return "", fmt.Errorf("tokenserver: client assertion: sign: %w", err)
	}
	return string(signed), nil
}

// randomID is 128 random bits, base64url: a jti.
func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// scopesSupported is every resource scope some client is registered for.
func (s *Server) scopesSupported() []string {
	var out []string
	for _, id := range s.cfg.Clients.IDs() {
		cl, _ := s.cfg.Clients.Lookup(id)
		for _, sc := range cl.Scopes {
			out = append(out, sc.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// printable shortens a value taken from a request for an error message.
func printable(s string) string {
	const limit = 64
	s = auth.ErrorDescription(s)
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
