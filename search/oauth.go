package search

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/priorflow/priorflow/internal/printable"
)

// SMART Backend Services values (SMART App Launch 2.x, "Backend Services",
// and RFC 7523 section 2.2).
const (
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is the assertion's exp: SMART allows no more than
	// five minutes.
	assertionLifetime = 5 * time.Minute
	// defaultTokenLifetime is assumed when a token response has no
	// expires_in (SMART requires one); a 401 still triggers a new token.
	defaultTokenLifetime = 5 * time.Minute
	// maxTokenResponse bounds a token endpoint's answer.
	maxTokenResponse = 64 << 10
)

// tokenSource obtains access tokens with the client credentials grant and
// a private_key_jwt assertion, caches the current one until shortly before
// it expires, and lets concurrent callers share one fetch. Nothing it
// returns or formats holds the key, an assertion or a token, except the
// token returned by get.
type tokenSource struct {
	source  string // the source's name, for errors
	cfg     OAuth
	key     jwk.Key
	alg     jwa.SignatureAlgorithm
	client  *http.Client // the source's transport, no credentials, no redirects
	timeout time.Duration
	now     func() time.Time

	mu       sync.Mutex
	token    string
	refresh  time.Time // when the cached token stops being handed out
	inflight *tokenFetch
}

// tokenFetch is one request to the token endpoint; done is closed when
// token or err is set.
type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
}

// newTokenSource checks the configuration and loads the signing key; the
// key is read once, so rotating it means restarting.
func newTokenSource(source string, cfg OAuth, base http.RoundTripper, timeout time.Duration) (*tokenSource, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{{"tokenUrl", cfg.TokenURL}, {"clientId", cfg.ClientID},
		{"privateKeyFile", cfg.PrivateKeyFile}, {"scope", cfg.Scope}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("source %s: oauth: %s missing", source, strings.Join(missing, ", "))
	}
	if msg := checkTokenURL(cfg.TokenURL); msg != "" {
		return nil, fmt.Errorf("source %s: oauth: tokenUrl: %s", source, msg)
	}
	key, alg, err := loadSigningKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("source %s: oauth: %w", source, err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &tokenSource{
		source: source, cfg: cfg, key: key, alg: alg, timeout: timeout, now: time.Now,
		client: &http.Client{
			Transport: base,
			// A redirected POST would carry the assertion to another
			// endpoint than the one it is addressed to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// String hides the key and token.
func (ts *tokenSource) String() string { return "tokenSource{" + ts.source + ", redacted}" }

// loadSigningKey reads a private key from a JWK, the first usable private
// key of a JWK Set, or PEM, and picks its SMART algorithm: RS384 for RSA,
// ES384 for EC P-384. A key without a kid gets its RFC 7638 thumbprint,
// which is what a token server registering the public JWK computes too.
// Errors describe the file, never its content: parser messages may quote
// it, so they are dropped.
func loadSigningKey(file string) (jwk.Key, jwa.SignatureAlgorithm, error) {
	var none jwa.SignatureAlgorithm
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, none, fmt.Errorf("private key: %w", err) // names the file
	}
	trimmed := bytes.TrimSpace(data)
	var candidates []jwk.Key
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		set, err := jwk.Parse(trimmed)
		if err != nil {
			return nil, none, fmt.Errorf("private key %s: not a valid JWK or JWK Set", file)
		}
		for i := range set.Len() {
			k, _ := set.Key(i)
			candidates = append(candidates, k)
		}
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		k, err := jwk.ParseKey(trimmed, jwk.WithPEM(true))
		if err != nil {
			return nil, none, fmt.Errorf("private key %s: not a valid PEM private key", file)
		}
		candidates = append(candidates, k)
	default:
		return nil, none, fmt.Errorf("private key %s: want a JWK, a JWK Set or a PEM key", file)
	}
	var problems []string
	for _, k := range candidates {
		alg, problem := smartAlgorithm(k)
		if problem != "" {
			problems = append(problems, problem)
			continue
		}
		if kid, ok := k.KeyID(); !ok || kid == "" {
			if err := jwk.AssignKeyID(k); err != nil {
				return nil, none, fmt.Errorf("private key %s: key id: %w", file, err)
			}
		}
		return k, alg, nil
	}
	if len(problems) == 0 {
		problems = []string{"no key"}
	}
	return nil, none, fmt.Errorf("private key %s: no usable key: %s", file, strings.Join(problems, "; "))
}

// smartAlgorithm returns the signing algorithm for k, or why k is unusable.
func smartAlgorithm(k jwk.Key) (jwa.SignatureAlgorithm, string) {
	var none jwa.SignatureAlgorithm
	if private, err := jwk.IsPrivateKey(k); err != nil || !private {
		return none, "not a private key"
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return none, "key cannot be used"
	}
	var alg jwa.SignatureAlgorithm
	switch r := raw.(type) {
	case *rsa.PrivateKey:
		if r.N.BitLen() < 2048 {
			return none, fmt.Sprintf("RSA key of %d bits, want at least 2048", r.N.BitLen())
		}
		alg = jwa.RS384()
	case *ecdsa.PrivateKey:
		if r.Curve != elliptic.P384() {
			return none, fmt.Sprintf("EC key on curve %s, want P-384 (ES384)", r.Curve.Params().Name)
		}
		alg = jwa.ES384()
	default:
		return none, fmt.Sprintf("%s key, want RSA (RS384) or EC P-384 (ES384)", k.KeyType())
	}
	if a, ok := k.Algorithm(); ok && a.String() != "" && a.String() != alg.String() {
		return none, fmt.Sprintf("key's alg is %s, want %s", a, alg)
	}
	return alg, ""
}

// get returns a valid access token. stale, if not empty, is a token the
// source has just refused: get then returns a newer one, fetching it unless
// another caller already has.
func (ts *tokenSource) get(ctx context.Context, stale string) (string, error) {
	ts.mu.Lock()
	if ts.token != "" && ts.token != stale && ts.now().Before(ts.refresh) {
		tok := ts.token
		ts.mu.Unlock()
		return tok, nil
	}
	f := ts.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		ts.inflight = f
		// The fetch runs on its own: a caller giving up must not fail the
		// others waiting for the same token.
		go ts.fetch(f)
	}
	ts.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("source %s: oauth token: %w: %v", ts.source, ErrUnavailable, ctx.Err())
	}
}

