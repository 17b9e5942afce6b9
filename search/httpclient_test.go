package search_test

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/priorflow/priorflow/internal/tlstest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dicomweb"
	"github.com/priorflow/priorflow/triggers"
)

// startTLS starts h over TLS with a certificate from ca, requiring a
// client certificate from ca when mutual is set.
func startTLS(t testing.TB, ca *tlstest.CA, h http.Handler, mutual bool) *httptest.Server {
	t.Helper()
	cert, _, _ := ca.Issue(t, "server", true)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mutual {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sourceConfig(name, url string, a search.Auth) *search.SourceConfig {
	return &search.SourceConfig{Name: name, Kind: search.KindDICOMweb, URL: url, Issuer: "HOSP-B",
		Timeout: 5 * time.Second, Concurrency: 2, Retries: 0, Auth: a}
}

func newClient(t testing.TB, c *search.SourceConfig) *http.Client {
	t.Helper()
	client, err := search.NewHTTPClient(c)
	if err != nil {
		t.Fatalf("NewHTTPClient: %v", err)
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// get fetches url the way the sources do.
func get(c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := search.Get(ctx, c, url, "application/dicom+json")
	return err
}

// requireAuthorization answers 200 only to requests with the given
// Authorization header.
func requireAuthorization(want string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Bearer realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "[]")
	})
}

func requireBasic(user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "[]")
	})
}

func TestNewHTTPClient_Bearer(t *testing.T) {
	const token = "bearer-7Hq2-from-a-secret-store"
	srv := httptest.NewServer(requireAuthorization("Bearer " + token))
	t.Cleanup(srv.Close)

	t.Run("from a file, trimmed", func(t *testing.T) {
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{BearerTokenFile: writeFile(t, "token", token+"\n")}))
		if err := get(c, srv.URL+"/studies"); err != nil {
			t.Errorf("Get: %v", err)
		}
	})
	t.Run("from an environment variable", func(t *testing.T) {
		t.Setenv("PF_TEST_BEARER", " "+token+"\n")
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{BearerTokenEnv: "PF_TEST_BEARER"}))
		if err := get(c, srv.URL+"/studies"); err != nil {
			t.Errorf("Get: %v", err)
		}
	})
	t.Run("wrong token is rejected by the server", func(t *testing.T) {
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{BearerTokenFile: writeFile(t, "token", "not-it")}))
		if err := get(c, srv.URL+"/studies"); !errors.Is(err, search.ErrRejected) {
			t.Errorf("Get = %v, want ErrRejected", err)
		}
	})
	t.Run("empty file or variable is a construction error naming it", func(t *testing.T) {
		empty := writeFile(t, "empty-token", " \n")
		if _, err := search.NewHTTPClient(sourceConfig("b", srv.URL, search.Auth{BearerTokenFile: empty})); err == nil || !strings.Contains(err.Error(), empty) {
			t.Errorf("NewHTTPClient with an empty token file = %v", err)
		}
		t.Setenv("PF_TEST_BEARER_UNSET", "")
		if _, err := search.NewHTTPClient(sourceConfig("b", srv.URL, search.Auth{BearerTokenEnv: "PF_TEST_BEARER_UNSET"})); err == nil || !strings.Contains(err.Error(), "PF_TEST_BEARER_UNSET") {
			t.Errorf("NewHTTPClient with an empty variable = %v", err)
		}
	})
}

