package tokenserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
	"github.com/priorflow/priorflow/auth/tokenserver"
)

func TestToken_FullFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	assertion, err := tokenserver.ClientAssertion("ris-backend", e.tokenURL, e.risKey)
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(t, tokenRequest(assertion, "system/ImagingStudy.rs system/Appointment.cu"))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control=%q, want no-store", got)
	}
	if got := r.str("token_type"); got != "bearer" {
		t.Errorf("token_type=%q, want bearer", got)
	}
	if got, _ := r.fields["expires_in"].(float64); got != 300 {
		t.Errorf("expires_in=%v, want 300", r.fields["expires_in"])
	}
	if got, want := r.str("scope"), "system/ImagingStudy.rs system/Appointment.cu"; got != want {
		t.Errorf("scope=%q, want %q", got, want)
	}

	// The resource server accepts the token, fetching the keys from the
	// token server's JWKS.
	p, err := e.verifier.Verify(context.Background(), r.str("access_token"))
	if err != nil {
		t.Fatalf("jwtauth refuses the issued token: %v", err)
	}
	if got, want := p.Scopes.String(), "system/ImagingStudy.rs system/Appointment.cu"; got != want {
		t.Errorf("Principal.Scopes=%q, want %q", got, want)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Issuer", p.Issuer, e.http.URL},
		{"Subject", p.Subject, "ris-backend"},
		{"ClientID", p.ClientID, "ris-backend"},
		{"PurposeOfUse", strings.Join(p.PurposeOfUse, ","), "TREAT"},
	} {
		if c.got != c.want {
			t.Errorf("Principal.%s=%q, want %q", c.name, c.got, c.want)
		}
	}
	if p.TokenID == "" {
		t.Error("the token has no jti")
	}
	if d := time.Until(p.Expiry); d < 4*time.Minute || d > 5*time.Minute+time.Second {
		t.Errorf("the token expires in %s, want 5 minutes", d)
	}
	if _, err := p.Allow("ImagingStudy", auth.PermSearch); err != nil {
		t.Errorf("the token does not grant searching ImagingStudy: %v", err)
	}
	if _, err := p.Allow("ImagingStudy", auth.PermUpdate); err == nil {
		t.Error("the token grants updating ImagingStudy")
	}

	// The header says what the token is and which key signed it.
	msg, err := jws.Parse([]byte(r.str("access_token")))
	if err != nil {
		t.Fatal(err)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, _ := hdr.Algorithm()
	typ, _ := hdr.Type()
	kid, _ := hdr.KeyID()
	if alg != jwa.ES384() || typ != "at+jwt" || kid == "" {
		t.Errorf("header alg %s typ %q kid %q, want ES384 at+jwt and a kid", alg, typ, kid)
	}
}

func TestToken_RSAClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	assertion, err := tokenserver.ClientAssertion("rsa-client", e.tokenURL, e.rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := jws.Parse([]byte(assertion))
	if alg, _ := msg.Signatures()[0].ProtectedHeaders().Algorithm(); alg != jwa.RS384() {
		t.Errorf("ClientAssertion signed with %s, want RS384", alg)
	}
	r := e.post(t, tokenRequest(assertion, "system/ImagingStudy.rs"))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	p, err := e.verifier.Verify(context.Background(), r.str("access_token"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.PurposeOfUse) != 0 {
		t.Errorf("PurposeOfUse=%v, want none (the client has none)", p.PurposeOfUse)
	}
}

func TestToken_ReplayedJTI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	assertion := jwtauthtest.Sign(t, e.risKey, e.assertionClaims("ris-backend", "jti-1"))
	if r := e.post(t, tokenRequest(assertion, "system/ImagingStudy.rs")); r.status != http.StatusOK {
		t.Fatalf("first use: status %d: %s", r.status, r.body)
	}
	r := e.post(t, tokenRequest(assertion, "system/ImagingStudy.rs"))
	wantError(t, r, http.StatusUnauthorized, "invalid_client", "jti was used before")

	// A new assertion with the same jti is a replay too.
	again := jwtauthtest.Sign(t, e.risKey, e.assertionClaims("ris-backend", "jti-1"))
	wantError(t, e.post(t, tokenRequest(again, "system/ImagingStudy.rs")), http.StatusUnauthorized, "invalid_client", "jti was used before")

	// jti values are unique per client: another client may use the same.
	other := jwtauthtest.Sign(t, e.rsaKey, e.assertionClaims("rsa-client", "jti-1"))
	if r := e.post(t, tokenRequest(other, "system/ImagingStudy.rs")); r.status != http.StatusOK {
		t.Errorf("another client's jti-1: status %d: %s", r.status, r.body)
	}
}