func (ts *tokenSource) fetch(f *tokenFetch) {
	ctx, cancel := context.WithTimeout(context.Background(), ts.timeout)
	defer cancel()
	start := ts.now()
	tok, lifetime, err := ts.request(ctx)
	ts.mu.Lock()
	if err == nil {
		// Refresh a little early, so that a token is not sent in its last
		// seconds and refused on arrival.
		ts.token, ts.refresh = tok, start.Add(lifetime-min(time.Minute, lifetime/5))
	}
	ts.inflight = nil
	f.token, f.err = tok, err
	ts.mu.Unlock()
	close(f.done)
}

// assertion signs a client assertion: iss and sub are the client id, aud
// the token endpoint, and jti fresh so that the server can refuse replays.
func (ts *tokenSource) assertion() (string, error) {
	now := ts.now()
	tok, err := jwt.NewBuilder().
		Issuer(ts.cfg.ClientID).
		Subject(ts.cfg.ClientID).
		Audience([]string{ts.cfg.TokenURL}).
		IssuedAt(now).
		Expiration(now.Add(assertionLifetime)).
		JwtID(rand.Text()).
		Build()
	if err != nil {
		return "", fmt.Errorf("build assertion: %w", err)
	}
	// SMART shows aud as a string; some servers accept nothing else.
	tok.Options().Enable(jwt.FlattenAudience)
	signed, err := jwt.Sign(tok, jwt.WithKey(ts.alg, ts.key))
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return string(signed), nil
}

// tokenResponse is a successful token response (RFC 6749 section 5.1).
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
}

// tokenError is an error response (RFC 6749 section 5.2).
type tokenError struct {
	Error string `json:"error"`
}