func TestNewHTTPClient_Basic(t *testing.T) {
	const user, pass = "priorflow-a", "basic-pass-Zk41"
	srv := httptest.NewServer(requireBasic(user, pass))
	t.Cleanup(srv.Close)

	t.Run("password from a file", func(t *testing.T) {
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{Basic: &search.BasicAuth{Username: user, PasswordFile: writeFile(t, "pw", pass+"\n")}}))
		if err := get(c, srv.URL+"/studies"); err != nil {
			t.Errorf("Get: %v", err)
		}
	})
	t.Run("password from an environment variable", func(t *testing.T) {
		t.Setenv("PF_TEST_BASIC_PW", pass)
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{Basic: &search.BasicAuth{Username: user, PasswordEnv: "PF_TEST_BASIC_PW"}}))
		if err := get(c, srv.URL+"/studies"); err != nil {
			t.Errorf("Get: %v", err)
		}
	})
	t.Run("wrong password is rejected by the server", func(t *testing.T) {
		c := newClient(t, sourceConfig("b", srv.URL, search.Auth{Basic: &search.BasicAuth{Username: user, PasswordFile: writeFile(t, "pw", "wrong")}}))
		if err := get(c, srv.URL+"/studies"); !errors.Is(err, search.ErrRejected) {
			t.Errorf("Get = %v, want ErrRejected", err)
		}
	})
	t.Run("missing password file is a construction error", func(t *testing.T) {
		_, err := search.NewHTTPClient(sourceConfig("b", srv.URL, search.Auth{Basic: &search.BasicAuth{Username: user, PasswordFile: filepath.Join(t.TempDir(), "nope")}}))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("NewHTTPClient = %v, want ErrNotExist", err)
		}
	})
}

func TestNewHTTPClient_MTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	const token = "bearer-over-mtls"
	srv := startTLS(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "priorflow-a" {
			http.Error(w, "who are you", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/with-bearer" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "[]")
	}), true)
	_, certFile, keyFile := ca.Issue(t, "priorflow-a", false)
	_, otherCert, otherKey := other.Issue(t, "priorflow-a", false)

	for _, tc := range []struct {
		name string
		auth search.Auth
		path string
		ok   bool
	}{
		{"client certificate from the server's CA", search.Auth{MTLS: &search.MTLS{CertFile: certFile, KeyFile: keyFile, CAFile: ca.File}}, "/", true},
		{"no client certificate", search.Auth{MTLS: &search.MTLS{CAFile: ca.File}}, "/", false},
		{"client certificate from another CA", search.Auth{MTLS: &search.MTLS{CertFile: otherCert, KeyFile: otherKey, CAFile: ca.File}}, "/", false},
		{"server CA not trusted", search.Auth{MTLS: &search.MTLS{CertFile: certFile, KeyFile: keyFile}}, "/", false},
		{"mTLS with a bearer token", search.Auth{BearerTokenFile: writeFile(t, "tok", token),
			MTLS: &search.MTLS{CertFile: certFile, KeyFile: keyFile, CAFile: ca.File}}, "/with-bearer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, sourceConfig("b", srv.URL, tc.auth))
			err := get(c, srv.URL+tc.path)
			switch {
			case tc.ok && err != nil:
				t.Errorf("Get: %v", err)
			case !tc.ok && !errors.Is(err, search.ErrUnavailable):
				t.Errorf("Get = %v, want a TLS failure (ErrUnavailable)", err)
			}
		})
	}
	t.Run("unreadable CA file is a construction error", func(t *testing.T) {
		_, err := search.NewHTTPClient(sourceConfig("b", srv.URL, search.Auth{MTLS: &search.MTLS{CAFile: keyFile}}))
		if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("NewHTTPClient with a key as CA = %v", err)
		}
	})
}

// clock is a settable clock shared by a client and a test server.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// smartServer is a FHIR server with a SMART Backend Services token
// endpoint at /token: it checks client assertions as the specification
// says (signature by the client's registered key, kid, iss, sub, aud, exp
// at most five minutes ahead, a jti never seen before), issues bearer
// tokens, and guards everything under /fhir/ with them.
type smartServer struct {
	t        testing.TB
	srv      *httptest.Server
	tokenURL string
	clientID string
	scope    string
	keys     jwk.Set // the client's public keys, by kid
	lifetime int     // expires_in of the tokens issued
	now      func() time.Time

	mu            sync.Mutex
	tokenRequests int
	unauthorized  int // 401s answered under /fhir/
	jtis          map[string]bool
	tokens        map[string]time.Time // issued token → expiry
	assertions    []string             // every assertion received
	issued        []string             // every token issued
	bodies        []string             // request bodies received under /fhir/
	refuse        string               // if set, the OAuth error code every token request gets
	refuseStatus  int
	rejectAll     bool          // refuse even valid tokens
	hold          chan struct{} // if set, token requests wait until it is closed
	entered       chan struct{} // if set, closed by the first token request
}

