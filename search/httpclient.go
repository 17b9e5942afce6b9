package search

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/tlsfiles"
)

// NewHTTPClient returns the HTTP client for a source: no transparent
// compression (DICOMweb servers differ in how they compress JSON, and a
// truncated gzip stream hides where an answer broke), the configured mTLS,
// and bearer or basic credentials read from their files or environment
// variables, or OAuth access tokens obtained with the SMART Backend
// Services client credentials grant (see OAuth). Errors name the file or
// variable, never its content.
func NewHTTPClient(c *SourceConfig) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: max(c.Concurrency, 2),
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		// The header wait is the retrieval's: a source may build a whole
		// study's multipart answer before its headers. Queries are bounded
		// more tightly by the search's own deadline (Timeout, Searcher.call).
		ResponseHeaderTimeout: max(c.RetrieveTimeout, c.Timeout),
	}
	tlsCfg, err := TLSConfig(c)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tlsCfg
	var rt http.RoundTripper = tr
	a := c.Auth
	bearer := a.BearerTokenFile != "" || a.BearerTokenEnv != ""
	switch {
	case a.OAuth != nil && (bearer || a.Basic != nil):
		return nil, fmt.Errorf("source %s: %w", c.Name, errOAuthCombined)
	case a.OAuth != nil:
		// The token endpoint is reached through the same transport, so an
		// mTLS client certificate is presented there too (SMART allows a
		// server to require it).
		ts, err := newTokenSource(c.Name, *a.OAuth, tr, c.Timeout)
		if err != nil {
			return nil, err
		}
		rt = &oauthTransport{next: tr, tokens: ts}
	case bearer:
		tok, err := secret(a.BearerTokenFile, a.BearerTokenEnv)
		if err != nil {
			return nil, fmt.Errorf("source %s: bearer token: %w", c.Name, err)
		}
		rt = &authTransport{next: tr, header: "Bearer " + tok}
	case a.Basic != nil:
		pw, err := secret(a.Basic.PasswordFile, a.Basic.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("source %s: basic password: %w", c.Name, err)
		}
		rt = &authTransport{next: tr, user: a.Basic.Username, pass: pw}
	}
	if rt != http.RoundTripper(tr) {
		// Credentials go only to the source's own origin. Remote data names
		// other hosts (an Endpoint's address, a paging link, a redirect);
		// those are reached without credentials, so a source cannot lead
		// Priorflow into handing its token or password to a third party.
		o, err := originOf(c.URL)
		if err != nil {
			return nil, fmt.Errorf("source %s: url: %w", c.Name, err)
		}
		rt = &sameOrigin{origin: o, with: rt, without: tr}
	}
	return &http.Client{Transport: rt}, nil
}

// sameOrigin sends requests to origin through with (which adds
// credentials) and all others through without.
type sameOrigin struct {
	origin        string
	with, without http.RoundTripper
}

func (t *sameOrigin) RoundTrip(r *http.Request) (*http.Response, error) {
	if o, err := originOf(r.URL.String()); err == nil && o == t.origin {
		return t.with.RoundTrip(r)
	}
	return t.without.RoundTrip(r)
}

// String hides the credentials.
func (t *sameOrigin) String() string { return "sameOrigin{" + t.origin + "}" }

// originOf is scheme://host:port (RFC 6454) with the default port made
// explicit, so http://h and http://h:80 are one origin.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// secret reads a secret from a file or an environment variable, trimmed.
func secret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is configuration, not a secret; os errors carry it.
			return "", err
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s is empty", file)
		}
		return s, nil
	}
	s := strings.TrimSpace(os.Getenv(env))
	if s == "" {
		return "", fmt.Errorf("environment variable %s is empty", env)
	}
	return s, nil
}

// authTransport adds credentials to every request. It does not implement
// String or fmt verbs beyond the default, and its fields are unexported so
// that %v of a client never prints them through a config dump.
type authTransport struct {
	next       http.RoundTripper
	header     string
	user, pass string
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if t.header != "" {
		r.Header.Set("Authorization", t.header)
	} else {
		r.SetBasicAuth(t.user, t.pass)
	}
	return t.next.RoundTrip(r)
}

// String hides the credentials.
func (t *authTransport) String() string { return "authTransport{redacted}" }

// MaxResponse bounds one response body a source may send.
const MaxResponse = 64 << 20

// TLSConfig returns the TLS client configuration of a source's auth.mTLS
// (its client certificate, and the CA that signs the server's), or nil
// when it has none: the system's roots then verify the server.
func TLSConfig(c *SourceConfig) (*tls.Config, error) {
	m := c.Auth.MTLS
	if m == nil {
		return nil, nil
	}
	cfg, err := tlsfiles.Client(m.CertFile, m.KeyFile, m.CAFile)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", c.Name, err)
	}
	return cfg, nil
}

// Get fetches url with the given Accept header and returns the body of a
// 200 answer (nil for 204). Errors wrap ErrUnavailable (network errors,
// timeouts, 408, 429, 5xx), ErrRejected (other 4xx) or ErrBadResponse (a
// body cut short); the URL in errors has no query string, which may carry
// patient identifiers.
func Get(ctx context.Context, c *http.Client, url, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Accept", accept)
	where := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
	resp, err := c.Do(req)
	switch {
	case err != nil && errors.Is(err, ErrRejected):
		// Refused before the request left: an OAuth token endpoint turned
		// the client away. Retrying would not help.
		return nil, fmt.Errorf("GET %s: %w", where, stripURL(err))
	case err != nil:
		return nil, fmt.Errorf("GET %s: %w: %v", where, ErrUnavailable, stripURL(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil, nil
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("GET %s: %w: status %d", where, ErrUnavailable, resp.StatusCode)
	default:
		return nil, fmt.Errorf("GET %s: %w: status %d", where, ErrRejected, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: %w: %v", where, ErrUnavailable, ctx.Err())
		}
		return nil, fmt.Errorf("GET %s: %w: body: %v", where, ErrBadResponse, stripURL(err))
	}
	if len(body) > MaxResponse {
		return nil, fmt.Errorf("GET %s: %w: body over %d bytes", where, ErrBadResponse, MaxResponse)
	}
	return body, nil
}

// stripURL drops the URL (and its query) from a *url.Error.
func stripURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && strings.HasPrefix(err.Error(), "Get ") {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