// oauthErrorCode is the charset of an error code (RFC 6749 section 5.2);
// anything else is not echoed, since it is not a code.
var oauthErrorCode = regexp.MustCompile(`^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$`)

// request asks the token endpoint for a token. Errors wrap ErrRejected
// when the endpoint refuses the client (retrying will not help) and
// ErrUnavailable otherwise; they name the source, the HTTP status and the
// OAuth error code, never the assertion or a token.
func (ts *tokenSource) request(ctx context.Context) (string, time.Duration, error) {
	fail := func(kind error, format string, args ...any) (string, time.Duration, error) {
		return "", 0, fmt.Errorf("source %s: oauth token: %w: %s", ts.source, kind, fmt.Sprintf(format, args...))
	}
	assertion, err := ts.assertion()
	if err != nil {
		return fail(ErrRejected, "%v", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {ts.cfg.Scope},
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fail(ErrRejected, "%v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.client.Do(req)
	if err != nil {
		// A *url.Error holds the method, URL and cause, not the body.
		return fail(ErrUnavailable, "%v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return fail(ErrUnavailable, "reading the response: %v", err)
	}
	if len(body) > maxTokenResponse {
		return fail(ErrUnavailable, "response over %d bytes", maxTokenResponse)
	}
	if resp.StatusCode != http.StatusOK {
		code := "none given"
		var te tokenError
		if json.Unmarshal(body, &te) == nil && te.Error != "" {
			code = te.Error
			if !oauthErrorCode.MatchString(code) {
				code = "(not a valid OAuth error code)"
			}
		}
		kind := ErrRejected
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			kind = ErrUnavailable
		}
		return fail(kind, "token endpoint answered status %d, error %s", resp.StatusCode, code)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return fail(ErrUnavailable, "token endpoint answered with malformed JSON")
	}
	if tr.AccessToken == "" {
		return fail(ErrUnavailable, "token response has no access_token")
	}
	if !strings.EqualFold(tr.TokenType, "bearer") {
		return fail(ErrRejected, "token_type %q, want bearer", printable.Truncate(tr.TokenType, 32))
	}
	lifetime := defaultTokenLifetime
	if len(tr.ExpiresIn) > 0 && string(tr.ExpiresIn) != "null" {
		// Numbers per RFC 6749; some servers send strings.
		var secs json.Number
		if err := json.Unmarshal(bytes.Trim(tr.ExpiresIn, `"`), &secs); err != nil {
			return fail(ErrUnavailable, "expires_in is not a number")
		}
		n, err := secs.Int64()
		if err != nil || n <= 0 {
			return fail(ErrUnavailable, "expires_in is not a positive whole number")
		}
		lifetime = time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	return tr.AccessToken, lifetime, nil
}

// oauthTransport sends each request with the current access token and, if
// the source answers 401, once more with a new token: a token may be
// revoked or expire early. Only requests whose body can be sent again are
// retried.
type oauthTransport struct {
	next   http.RoundTripper
	tokens *tokenSource
}

// String hides the credentials.
func (t *oauthTransport) String() string { return "oauthTransport{redacted}" }

func (t *oauthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.tokens.get(r.Context(), "")
	if err != nil {
		closeBody(r)
		return nil, err
	}
	resp, err := t.next.RoundTrip(withBearer(r, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !replayable(r) {
		return resp, err
	}
	// Read a little of the refusal so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	fresh, err := t.tokens.get(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	retry := withBearer(r, fresh)
	if r.GetBody != nil {
		if retry.Body, err = r.GetBody(); err != nil {
			return nil, fmt.Errorf("source %s: replay request body: %w", t.tokens.source, err)
		}
	}
	return t.next.RoundTrip(retry)
}

func withBearer(r *http.Request, tok string) *http.Request {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// replayable reports whether r can be sent again: it has no body, or a
// way to get a fresh copy of it.
func replayable(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.GetBody != nil
}

// closeBody closes a request body the transport will not send, as
// http.RoundTripper requires.
func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// errOAuthCombined is returned when OAuth is configured with another way
// of sending credentials.
var errOAuthCombined = errors.New("oauth obtains its own bearer token; do not combine it with a bearer token or basic")
