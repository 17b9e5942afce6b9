package tokenserver_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
	"github.com/priorflow/priorflow/auth/tokenserver"
)

// FuzzTokenHandler sends arbitrary assertions and scopes: the endpoint
// must answer an RFC 6749 error that does not echo the assertion, and
// issue a token only for an assertion a registered key signed.
func FuzzTokenHandler(f *testing.F) {
	e := newEnv(f)
	good, err := tokenserver.ClientAssertion("ris-backend", e.tokenURL, e.risKey)
	if err != nil {
		f.Fatal(err)
	}
	signingInput := good[:strings.LastIndex(good, ".")]
	// The good assertion itself is no seed: it is accepted once and then
	// refused as a replay, and a target that answers the same input
	// differently keeps the fuzzer minimizing instead of fuzzing.
	for _, s := range [][2]string{
		{good[:len(good)-3] + "AAA", "system/ImagingStudy.rs"},
		{signingInput + ".", "system/Patient.rs"},
		{b64(map[string]string{"alg": "none"}) + "." + b64(e.assertionClaims("ris-backend", "x")) + ".", "system/*.rs"},
		{jwtauthtest.Sign(f, e.urlKey, e.assertionClaims("ris-backend", "y")), "system/ImagingStudy.rs"},
		{"", ""}, {"a.b.c", "openid"}, {"a.b.c.d.e", "system/x.y"},
	} {
		f.Add(s[0], s[1])
	}
	h := e.srv.TokenHandler()
	f.Fuzz(func(t *testing.T, assertion, scope string) {
		form := tokenRequest(assertion, scope)
		r := httptest.NewRequest(http.MethodPost, e.tokenURL, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("status %d, body not JSON: %q", w.Code, w.Body)
		}
		if w.Code == http.StatusOK {
			if !strings.HasPrefix(assertion, signingInput+".") {
				t.Fatalf("a token for assertion %q", assertion)
			}
			return
		}
		if _, ok := body["error"].(string); !ok {
			t.Fatalf("status %d without an error code: %q", w.Code, w.Body)
		}
		if len(assertion) >= 16 && strings.Contains(w.Body.String(), assertion) {
			t.Fatalf("the error %q echoes the assertion", w.Body)
		}
	})
}
