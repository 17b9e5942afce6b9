package jwtauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/auth/jwtauth"
	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
	"github.com/priorflow/priorflow/auth/tokenserver"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func staticVerifier(tb testing.TB, keys jwk.Set) *jwtauth.Verifier {
	tb.Helper()
	v, err := jwtauth.NewVerifier(context.Background(), jwtauth.Config{
		Issuer:   jwtauthtest.IssuerURL,
		Audience: jwtauthtest.Audience,
		Keys:     keys,
	}, dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

func TestVerify_Valid(t *testing.T) {
	t.Parallel()
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256(), jwa.PS384(), jwa.ES256(), jwa.ES384(), jwa.ES512()} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			key := jwtauthtest.NewKey(t, alg)
			v := staticVerifier(t, jwtauthtest.PublicSet(t, key))
			claims := jwtauthtest.Claims("openid system/ImagingStudy.rs system/Appointment.cu")
			claims["patient"] = "p1"
			claims["fhirUser"] = "Practitioner/7"
			claims["purpose_of_use"] = []string{"TREAT", "ETREAT"}
			p, err := v.Verify(context.Background(), jwtauthtest.Sign(t, key, claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got, want := p.Scopes.String(), "system/ImagingStudy.rs system/Appointment.cu"; got != want {
				t.Errorf("Scopes=%q, want %q", got, want)
			}
			for _, c := range []struct{ name, got, want string }{
				{"Issuer", p.Issuer, jwtauthtest.IssuerURL},
				{"Subject", p.Subject, "test-client"},
				{"ClientID", p.ClientID, "test-client"},
				{"Patient", p.Patient, "p1"},
				{"FHIRUser", p.FHIRUser, "Practitioner/7"},
				{"TokenID", p.TokenID, "test-token"},
				{"PurposeOfUse", strings.Join(p.PurposeOfUse, ","), "TREAT,ETREAT"},
			} {
				if c.got != c.want {
					t.Errorf("%s=%q, want %q", c.name, c.got, c.want)
				}
			}
			if got, want := p.Expiry.Unix(), claims["exp"].(int64); got != want {
				t.Errorf("Expiry=%d, want %d", got, want)
			}
			if _, err := p.Allow("ImagingStudy", auth.PermSearch); err != nil {
				t.Errorf("the principal may not search ImagingStudy: %v", err)
			}
		})
	}
}