// b64 is base64url without padding, as JWS uses.
func b64(v any) string {
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestToken_AssertionRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().Unix()
	unregistered := jwtauthtest.NewKey(t, jwa.ES384())
	risKid, _ := e.risKey.KeyID()
	sameKid, err := unregistered.Clone()
	if err != nil {
		t.Fatal(err)
	}
	_ = sameKid.Set(jwk.KeyIDKey, risKid)

	ris := func(change func(map[string]any)) func(*testing.T) string {
		return func(t *testing.T) string {
			c := e.assertionClaims("ris-backend", "jti-"+t.Name())
			change(c)
			return jwtauthtest.Sign(t, e.risKey, c)
		}
	}
	withHeader := func(hdr map[string]any, key jwk.Key, alg jwa.SignatureAlgorithm) func(*testing.T) string {
		return func(t *testing.T) string {
			h := jws.NewHeaders()
			for k, v := range hdr {
				_ = h.Set(k, v)
			}
			payload, _ := json.Marshal(e.assertionClaims("ris-backend", "jti-"+t.Name()))
			s, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
			if err != nil {
				t.Fatal(err)
			}
			return string(s)
		}
	}
	for _, tc := range []struct {
		name      string
		assertion func(*testing.T) string
		want      string
	}{
		{"wrong aud", ris(func(c map[string]any) { c["aud"] = "https://other.test/token" }), "aud must be the token endpoint, " + e.tokenURL},
		{"aud is the FHIR base", ris(func(c map[string]any) { c["aud"] = audience }), "aud must be the token endpoint"},
		{"expired", ris(func(c map[string]any) { c["exp"] = now - 120 }), "the client assertion expired at "},
		{"exp too far ahead", ris(func(c map[string]any) { c["exp"] = now + 3600 }), "more than 5m0s ahead"},
		{"no exp", ris(func(c map[string]any) { delete(c, "exp") }), "has no exp"},
		{"nbf in the future", ris(func(c map[string]any) { c["nbf"] = now + 120 }), "not valid before"},
		{"no jti", ris(func(c map[string]any) { delete(c, "jti") }), "has no jti"},
		{"huge jti", ris(func(c map[string]any) { c["jti"] = strings.Repeat("j", 300) }), "jti is longer than"},
		{"unknown client", ris(func(c map[string]any) { c["iss"], c["sub"] = "mallory", "mallory" }), "client mallory is not registered"},
		{"iss differs from sub", ris(func(c map[string]any) { c["sub"] = "rsa-client" }), "iss and sub differ"},
		{"no iss", ris(func(c map[string]any) { delete(c, "iss"); delete(c, "sub") }), "has no iss"},
		{"signed by an unregistered key", func(t *testing.T) string {
			return jwtauthtest.Sign(t, unregistered, e.assertionClaims("ris-backend", "jti-"+t.Name()))
		}, "client ris-backend has no registered key"},
		{"signed by another key under the registered kid", func(t *testing.T) string {
			return jwtauthtest.Sign(t, sameKid, e.assertionClaims("ris-backend", "jti-"+t.Name()))
		}, "signature does not verify with client ris-backend's key"},
		{"signed by another client's key", func(t *testing.T) string {
			return jwtauthtest.Sign(t, e.rsaKey, e.assertionClaims("ris-backend", "jti-"+t.Name()))
		}, "client ris-backend has no registered key"},
		{"HS256", withHeader(map[string]any{"kid": risKid}, mustSymmetric(t), jwa.HS256()), "symmetric algorithm HS256"},
		{"alg none", func(t *testing.T) string {
			return b64(map[string]string{"alg": "none", "kid": risKid}) + "." + b64(e.assertionClaims("ris-backend", "jti-"+t.Name())) + "."
		}, "unsigned (alg none)"},
		{"no kid", withHeader(nil, withoutKid(t, e.risKey), jwa.ES384()), "names no key (kid)"},
		{"jku elsewhere", withHeader(map[string]any{"kid": risKid, "jku": "https://evil.test/jwks"}, e.risKey, jwa.ES384()), "jku is not the JWKS URL registered"},
		{"tampered claims", func(t *testing.T) string {
			good := jwtauthtest.Sign(t, e.risKey, e.assertionClaims("ris-backend", "jti-"+t.Name()))
			parts := strings.Split(good, ".")
			c := e.assertionClaims("ris-backend", "jti-"+t.Name())
			c["exp"] = now + 200
			parts[1] = b64(c)
			return strings.Join(parts, ".")
		}, "signature does not verify"},
		{"nested JWS", func(t *testing.T) string {
			// Another client's assertion as the payload: its claims must
			// not stand in for the outer token's.
			inner := jwtauthtest.Sign(t, e.rsaKey, e.assertionClaims("rsa-client", "jti-"+t.Name()))
			s, err := jws.Sign([]byte(inner), jws.WithKey(jwa.ES384(), e.risKey))
			if err != nil {
				t.Fatal(err)
			}
			return string(s)
		}, "claims are not a JSON object"},
		{"not a JWT", func(*testing.T) string { return "not-a-jwt" }, "not a signed JWT"},
		{"JWE", func(*testing.T) string { return "a.b.c.d.e" }, "not a signed JWT"},
		{"garbage", func(*testing.T) string { return "eyJ!.e30.AA" }, "not a well-formed signed JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, tokenRequest(tc.assertion(t), "system/ImagingStudy.rs"))
			wantError(t, r, http.StatusUnauthorized, "invalid_client", tc.want)
		})
	}
}