const (
	testClientID = "priorflow-a"
	testScope    = "system/ImagingStudy.rs system/Patient.rs system/Endpoint.rs"
)

// newSmartServer registers pub (with its kid and alg) as the client's key
// and starts the server, over TLS from ca if ca is not nil.
func newSmartServer(t testing.TB, pub jwk.Key, ca *tlstest.CA, mutual bool) *smartServer {
	t.Helper()
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	s := &smartServer{t: t, clientID: testClientID, scope: testScope, keys: set, lifetime: 300, now: time.Now,
		jtis: map[string]bool{}, tokens: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("/fhir/", s.resource)
	if ca != nil {
		s.srv = startTLS(t, ca, mux, mutual)
	} else {
		s.srv = httptest.NewServer(mux)
		t.Cleanup(s.srv.Close)
	}
	s.tokenURL = s.srv.URL + "/token"
	return s
}

func (s *smartServer) oauth(keyFile string) *search.OAuth {
	return &search.OAuth{TokenURL: s.tokenURL, ClientID: s.clientID, PrivateKeyFile: keyFile, Scope: s.scope}
}

func (s *smartServer) counts() (tokenRequests, unauthorized int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests, s.unauthorized
}

func (s *smartServer) set(f func(s *smartServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func (s *smartServer) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenRequests++
	hold, refuse, status := s.hold, s.refuse, s.refuseStatus
	if s.entered != nil {
		close(s.entered)
		s.entered = nil
	}
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if err := r.ParseForm(); err != nil || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want a form")
		return
	}
	assertion := r.PostForm.Get("client_assertion")
	s.mu.Lock()
	s.assertions = append(s.assertions, assertion)
	s.mu.Unlock()
	if refuse != "" {
		// Echo the assertion, as a careless server might: the client must
		// not pass the description on.
		oauthError(w, cmp.Or(status, http.StatusBadRequest), refuse, "assertion "+assertion+" refused")
		return
	}
	if why := s.checkAssertion(r, assertion); why != "" {
		s.t.Errorf("token endpoint refused the client: %s", why)
		oauthError(w, http.StatusBadRequest, "invalid_client", why)
		return
	}
	tok := "at-" + rand.Text()
	s.mu.Lock()
	s.tokens[tok] = s.now().Add(time.Duration(s.lifetime) * time.Second)
	s.issued = append(s.issued, tok)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": s.lifetime, "scope": s.scope})
}

// checkAssertion returns why a token request is refused, or "".
func (s *smartServer) checkAssertion(r *http.Request, assertion string) string {
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		return "grant_type " + r.PostForm.Get("grant_type")
	case r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		return "client_assertion_type " + r.PostForm.Get("client_assertion_type")
	case r.PostForm.Get("scope") != s.scope:
		return "scope " + r.PostForm.Get("scope")
	}
	msg, err := jws.Parse([]byte(assertion))
	if err != nil {
		return "not a JWS: " + err.Error()
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if kid, ok := h.KeyID(); !ok || kid == "" {
		return "no kid"
	}
	if typ, _ := h.Type(); typ != "JWT" {
		return "typ " + typ
	}
	if alg, _ := h.Algorithm(); alg != jwa.RS384() && alg != jwa.ES384() {
		return "alg " + alg.String()
	}
	now := s.now()
	tok, err := jwt.Parse([]byte(assertion), jwt.WithKeySet(s.keys), jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithIssuer(s.clientID), jwt.WithSubject(s.clientID), jwt.WithAudience(s.tokenURL))
	if err != nil {
		return "signature or claims: " + err.Error()
	}
	exp, ok := tok.Expiration()
	if !ok || exp.Sub(now) > 5*time.Minute+time.Second {
		return fmt.Sprintf("exp %v is more than five minutes ahead of %v", exp, now)
	}
	jti, ok := tok.JwtID()
	s.mu.Lock()
	seen := s.jtis[jti]
	s.jtis[jti] = true
	s.mu.Unlock()
	if !ok || len(jti) < 16 || seen {
		return "jti missing, short or replayed: " + jti
	}
	// SMART shows aud as a plain string.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(assertion, ".")[1])
	if err != nil {
		return "payload: " + err.Error()
	}
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	if claims["aud"] != s.tokenURL {
		return fmt.Sprintf("aud %#v, want the string %q", claims["aud"], s.tokenURL)
	}
	return ""
}

func (s *smartServer) resource(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	exp, issued := s.tokens[tok]
	valid := ok && issued && s.now().Before(exp) && !s.rejectAll
	if !valid {
		s.unauthorized++
	} else {
		s.bodies = append(s.bodies, string(body))
	}
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	fmt.Fprint(w, "[]")
}

// revoke forgets every token issued so far.
func (s *smartServer) revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// clientKey is a signing key in the forms a deployment may store it.
type clientKey struct {
	private jwk.Key // with kid
	public  jwk.Key // with kid and alg, as the token server registers it
}

func newRSAKey(t testing.TB, kid string) (*rsa.PrivateKey, clientKey) {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return raw, importKey(t, raw, kid, jwa.RS384())
}

func newECKey(t testing.TB, curve elliptic.Curve, kid string) (*ecdsa.PrivateKey, clientKey) {
	t.Helper()
	raw, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return raw, importKey(t, raw, kid, jwa.ES384())
}

// importKey wraps raw as JWKs; an empty kid means the RFC 7638
// thumbprint, which the client assigns to keys that come without one.
func importKey(t testing.TB, raw crypto.Signer, kid string, alg jwa.SignatureAlgorithm) clientKey {
	t.Helper()
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	if kid == "" {
		if err := jwk.AssignKeyID(pub); err != nil {
			t.Fatal(err)
		}
	} else {
		_ = priv.Set(jwk.KeyIDKey, kid)
		_ = pub.Set(jwk.KeyIDKey, kid)
	}
	_ = pub.Set(jwk.AlgorithmKey, alg)
	return clientKey{private: priv, public: pub}
}

func jwkFile(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "key.jwk", string(b))
}

