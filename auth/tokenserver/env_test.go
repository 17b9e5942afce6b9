package tokenserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/priorflow/priorflow/auth/jwtauth"
	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
	"github.com/priorflow/priorflow/auth/tokenserver"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const audience = "https://priorflow.test/fhir"

// env is a token server on a fresh database, served over HTTP, with
// three registered clients:
//
//   - ris-backend: an ES384 key in the file, system/ImagingStudy.rs and
//     system/Appointment.cu, purpose of use TREAT
//   - rsa-client: an RS384 key in the file, system/ImagingStudy.rs
//   - url-client: keys at a JWKS URL (urlKeys), system/*.rs
type env struct {
	srv      *tokenserver.Server
	http     *httptest.Server
	tokenURL string
	verifier *jwtauth.Verifier

	risKey, rsaKey, urlKey jwk.Key
	urlKeys                *jwtauthtest.JWKSServer
}

// clientKeys are made once per process: RSA key generation is slow, and
// the keys are only read.
var (
	clientKeysMu sync.Mutex
	clientKeySet [3]jwk.Key
)

func clientKeys(t testing.TB) [3]jwk.Key {
	t.Helper()
	clientKeysMu.Lock()
	defer clientKeysMu.Unlock()
	if clientKeySet[0] == nil {
		clientKeySet = [3]jwk.Key{
			jwtauthtest.NewKey(t, jwa.ES384()),
			jwtauthtest.NewKey(t, jwa.RS384()),
			jwtauthtest.NewKey(t, jwa.ES256()),
		}
	}
	return clientKeySet
}

func publicJSON(t testing.TB, keys ...jwk.Key) string {
	t.Helper()
	b, err := json.Marshal(jwtauthtest.PublicSet(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	keys := clientKeys(t)
	e := &env{risKey: keys[0], rsaKey: keys[1], urlKey: keys[2]}
	e.urlKeys = jwtauthtest.NewJWKSServer(t, jwtauthtest.SetHandler(t, jwtauthtest.PublicSet(t, e.urlKey)))

	mux := http.NewServeMux()
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.http.Close)
	e.tokenURL = e.http.URL + "/auth/token"

	dir := t.TempDir()
	clientsFile := filepath.Join(dir, "clients.yaml")
	// JSON is YAML: the key sets go in as they are.
	yaml := `clients:
  - id: ris-backend
    name: Hospital RIS
    jwks: ` + publicJSON(t, e.risKey) + `
    scope: system/ImagingStudy.rs system/Appointment.cu
    purposeOfUse: [TREAT]
  - id: rsa-client
    jwks: ` + publicJSON(t, e.rsaKey) + `
    scope: system/ImagingStudy.rs
  - id: url-client
    jwksUrl: ` + e.urlKeys.URL + `
    scope: system/*.rs
`
	if err := os.WriteFile(clientsFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := tokenserver.LoadClients(clientsFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tokenserver.LoadOrCreateKey(filepath.Join(dir, "keys", "signing.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	replay, err := tokenserver.NewReplayStore(dbtest.NewPool(t), dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = tokenserver.New(tokenserver.Config{
		Issuer:   e.http.URL,
		TokenURL: e.tokenURL,
		Audience: audience,
		Key:      key,
		Clients:  clients,
	}, replay, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/auth/token", e.srv.TokenHandler())
	mux.Handle("/auth/jwks", e.srv.JWKSHandler())
	mux.Handle("/.well-known/smart-configuration", e.srv.SMARTConfiguration(e.http.URL+"/auth/jwks"))

	e.verifier, err = jwtauth.NewVerifier(context.Background(), jwtauth.Config{
		Issuer:   e.http.URL,
		Audience: audience,
		JWKSURL:  e.http.URL + "/auth/jwks",
	}, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.verifier.Close() })
	return e
}

// response is a token endpoint answer.
type response struct {
	status  int
	header  http.Header
	body    string
	fields  map[string]any
	request string // the form sent
}

func (r *response) str(name string) string {
	s, _ := r.fields[name].(string)
	return s
}

// post sends form to the token endpoint.
func (e *env) post(t testing.TB, form url.Values) *response {
	t.Helper()
	return e.do(t, http.MethodPost, "application/x-www-form-urlencoded", form.Encode(), nil)
}

func (e *env) do(t testing.TB, method, contentType, body string, header http.Header) *response {
	t.Helper()
	req, err := http.NewRequest(method, e.tokenURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := &response{status: res.StatusCode, header: res.Header, body: string(b), request: body}
	if err := json.Unmarshal(b, &r.fields); err != nil {
		r.fields = nil
	}
	return r
}

// tokenRequest is a well-formed request with assertion.
func tokenRequest(assertion, scope string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {scope},
		"client_assertion_type": {tokenserver.AssertionType},
		"client_assertion":      {assertion},
	}
}

// assertionClaims are the claims of a good assertion of client.
func (e *env) assertionClaims(client, jti string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": client,
		"sub": client,
		"aud": e.tokenURL,
		"exp": now + 240,
		"iat": now,
		"jti": jti,
	}
}

// wantError checks an RFC 6749 §5.2 error response, and that it does
// not echo the assertion.
func wantError(t *testing.T, r *response, status int, code, description string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("status %d error %q (%s), want %d %q", r.status, r.str("error"), r.str("error_description"), status, code)
	}
	if !strings.Contains(r.str("error_description"), description) {
		t.Errorf("error_description=%q, want it to contain %q", r.str("error_description"), description)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control=%q, want no-store", got)
	}
	if _, ok := r.fields["access_token"]; ok {
		t.Error("an error response carries an access token")
	}
	form, _ := url.ParseQuery(r.request)
	if a := form.Get("client_assertion"); a != "" {
		for _, part := range append(strings.Split(a, "."), a) {
			if len(part) >= 16 && strings.Contains(r.body, part) {
				t.Errorf("the error body %q contains the assertion", r.body)
			}
		}
	}
}