func TestVerify_ClaimVariants(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES256())
	v := staticVerifier(t, jwtauthtest.PublicSet(t, key))
	now := time.Now().Unix()
	for _, tc := range []struct {
		name   string
		change func(map[string]any)
		check  func(*testing.T, *auth.Principal)
	}{
		{"azp stands in for client_id", func(c map[string]any) { delete(c, "client_id"); c["azp"] = "app" },
			func(t *testing.T, p *auth.Principal) {
				if p.ClientID != "app" {
					t.Errorf("ClientID=%q, want app", p.ClientID)
				}
			}},
		{"purpose_of_use as one code", func(c map[string]any) { c["purpose_of_use"] = "TREAT" },
			func(t *testing.T, p *auth.Principal) {
				if len(p.PurposeOfUse) != 1 || p.PurposeOfUse[0] != "TREAT" {
					t.Errorf("PurposeOfUse=%v, want [TREAT]", p.PurposeOfUse)
				}
			}},
		{"aud as an array holding ours", func(c map[string]any) { c["aud"] = []string{"https://other.test", jwtauthtest.Audience} }, nil},
		{"nbf in the future within the skew", func(c map[string]any) { c["nbf"] = now + 30 }, nil},
		{"expired within the skew", func(c map[string]any) { c["exp"] = now - 30 }, nil},
		{"iat a little ahead", func(c map[string]any) { c["iat"] = now + 30 }, nil},
		{"fractional exp", func(c map[string]any) { c["exp"] = float64(now) + 300.5 }, nil},
		{"empty scope", func(c map[string]any) { c["scope"] = "" },
			func(t *testing.T, p *auth.Principal) {
				if len(p.Scopes) != 0 {
					t.Errorf("Scopes=%v, want none", p.Scopes)
				}
			}},
		{"subject without client", func(c map[string]any) { delete(c, "client_id") },
			func(t *testing.T, p *auth.Principal) {
				if p.Who() != "test-client" {
					t.Errorf("Who()=%q, want test-client", p.Who())
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jwtauthtest.Claims("system/ImagingStudy.rs")
			tc.change(c)
			p, err := v.Verify(context.Background(), jwtauthtest.Sign(t, key, c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// b64 is base64url without padding, as JWS uses.
func b64(v any) string {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerify_Refused(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES256())
	other := jwtauthtest.NewKey(t, jwa.ES256())
	es384 := jwtauthtest.NewKey(t, jwa.ES384())
	v := staticVerifier(t, jwtauthtest.PublicSet(t, key))
	kid, _ := key.KeyID()
	now := time.Now().Unix()

	signed := func(change func(map[string]any)) func(*testing.T) string {
		return func(t *testing.T) string {
			c := jwtauthtest.Claims("system/ImagingStudy.rs")
			change(c)
			return jwtauthtest.Sign(t, key, c)
		}
	}
	withKid := func(t *testing.T, k jwk.Key, kid string) jwk.Key {
		c, err := k.Clone()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
		return c
	}
	hmac := func(t *testing.T, secret []byte) string {
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.KeyIDKey, kid)
		payload, _ := json.Marshal(jwtauthtest.Claims("system/ImagingStudy.rs"))
		s, err := jws.Sign(payload, jws.WithKey(jwa.HS256(), secret, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}

	for _, tc := range []struct {
		name  string
		token func(*testing.T) string
		want  string // in the description
	}{
		{"expired", signed(func(c map[string]any) { c["exp"] = now - 120 }), "the token expired at "},
		{"nbf in the future beyond the skew", signed(func(c map[string]any) { c["nbf"] = now + 120 }), "the token is not valid before "},
		{"iat in the future beyond the skew", signed(func(c map[string]any) { c["iat"] = now + 120 }), "issued in the future"},
		{"no exp", signed(func(c map[string]any) { delete(c, "exp") }), "no expiry (exp)"},
		{"wrong audience", signed(func(c map[string]any) { c["aud"] = "https://other.test/fhir" }), "the token's audience does not include " + jwtauthtest.Audience},
		{"no audience", signed(func(c map[string]any) { delete(c, "aud") }), "the token's audience does not include"},
		{"audience array without ours", signed(func(c map[string]any) { c["aud"] = []string{"https://a.test", "https://b.test"} }), "audience does not include"},
		{"wrong issuer", signed(func(c map[string]any) { c["iss"] = "https://evil.test" }), "the token's issuer is not " + jwtauthtest.IssuerURL},
		{"issuer differs in case", signed(func(c map[string]any) { c["iss"] = strings.ToUpper(jwtauthtest.IssuerURL) }), "issuer is not"},
		{"no scope", signed(func(c map[string]any) { delete(c, "scope") }), "no scope claim"},
		{"scope as an array", signed(func(c map[string]any) { c["scope"] = []string{"system/ImagingStudy.rs"} }), "scope claim is not a space-separated string"},
		{"malformed scope", signed(func(c map[string]any) { c["scope"] = "system/ImagingStudy.sr" }), "the token's scope is malformed"},
		{"unknown scope context", signed(func(c map[string]any) { c["scope"] = "admin/*.*" }), "the token's scope is malformed"},
		{"neither sub nor client", signed(func(c map[string]any) { delete(c, "sub"); delete(c, "client_id") }), "neither a subject"},
		{"iss not a string", signed(func(c map[string]any) { c["iss"] = 42 }), "iss claim is not a string"},
		{"exp as a string", signed(func(c map[string]any) { c["exp"] = "4102444800" }), "exp claim is not a NumericDate"},
		{"negative exp", signed(func(c map[string]any) { c["exp"] = -1 }), "exp claim is not a NumericDate"},
		{"purpose_of_use not codes", signed(func(c map[string]any) { c["purpose_of_use"] = map[string]any{"code": "TREAT"} }), "purpose_of_use claim is not"},
		{"signed by another key", func(t *testing.T) string {
			return jwtauthtest.Sign(t, withKid(t, other, kid), jwtauthtest.Claims("system/ImagingStudy.rs"))
		}, "the signature does not verify"},
		{"unknown kid", func(t *testing.T) string {
			return jwtauthtest.Sign(t, other, jwtauthtest.Claims("system/ImagingStudy.rs"))
		}, "is not among the issuer's keys"},
		{"algorithm does not fit the key", func(t *testing.T) string {
			return jwtauthtest.Sign(t, withKid(t, es384, kid), jwtauthtest.Claims("system/ImagingStudy.rs"))
		}, "none of the issuer's keys can verify a ES384 signature"},
		{"tampered payload", func(t *testing.T) string {
			good := jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))
			parts := strings.Split(good, ".")
			c := jwtauthtest.Claims("system/*.cruds")
			parts[1] = b64(c)
			return strings.Join(parts, ".")
		}, "the signature does not verify"},
		{"signature stripped", func(t *testing.T) string {
			good := jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))
			return good[:strings.LastIndex(good, ".")+1]
		}, "not a well-formed signed JWT"},
		{"alg none", func(*testing.T) string {
			return b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(jwtauthtest.Claims("system/*.cruds")) + "."
		}, "unsigned (alg none)"},
		{"alg none with a signature", func(*testing.T) string {
			return b64(map[string]string{"alg": "none", "kid": kid}) + "." + b64(jwtauthtest.Claims("system/*.cruds")) + "." + b64("x")
		}, "unsigned (alg none)"},
		{"HS256", func(t *testing.T) string { return hmac(t, []byte("a shared secret of thirty-two bytes!")) }, "symmetric algorithm HS256"},
		{"HS256 keyed with the public key", func(t *testing.T) string {
			pub, _ := key.PublicKey()
			b, _ := json.Marshal(pub)
			return hmac(t, b)
		}, "symmetric algorithm HS256"},
		{"unknown algorithm", func(*testing.T) string {
			return b64(map[string]string{"alg": "XY999"}) + "." + b64(jwtauthtest.Claims("system/*.cruds")) + "." + b64("sig")
		}, "not a well-formed signed JWT"},
		{"no algorithm", func(*testing.T) string {
			return b64(map[string]string{"kid": kid}) + "." + b64(jwtauthtest.Claims("system/*.cruds")) + "." + b64("sig")
		}, "names no algorithm"},
		{"critical header", func(t *testing.T) string {
			good := jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))
			parts := strings.Split(good, ".")
			parts[0] = b64(map[string]any{"alg": "ES256", "kid": kid, "crit": []string{"exp"}, "exp": 1})
			return strings.Join(parts, ".")
		}, "critical header parameters"},
		{"claims not JSON", func(t *testing.T) string {
			s, err := jws.Sign([]byte("not json"), jws.WithKey(jwa.ES256(), key))
			if err != nil {
				t.Fatal(err)
			}
			return string(s)
		}, "not a JSON object"},
		{"empty", func(*testing.T) string { return "" }, "the token is empty"},
		{"not a JWT", func(*testing.T) string { return "an-opaque-access-token" }, "not a JWT in compact serialization"},
		{"JWE", func(*testing.T) string { return "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d" }, "encrypted (JWE)"},
		{"three garbage parts", func(*testing.T) string { return "eyJ!!.abc.def" }, "not a well-formed signed JWT"},
		{"too long", func(*testing.T) string { return strings.Repeat("a", 20000) + ".b.c" }, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t)
			p, err := v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			var e *jwtauth.Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify error %T %v, want *jwtauth.Error", err, err)
			}
			if e.Status != http.StatusUnauthorized || e.Code != jwtauth.CodeInvalidToken {
				t.Errorf("Status, Code = %d %q, want 401 invalid_token", e.Status, e.Code)
			}
			if !strings.Contains(e.Description, tc.want) {
				t.Errorf("Description=%q, want it to contain %q", e.Description, tc.want)
			}
			assertNoToken(t, tok, e.Description, e.WWWAuthenticate(), e.Error())
		})
	}
}