func pemFile(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

func TestNewHTTPClient_OAuth(t *testing.T) {
	t.Parallel()
	rsaRaw, rsaKey := newRSAKey(t, "priorflow-a-2026")
	rsaJWK := jwkFile(t, rsaKey.private)

	t.Run("assertion accepted, token cached across requests", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		for i := range 5 {
			if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
				t.Fatalf("Get %d: %v", i, err)
			}
		}
		if tokens, unauthorized := s.counts(); tokens != 1 || unauthorized != 0 {
			t.Errorf("%d token requests and %d 401s for 5 requests, want 1 and 0", tokens, unauthorized)
		}
	})

	t.Run("concurrent requests share one token fetch", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		hold, entered := make(chan struct{}), make(chan struct{})
		s.set(func(s *smartServer) { s.hold, s.entered = hold, entered })
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		const n = 16
		var started, done sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			started.Add(1)
			done.Go(func() {
				started.Done()
				errs <- get(c, s.srv.URL+"/fhir/ImagingStudy")
			})
		}
		<-entered
		started.Wait()
		// The pause only lets the other requests queue behind the first
		// fetch; the count below holds however they interleave.
		time.Sleep(20 * time.Millisecond)
		close(hold)
		done.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Get: %v", err)
			}
		}
		if tokens, _ := s.counts(); tokens != 1 {
			t.Errorf("%d token requests for %d concurrent requests, want 1", tokens, n)
		}
	})

	t.Run("token refreshed shortly before it expires, without a 401", func(t *testing.T) {
		t.Parallel()
		clk := &clock{now: time.Now()}
		s := newSmartServer(t, rsaKey.public, nil, false)
		s.now = clk.Now
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		search.SetOAuthClock(c, clk.Now)
		for _, step := range []struct {
			advance    time.Duration
			wantTokens int
		}{
			{0, 1},
			{200 * time.Second, 1}, // within the 300s lifetime
			{50 * time.Second, 2},  // 250s: inside the refresh margin, still valid
			{10 * time.Minute, 3},  // long expired
		} {
			clk.Advance(step.advance)
			if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
				t.Fatalf("Get after %v: %v", step.advance, err)
			}
			if tokens, unauthorized := s.counts(); tokens != step.wantTokens || unauthorized != 0 {
				t.Errorf("after %v: %d token requests, %d 401s; want %d and 0", step.advance, tokens, unauthorized, step.wantTokens)
			}
		}
	})

	t.Run("401 fetches a new token once and retries", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
			t.Fatal(err)
		}
		s.revoke()
		if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
			t.Fatalf("Get after revocation: %v", err)
		}
		if tokens, unauthorized := s.counts(); tokens != 2 || unauthorized != 1 {
			t.Errorf("after revocation: %d token requests, %d 401s; want 2 and 1", tokens, unauthorized)
		}
		// A source refusing every token: one new token, one retry, then
		// the refusal.
		s.set(func(s *smartServer) { s.rejectAll = true })
		if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); !errors.Is(err, search.ErrRejected) {
			t.Errorf("Get = %v, want ErrRejected", err)
		}
		if tokens, unauthorized := s.counts(); tokens != 3 || unauthorized != 3 {
			t.Errorf("refused: %d token requests, %d 401s; want 3 and 3", tokens, unauthorized)
		}
	})

	t.Run("only requests whose body can be replayed are retried", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		post := func(body io.Reader) int {
			t.Helper()
			req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/fhir/Bundle", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := post(strings.NewReader("first")); got != http.StatusOK {
			t.Fatalf("first POST: %d", got)
		}
		s.revoke()
		if got := post(io.NopCloser(strings.NewReader("one-shot"))); got != http.StatusUnauthorized {
			t.Errorf("POST with a one-shot body after revocation: %d, want 401 passed through", got)
		}
		if tokens, _ := s.counts(); tokens != 1 {
			t.Errorf("%d token requests, want 1: a one-shot body must not trigger a retry", tokens)
		}
		if got := post(strings.NewReader("replayable")); got != http.StatusOK {
			t.Errorf("POST with a replayable body after revocation: %d, want 200", got)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if got := s.bodies[len(s.bodies)-1]; got != "replayable" {
			t.Errorf("retried body = %q, want it sent again in full", got)
		}
	})

	t.Run("key formats", func(t *testing.T) {
		t.Parallel()
		set := jwk.NewSet()
		_ = set.AddKey(rsaKey.private)
		ecRaw, _ := newECKey(t, elliptic.P384(), "")
		pkcs8EC, _ := x509.MarshalPKCS8PrivateKey(ecRaw)
		sec1EC, _ := x509.MarshalECPrivateKey(ecRaw)
		ecNoKid := importKey(t, ecRaw, "", jwa.ES384())
		ecJWK, _ := jwk.Import(ecRaw) // no kid: the thumbprint is used
		rsaNoKid := importKey(t, rsaRaw, "", jwa.RS384())
		for _, tc := range []struct {
			name string
			file string
			pub  jwk.Key
		}{
			{"RSA JWK Set", jwkFile(t, set), rsaKey.public},
			{"EC P-384 PEM, PKCS #8", pemFile(t, "PRIVATE KEY", pkcs8EC), ecNoKid.public},
			{"EC P-384 PEM, SEC 1", pemFile(t, "EC PRIVATE KEY", sec1EC), ecNoKid.public},
			{"EC P-384 JWK without kid", jwkFile(t, ecJWK), ecNoKid.public},
			{"RSA PEM, PKCS #1", pemFile(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaRaw)), rsaNoKid.public},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newSmartServer(t, tc.pub, nil, false)
				c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(tc.file)}))
				if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
					t.Errorf("Get: %v", err)
				}
			})
		}
	})

	t.Run("token endpoint refusal names the source and the OAuth error", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		s.set(func(s *smartServer) { s.refuse = "invalid_client" })
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		err := get(c, s.srv.URL+"/fhir/ImagingStudy")
		if !errors.Is(err, search.ErrRejected) {
			t.Fatalf("Get = %v, want ErrRejected", err)
		}
		for _, want := range []string{"source hospital-b", "status 400", "error invalid_client"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if strings.Contains(err.Error(), s.assertions[0]) || strings.Contains(err.Error(), "refused") && strings.Contains(err.Error(), "assertion ") {
			t.Errorf("error repeats the assertion or the server's description: %v", err)
		}
	})

	t.Run("token endpoint unavailable", func(t *testing.T) {
		t.Parallel()
		s := newSmartServer(t, rsaKey.public, nil, false)
		s.set(func(s *smartServer) {
			s.refuse, s.refuseStatus = "temporarily_unavailable", http.StatusServiceUnavailable
		})
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK)}))
		if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); !errors.Is(err, search.ErrUnavailable) || errors.Is(err, search.ErrRejected) {
			t.Errorf("Get = %v, want ErrUnavailable", err)
		}
	})

	t.Run("OAuth over mutual TLS", func(t *testing.T) {
		t.Parallel()
		ca := tlstest.NewCA(t, "ca")
		s := newSmartServer(t, rsaKey.public, ca, true)
		_, certFile, keyFile := ca.Issue(t, "priorflow-a", false)
		c := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK),
			MTLS: &search.MTLS{CertFile: certFile, KeyFile: keyFile, CAFile: ca.File}}))
		if err := get(c, s.srv.URL+"/fhir/ImagingStudy"); err != nil {
			t.Errorf("Get with certificate: %v", err)
		}
		noCert := newClient(t, sourceConfig("hospital-b", s.srv.URL+"/fhir", search.Auth{OAuth: s.oauth(rsaJWK),
			MTLS: &search.MTLS{CAFile: ca.File}}))
		if err := get(noCert, s.srv.URL+"/fhir/ImagingStudy"); !errors.Is(err, search.ErrUnavailable) {
			t.Errorf("Get without certificate = %v, want a TLS failure at the token endpoint", err)
		}
		if tokens, _ := s.counts(); tokens != 1 {
			t.Errorf("%d token requests reached the server, want 1 (the one with a certificate)", tokens)
		}
	})
}