func mustSymmetric(t *testing.T) jwk.Key {
	t.Helper()
	k, err := jwk.Import([]byte("a shared secret of thirty-two bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func withoutKid(t *testing.T, k jwk.Key) jwk.Key {
	t.Helper()
	c, err := k.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(jwk.KeyIDKey); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestToken_RequestRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := func(t *testing.T) string {
		a, err := tokenserver.ClientAssertion("ris-backend", e.tokenURL, e.risKey)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	form := func(t *testing.T, change func(url.Values)) string {
		f := tokenRequest(good(t), "system/ImagingStudy.rs")
		change(f)
		return f.Encode()
	}
	const formType = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        func(*testing.T) string
		header      http.Header
		status      int
		code, want  string
	}{
		{"GET", http.MethodGet, "", func(*testing.T) string { return "" }, nil, http.StatusMethodNotAllowed, "invalid_request", "takes POST"},
		{"JSON body", http.MethodPost, "application/json", func(*testing.T) string { return "{}" }, nil, http.StatusBadRequest, "invalid_request", "application/x-www-form-urlencoded"},
		{"no grant_type", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Del("grant_type") }) }, nil, http.StatusBadRequest, "invalid_request", "grant_type is required"},
		{"password grant", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Set("grant_type", "password") }) }, nil, http.StatusBadRequest, "unsupported_grant_type", "grant_type password is not supported"},
		{"jwt-bearer grant", http.MethodPost, formType, func(t *testing.T) string {
			return form(t, func(f url.Values) { f.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer") })
		}, nil, http.StatusBadRequest, "unsupported_grant_type", "use client_credentials"},
		{"no scope", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Del("scope") }) }, nil, http.StatusBadRequest, "invalid_request", "scope is required"},
		{"malformed scope", http.MethodPost, formType, func(t *testing.T) string {
			return form(t, func(f url.Values) { f.Set("scope", "system/ImagingStudy.sr") })
		}, nil, http.StatusBadRequest, "invalid_scope", "permissions must be letters of cruds"},
		{"no assertion", http.MethodPost, formType, func(t *testing.T) string {
			return form(t, func(f url.Values) { f.Del("client_assertion"); f.Del("client_assertion_type") })
		}, nil, http.StatusUnauthorized, "invalid_client", "client authentication is required"},
		{"wrong assertion type", http.MethodPost, formType, func(t *testing.T) string {
			return form(t, func(f url.Values) {
				f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			})
		}, nil, http.StatusUnauthorized, "invalid_client", "client_assertion_type must be " + tokenserver.AssertionType},
		{"assertion type without assertion", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Del("client_assertion") }) }, nil, http.StatusUnauthorized, "invalid_client", "client_assertion is required"},
		{"repeated parameter", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Add("scope", "system/Patient.rs") }) }, nil, http.StatusBadRequest, "invalid_request", "parameter scope is repeated"},
		{"client secret", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(f url.Values) { f.Set("client_secret", "hunter2") }) }, nil, http.StatusUnauthorized, "invalid_client", "only private_key_jwt"},
		{"basic authentication", http.MethodPost, formType, func(t *testing.T) string { return form(t, func(url.Values) {}) },
			http.Header{"Authorization": {"Basic cmlzLWJhY2tlbmQ6aHVudGVyMg=="}}, http.StatusUnauthorized, "invalid_client", "only private_key_jwt"},
		{"huge body", http.MethodPost, formType, func(*testing.T) string { return "scope=" + strings.Repeat("a", 70<<10) }, nil, http.StatusBadRequest, "invalid_request", "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.contentType, tc.body(t), tc.header)
			wantError(t, r, tc.status, tc.code, tc.want)
		})
	}
}