// assertNoToken fails when any of texts contains the token or one of its
// signed parts.
func assertNoToken(t *testing.T, tok string, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if tok != "" && strings.Contains(text, tok) {
			t.Errorf("%q contains the token", text)
		}
		for _, part := range strings.Split(tok, ".") {
			if len(part) >= 16 && strings.Contains(text, part) {
				t.Errorf("%q contains part of the token", text)
			}
		}
	}
}

func TestError_WWWAuthenticate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    *jwtauth.Error
		want string
	}{
		{&jwtauth.Error{Status: 401, Description: "no token"}, `Bearer realm="priorflow"`},
		{&jwtauth.Error{Status: 401, Code: "invalid_token", Description: `the token expired at 2026-01-02T03:04:05Z`},
			`Bearer realm="priorflow", error="invalid_token", error_description="the token expired at 2026-01-02T03:04:05Z"`},
		{&jwtauth.Error{Status: 401, Code: "invalid_token", Description: "kid \"a\\b\"\nc\u00e9"},
			`Bearer realm="priorflow", error="invalid_token", error_description="kid 'a/b'c"`},
		{jwtauth.InsufficientScope("the token's scopes do not grant read on Patient"),
			`Bearer realm="priorflow", error="insufficient_scope", error_description="the token's scopes do not grant read on Patient"`},
	} {
		if got := tc.e.WWWAuthenticate(); got != tc.want {
			t.Errorf("WWWAuthenticate()=%s, want %s", got, tc.want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES384())
	v := staticVerifier(t, jwtauthtest.PublicSet(t, key))
	good := jwtauthtest.Sign(t, key, jwtauthtest.Claims("system/ImagingStudy.rs"))
	expiredClaims := jwtauthtest.Claims("system/ImagingStudy.rs")
	expiredClaims["exp"] = time.Now().Add(-time.Hour).Unix()
	expired := jwtauthtest.Sign(t, key, expiredClaims)

	var seen *auth.Principal
	h := v.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = auth.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))

	for _, tc := range []struct {
		name      string
		headers   []string
		status    int
		challenge string // exact, or a prefix ending in "…"
	}{
		{"good token", []string{"Bearer " + good}, http.StatusNoContent, ""},
		{"scheme in lower case", []string{"bearer " + good}, http.StatusNoContent, ""},
		{"no Authorization header", nil, http.StatusUnauthorized, `Bearer realm="priorflow"`},
		{"not Bearer", []string{"Basic dXNlcjpwYXNz"}, http.StatusUnauthorized, `Bearer realm="priorflow"`},
		{"Bearer without token", []string{"Bearer "}, http.StatusBadRequest, `Bearer realm="priorflow", error="invalid_request", …`},
		{"two Authorization headers", []string{"Bearer " + good, "Bearer " + good}, http.StatusBadRequest, `Bearer realm="priorflow", error="invalid_request", …`},
		{"expired token", []string{"Bearer " + expired}, http.StatusUnauthorized, `Bearer realm="priorflow", error="invalid_token", error_description="the token expired at …`},
		{"garbage token", []string{"Bearer garbage"}, http.StatusUnauthorized, `Bearer realm="priorflow", error="invalid_token", …`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			r := httptest.NewRequest(http.MethodGet, "/fhir/ImagingStudy", nil)
			for _, hv := range tc.headers {
				r.Header.Add("Authorization", hv)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status=%d, want %d (body %q)", w.Code, tc.status, w.Body)
			}
			got := w.Header().Get("WWW-Authenticate")
			if prefix, ok := strings.CutSuffix(tc.challenge, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("WWW-Authenticate=%s, want it to start with %s", got, prefix)
				}
			} else if got != tc.challenge {
				t.Errorf("WWW-Authenticate=%s, want %s", got, tc.challenge)
			}
			if tc.status == http.StatusNoContent {
				if seen == nil || seen.Subject != "test-client" || seen.Scopes.String() != "system/ImagingStudy.rs" {
					t.Errorf("the handler saw principal %+v", seen)
				}
				return
			}
			if seen != nil {
				t.Error("the handler ran for a refused request")
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type=%q, want text/plain", ct)
			}
			for _, hv := range tc.headers {
				assertNoToken(t, strings.TrimPrefix(hv, "Bearer "), w.Body.String(), got)
			}
		})
	}

	t.Run("custom error writer", func(t *testing.T) {
		var gotErr *jwtauth.Error
		h := v.Middleware(func(w http.ResponseWriter, _ *http.Request, e *jwtauth.Error) {
			gotErr = e
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Error("WWW-Authenticate is not set before the error writer runs")
			}
			w.WriteHeader(e.Status)
		})(http.NotFoundHandler())
		r := httptest.NewRequest(http.MethodGet, "/dicomweb/studies", nil)
		r.Header.Set("Authorization", "Bearer "+expired)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if gotErr == nil || gotErr.Code != jwtauth.CodeInvalidToken || w.Code != http.StatusUnauthorized {
			t.Errorf("error writer got %+v, status %d", gotErr, w.Code)
		}
	})
}