func TestNewHTTPClient_OAuth_Refused(t *testing.T) {
	t.Parallel()
	_, rsaKey := newRSAKey(t, "k1")
	good := jwkFile(t, rsaKey.private)
	p256, _ := newECKey(t, elliptic.P256(), "")
	p256DER, _ := x509.MarshalPKCS8PrivateKey(p256)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := jwk.PublicKeyOf(rsaKey.private)
	sym, _ := jwk.Import([]byte("a-shared-secret-of-32-bytes-long"))
	bigRS256 := importKey(t, mustRSA(t), "k2", jwa.RS384()).private
	_ = bigRS256.Set(jwk.AlgorithmKey, jwa.RS256())

	oauth := func(keyFile string) *search.OAuth {
		return &search.OAuth{TokenURL: "https://as.example/token", ClientID: "a", PrivateKeyFile: keyFile, Scope: "system/Patient.rs"}
	}
	for _, tc := range []struct {
		name string
		auth search.Auth
		want string
	}{
		{"EC P-256 key", search.Auth{OAuth: oauth(pemFile(t, "PRIVATE KEY", p256DER))}, "curve P-256, want P-384"},
		{"RSA key under 2048 bits", search.Auth{OAuth: oauth(pemFile(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)))}, "not a valid PEM private key"},
		{"public key only", search.Auth{OAuth: oauth(jwkFile(t, pub))}, "not a private key"},
		{"symmetric key", search.Auth{OAuth: oauth(jwkFile(t, sym))}, "not a private key"},
		{"key marked for another algorithm", search.Auth{OAuth: oauth(jwkFile(t, bigRS256))}, "alg is RS256, want RS384"},
		{"not a key", search.Auth{OAuth: oauth(writeFile(t, "k", `{"kty": "RSA", "n": 12}`))}, "not a valid JWK"},
		{"neither JSON nor PEM", search.Auth{OAuth: oauth(writeFile(t, "k", "hello"))}, "want a JWK, a JWK Set or a PEM key"},
		{"missing key file", search.Auth{OAuth: oauth(filepath.Join(t.TempDir(), "absent.jwk"))}, "no such file"},
		{"with a bearer token", search.Auth{OAuth: oauth(good), BearerTokenEnv: "X"}, "do not combine"},
		{"with basic", search.Auth{OAuth: oauth(good), Basic: &search.BasicAuth{Username: "u", PasswordEnv: "X"}}, "do not combine"},
		{"fields missing", search.Auth{OAuth: &search.OAuth{PrivateKeyFile: good}}, "tokenUrl, clientId, scope missing"},
		{"plain http to a remote token endpoint", search.Auth{OAuth: &search.OAuth{TokenURL: "http://as.example/token", ClientID: "a",
			PrivateKeyFile: good, Scope: "s"}}, "want https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := search.NewHTTPClient(sourceConfig("hospital-b", "https://b.example/fhir", tc.auth))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "source hospital-b") {
				t.Errorf("NewHTTPClient = %v, want an error about %q naming the source", err, tc.want)
			}
		})
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// lockedBuffer collects log output from concurrent goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// privateParts returns the private members of a JWK as they appear in its
// JSON, and the base64 body lines of its PEM form.
func privateParts(t testing.TB, k jwk.Key) []string {
	t.Helper()
	b, _ := json.Marshal(k)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	var out []string
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if v, ok := m[name].(string); ok && len(v) > 8 {
			out = append(out, v[:16]) // a prefix is enough to be a leak
		}
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(raw)
	for line := range strings.Lines(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))) {
		if !strings.HasPrefix(line, "-----") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// TestAuthFailures_DoNotLeakSecrets runs a search against sources whose
// credentials fail in every way, and checks that neither the log nor the
// errors nor the AuditEvents carry a password, token, assertion or key.
func TestAuthFailures_DoNotLeakSecrets(t *testing.T) {
	t.Parallel()
	const (
		user        = "priorflow-a"
		goodPass    = "right-pass-7d2m"
		wrongPass   = "wrong-pass-9f3k"
		serverToken = "expected-bearer-55x"
		ourToken    = "configured-bearer-q8z1"
	)
	_, key := newRSAKey(t, "priorflow-a-2026")
	keyFile := jwkFile(t, key.private)
	secrets := []string{goodPass, wrongPass, serverToken, ourToken,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + wrongPass))}
	secrets = append(secrets, privateParts(t, key.private)...)

	basicSrv := httptest.NewServer(requireBasic(user, goodPass))
	t.Cleanup(basicSrv.Close)
	bearerSrv := httptest.NewServer(requireAuthorization("Bearer " + serverToken))
	t.Cleanup(bearerSrv.Close)
	refusing := newSmartServer(t, key.public, nil, false)
	refusing.set(func(s *smartServer) { s.refuse = "invalid_client" })
	rejecting := newSmartServer(t, key.public, nil, false)
	rejecting.set(func(s *smartServer) { s.rejectAll = true })

	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var entries []search.Entry
	for _, c := range []*search.SourceConfig{
		sourceConfig("basic-wrong", basicSrv.URL+"/dicom-web", search.Auth{Basic: &search.BasicAuth{Username: user,
			PasswordFile: writeFile(t, "pw", wrongPass)}}),
		sourceConfig("bearer-wrong", bearerSrv.URL+"/dicom-web", search.Auth{BearerTokenFile: writeFile(t, "tok", ourToken)}),
		sourceConfig("oauth-refused", refusing.srv.URL+"/fhir", search.Auth{OAuth: refusing.oauth(keyFile)}),
		sourceConfig("oauth-token-refused", rejecting.srv.URL+"/fhir", search.Auth{OAuth: rejecting.oauth(keyFile)}),
	} {
		src, err := dicomweb.New(c.Info(), newClient(t, c))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, search.Entry{Source: src, Timeout: 5 * time.Second, Retries: 1, Concurrency: 1})
	}
	l := newLocal(t)
	s, err := search.NewSearcher(search.Config{Sources: entries, Store: l.store, Local: l.archive, Logger: logger,
		InitialBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Search(context.Background(), search.Job{ID: "job-auth", Rule: "priors", PatientRef: janeLocal(t, l),
		Patient: []triggers.Identifier{{Authority: "HOSP-B", Value: "B100"}}})
	if err != nil {
		t.Fatal(err)
	}

	// Keys that cannot be used: the errors cmd/prefetcher would log.
	p256, _ := newECKey(t, elliptic.P256(), "")
	p256Key, _ := jwk.Import(p256)
	p256DER, _ := x509.MarshalPKCS8PrivateKey(p256)
	secrets = append(secrets, privateParts(t, p256Key)...)
	validPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p256DER}))
	var m map[string]any
	b, _ := json.Marshal(p256Key)
	_ = json.Unmarshal(b, &m)
	m["crv"] = "P-999"
	broken, _ := json.Marshal(m)
	var errs []string
	for _, file := range []string{
		t.TempDir(), // a directory: unreadable
		writeFile(t, "p256.pem", validPEM),
		writeFile(t, "truncated.pem", validPEM[:len(validPEM)/2]),
		writeFile(t, "broken.jwk", string(broken)),
	} {
		_, err := search.NewHTTPClient(sourceConfig("bad-key", "https://b.example/fhir", search.Auth{OAuth: &search.OAuth{
			TokenURL: "https://b.example/token", ClientID: "a", PrivateKeyFile: file, Scope: "system/Patient.rs"}}))
		if err == nil {
			t.Errorf("NewHTTPClient with key file %s succeeded", file)
			continue
		}
		logger.Error("source configuration refused", "err", err)
		errs = append(errs, err.Error())
	}

	for _, name := range []string{"basic-wrong", "bearer-wrong", "oauth-refused", "oauth-token-refused"} {
		o := outcome(res, name)
		if o.Status != search.StatusFailed || o.Err == nil {
			t.Errorf("%s: %+v, want failed", name, o)
			continue
		}
		errs = append(errs, o.Err.Error())
	}
	for _, s := range []*smartServer{refusing, rejecting} {
		s.mu.Lock()
		for _, a := range s.assertions {
			secrets = append(secrets, a, a[strings.LastIndexByte(a, '.')+1:])
		}
		secrets = append(secrets, s.issued...)
		s.mu.Unlock()
	}
	if tokens, unauthorized := rejecting.counts(); tokens != 2 || unauthorized != 2 {
		t.Errorf("oauth-token-refused: %d tokens, %d 401s; want 2 and 2 (one retry with a new token, not retried again)", tokens, unauthorized)
	}
	var audits strings.Builder
	for _, a := range l.resources(t, "AuditEvent") {
		b, _ := json.Marshal(a)
		audits.Write(b)
	}
	logText := logs.String()
	if got := strings.Count(logText, "source search failed"); got != 4 {
		t.Errorf("%d source failures logged, want 4:\n%s", got, logText)
	}
	for _, secret := range secrets {
		for what, text := range map[string]string{"log": logText, "errors": strings.Join(errs, "\n"), "AuditEvents": audits.String()} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain the secret %.12s…:\n%s", what, secret, text)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("errors checked:\n%s", strings.Join(errs, "\n"))
}