func TestToken_Scope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name, client, scope string
		want                string // granted; "" for invalid_scope
	}{
		{"all within", "ris-backend", "system/ImagingStudy.rs", "system/ImagingStudy.rs"},
		{"narrower", "ris-backend", "system/ImagingStudy.r system/Appointment.c", "system/ImagingStudy.r system/Appointment.c"},
		{"SMART v1 form", "ris-backend", "system/ImagingStudy.read", "system/ImagingStudy.read"},
		{"with a search query", "ris-backend", "system/ImagingStudy.rs?modality=CT", "system/ImagingStudy.rs?modality=CT"},
		{"partly beyond: the subset", "ris-backend", "system/ImagingStudy.rs system/Patient.rs system/Appointment.cud", "system/ImagingStudy.rs"},
		{"repeated scope granted once", "ris-backend", "system/ImagingStudy.rs system/ImagingStudy.rs", "system/ImagingStudy.rs"},
		{"non-resource scopes dropped", "ris-backend", "openid fhirUser system/ImagingStudy.rs", "system/ImagingStudy.rs"},
		{"wildcard registration", "url-client", "system/Patient.rs system/ImagingStudy.r", "system/Patient.rs system/ImagingStudy.r"},
		{"beyond the registration", "ris-backend", "system/Patient.rs", ""},
		{"more permissions than registered", "ris-backend", "system/ImagingStudy.cruds", ""},
		{"wildcard beyond a type", "ris-backend", "system/*.rs", ""},
		{"no resource scope", "ris-backend", "openid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := map[string]jwk.Key{"ris-backend": e.risKey, "url-client": e.urlKey}[tc.client]
			a, err := tokenserver.ClientAssertion(tc.client, e.tokenURL, key)
			if err != nil {
				t.Fatal(err)
			}
			r := e.post(t, tokenRequest(a, tc.scope))
			if tc.want == "" {
				wantError(t, r, http.StatusBadRequest, "invalid_scope", "none of the requested resource scopes is within client "+tc.client+"'s registration")
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if got := r.str("scope"); got != tc.want {
				t.Errorf("granted %q, want %q", got, tc.want)
			}
			p, err := e.verifier.Verify(context.Background(), r.str("access_token"))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Scopes.String(); got != tc.want {
				t.Errorf("the token carries %q, want %q", got, tc.want)
			}
		})
	}
}