// tokenServer is a built-in token server with a fresh key, whose
// tokens carry iss jwtauthtest.IssuerURL and aud jwtauthtest.Audience.
func tokenServer(t *testing.T, replay *tokenserver.ReplayStore) *tokenserver.Server {
	t.Helper()
	dir := t.TempDir()
	key, err := tokenserver.LoadOrCreateKey(filepath.Join(dir, "key.json"))
	if err != nil {
		t.Fatal(err)
	}
	clientsFile := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(clientsFile, []byte("clients: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := tokenserver.LoadClients(clientsFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tokenserver.New(tokenserver.Config{
		Issuer:   jwtauthtest.IssuerURL,
		TokenURL: jwtauthtest.IssuerURL + "/auth/token",
		Audience: jwtauthtest.Audience,
		Key:      key,
		Clients:  clients,
	}, replay, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifier_JWKS_KeyRotation(t *testing.T) {
	t.Parallel()
	replay, err := tokenserver.NewReplayStore(dbtest.NewPool(t), dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	before := tokenServer(t, replay)
	jwks := jwtauthtest.NewJWKSServer(t, before.JWKSHandler())
	v, err := jwtauth.NewVerifier(context.Background(), jwtauth.Config{
		Issuer:   jwtauthtest.IssuerURL,
		Audience: jwtauthtest.Audience,
		JWKSURL:  jwks.URL,
	}, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	ctx := context.Background()

	old, err := before.Mint("ris-backend", "system/ImagingStudy.rs", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatalf("a token of the first key: %v", err)
	}
	fetches := jwks.Fetches()

	// The issuer rotates: a new key, and only it in the JWKS.
	after := tokenServer(t, replay)
	jwks.Serve(after.JWKSHandler())
	fresh, err := after.Mint("ris-backend", "system/ImagingStudy.rs", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(ctx, fresh)
	if err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if p.Subject != "ris-backend" {
		t.Errorf("Subject=%q, want ris-backend", p.Subject)
	}
	if got, want := jwks.Fetches(), fetches+1; got != want {
		t.Errorf("JWKS fetches=%d, want %d (one refetch for the new kid)", got, want)
	}
	// Its key gone from the set, the old token fails — without another
	// fetch, since one just happened.
	_, err = v.Verify(ctx, old)
	var e *jwtauth.Error
	if !errors.As(err, &e) || !strings.Contains(e.Description, "not among the issuer's keys") {
		t.Errorf("a token of the retired key: %v", err)
	}
	if got, want := jwks.Fetches(), fetches+1; got != want {
		t.Errorf("JWKS fetches=%d, want %d", got, want)
	}
}

func TestNewVerifier_Config(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES256())
	secret, err := jwk.Import([]byte("a shared secret of thirty-two bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	symmetric := jwk.NewSet()
	_ = symmetric.AddKey(secret)
	for _, tc := range []struct {
		name string
		cfg  jwtauth.Config
		want []string
	}{
		{"empty", jwtauth.Config{}, []string{"issuer is required", "audience is required", "a JWKS URL or a static key set is required"}},
		{"both key sources", jwtauth.Config{Issuer: "i", Audience: "a", JWKSURL: "https://i.test/jwks", Keys: jwtauthtest.PublicSet(t, key)}, []string{"not both"}},
		{"relative JWKS URL", jwtauth.Config{Issuer: "i", Audience: "a", JWKSURL: "/jwks"}, []string{"not an absolute http(s) URL"}},
		{"negative skew", jwtauth.Config{Issuer: "i", Audience: "a", Keys: jwtauthtest.PublicSet(t, key), ClockSkew: -time.Second}, []string{"negative"}},
		{"empty key set", jwtauth.Config{Issuer: "i", Audience: "a", Keys: jwk.NewSet()}, []string{"empty"}},
		{"symmetric key", jwtauth.Config{Issuer: "i", Audience: "a", Keys: symmetric}, []string{"symmetric"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jwtauth.NewVerifier(context.Background(), tc.cfg, dbtest.Logger())
			if err == nil {
				t.Fatal("NewVerifier accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewVerifier_JWKSUnavailable(t *testing.T) {
	t.Parallel()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	notJWKS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html>login</html>"))
	}))
	t.Cleanup(notJWKS.Close)
	for name, u := range map[string]string{"503": failing.URL, "not a JWKS": notJWKS.URL} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := jwtauth.NewVerifier(context.Background(), jwtauth.Config{
				Issuer: jwtauthtest.IssuerURL, Audience: jwtauthtest.Audience, JWKSURL: u,
			}, dbtest.Logger())
			if err == nil {
				t.Fatal("NewVerifier succeeded without keys")
			}
			if !strings.Contains(err.Error(), u) {
				t.Errorf("error %q does not name the URL", err)
			}
			// It fails on the first failed fetch, not after httprc's retry
			// interval or our 30-second wait.
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("NewVerifier took %s to fail", d)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	key := jwtauthtest.NewKey(f, jwa.ES256())
	v := staticVerifier(f, jwtauthtest.PublicSet(f, key))
	claims := jwtauthtest.Claims("system/ImagingStudy.rs")
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	good := jwtauthtest.Sign(f, key, claims)
	signingInput := good[:strings.LastIndex(good, ".")]
	for _, s := range []string{
		good,
		good[:len(good)-4] + "AAAA",
		b64(map[string]string{"alg": "none"}) + "." + b64(claims) + ".",
		"", "a.b.c", "a.b.c.d.e", "eyJhbGciOiJFUzI1NiJ9.e30.", strings.Repeat(".", 5),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := v.Verify(context.Background(), s)
		if err == nil {
			// Only the signed token verifies (its signature may have other
			// encodings, and ECDSA signatures have two valid forms).
			if !strings.HasPrefix(s, signingInput+".") || p == nil {
				t.Fatalf("Verify accepted %q", s)
			}
			return
		}
		var e *jwtauth.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not a *jwtauth.Error", err)
		}
		if len(s) >= 16 && strings.Contains(e.Description, s) {
			t.Fatalf("the description %q contains the token", e.Description)
		}
		_ = e.WWWAuthenticate()
	})
}