// TestNewHTTPClient_CredentialsStayWithTheSource: a source's data may name
// other hosts (an Endpoint address, a redirect); they never see its
// credentials.
func TestNewHTTPClient_CredentialsStayWithTheSource(t *testing.T) {
	const token = "bearer-for-the-source-only"
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		fmt.Fprint(w, "[]")
	}))
	t.Cleanup(other.Close)
	mux := http.NewServeMux()
	mux.Handle("/studies", requireAuthorization("Bearer "+token))
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/studies", http.StatusFound)
	})
	src := httptest.NewServer(mux)
	t.Cleanup(src.Close)

	for name, a := range map[string]search.Auth{
		"bearer": {BearerTokenFile: writeFile(t, "token", token)},
		"basic":  {Basic: &search.BasicAuth{Username: "u", PasswordFile: writeFile(t, "pw", "secret-pw")}},
	} {
		c := newClient(t, sourceConfig("b", src.URL+"/", a))
		if name == "bearer" {
			if err := get(c, src.URL+"/studies"); err != nil {
				t.Fatalf("%s: the source itself: %v", name, err)
			}
		}
		if err := get(c, other.URL+"/studies"); err != nil {
			t.Fatalf("%s: another host: %v", name, err)
		}
		if err := get(c, src.URL+"/elsewhere"); err != nil {
			t.Fatalf("%s: redirect to another host: %v", name, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("%d requests to another host carried the source's credentials", n)
	}
}