func TestToken_JWKSURLClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, err := tokenserver.ClientAssertion("url-client", e.tokenURL, e.urlKey)
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(t, tokenRequest(a, "system/ImagingStudy.rs"))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, err := e.verifier.Verify(context.Background(), r.str("access_token")); err != nil {
		t.Fatal(err)
	}

	// The client rotates its key: the token server refetches its JWKS
	// for the new kid.
	rotated := jwtauthtest.NewKey(t, jwa.ES384())
	e.urlKeys.Serve(jwtauthtest.SetHandler(t, jwtauthtest.PublicSet(t, rotated)))
	fetches := e.urlKeys.Fetches()
	a, err = tokenserver.ClientAssertion("url-client", e.tokenURL, rotated)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.post(t, tokenRequest(a, "system/ImagingStudy.rs")); r.status != http.StatusOK {
		t.Fatalf("after rotation: status %d: %s", r.status, r.body)
	}
	if got, want := e.urlKeys.Fetches(), fetches+1; got != want {
		t.Errorf("JWKS fetches=%d, want %d", got, want)
	}

	// Made-up kids cost the client's JWKS at most one fetch per interval
	// (one just happened).
	for range 5 {
		bogus := jwtauthtest.NewKey(t, jwa.ES256())
		a, err := tokenserver.ClientAssertion("url-client", e.tokenURL, bogus)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, e.post(t, tokenRequest(a, "system/ImagingStudy.rs")), http.StatusUnauthorized, "invalid_client", "client url-client's JWKS has no key")
	}
	if got, want := e.urlKeys.Fetches(), fetches+1; got != want {
		t.Errorf("JWKS fetches=%d after unknown kids, want %d", got, want)
	}

	// A jku naming the registered URL is fine.
	h := jws.NewHeaders()
	_ = h.Set(jws.JWKSetURLKey, e.urlKeys.URL)
	kid, _ := rotated.KeyID()
	_ = h.Set(jws.KeyIDKey, kid)
	payload, _ := json.Marshal(e.assertionClaims("url-client", "with-jku"))
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES384(), rotated, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.post(t, tokenRequest(string(signed), "system/ImagingStudy.rs")); r.status != http.StatusOK {
		t.Errorf("with the registered jku: status %d: %s", r.status, r.body)
	}
}

func TestMint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, err := e.srv.Mint("dev", "system/*.cruds", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("jwtauth refuses a minted token: %v", err)
	}
	if p.Subject != "dev" || p.Scopes.String() != "system/*.cruds" {
		t.Errorf("principal %+v", p)
	}
	if d := time.Until(p.Expiry); d < 59*time.Minute {
		t.Errorf("the token expires in %s, want an hour", d)
	}
	if _, err := e.srv.Mint("dev", "system/Bad.x", 0); err == nil {
		t.Error("Mint accepted a malformed scope")
	}
	if _, err := e.srv.Mint("", "system/*.rs", 0); err == nil {
		t.Error("Mint accepted an empty subject")
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, err := e.http.Client().Get(e.http.URL + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var conf tokenserver.SMARTConfiguration
	if err := json.NewDecoder(res.Body).Decode(&conf); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"issuer", conf.Issuer, e.http.URL},
		{"token_endpoint", conf.TokenEndpoint, e.tokenURL},
		{"jwks_uri", conf.JWKSURI, e.http.URL + "/auth/jwks"},
		{"grant_types_supported", strings.Join(conf.GrantTypesSupported, " "), "client_credentials"},
		{"token_endpoint_auth_methods_supported", strings.Join(conf.TokenEndpointAuthMethodsSupported, " "), "private_key_jwt"},
		{"token_endpoint_auth_signing_alg_values_supported", strings.Join(conf.TokenEndpointAuthSigningAlgValuesSupported, " "), "RS384 ES384"},
		{"capabilities", strings.Join(conf.Capabilities, " "), "client-confidential-asymmetric permission-v1 permission-v2"},
		{"scopes_supported", strings.Join(conf.ScopesSupported, " "), "system/*.rs system/Appointment.cu system/ImagingStudy.rs"},
	} {
		if c.got != c.want {
			t.Errorf("%s=%q, want %q", c.name, c.got, c.want)
		}
	}

	// The JWKS holds the public key only.
	res, err = e.http.Client().Get(conf.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	set, err := jwk.ParseReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 {
		t.Fatalf("the JWKS has %d keys, want 1", set.Len())
	}
	k, _ := set.Key(0)
	if private, _ := jwk.IsPrivateKey(k); private {
		t.Error("the JWKS publishes the private key")
	}
	if alg, _ := k.Algorithm(); alg.String() != "ES384" {
		t.Errorf("the JWKS key's alg is %v, want ES384", alg)
	}
}
