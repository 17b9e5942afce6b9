package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/priorflow/priorflow/auth/jwtauth/jwtauthtest"
	"github.com/priorflow/priorflow/auth/tokenserver"
)

// do sends a request with an optional bearer token and returns the status,
// the WWW-Authenticate header and the body.
func do(t *testing.T, method, u, token, contentType, body string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// TestAPI_RefusesToStartWithoutAuthorization: outside dev mode the api
// does not serve patient data until authorization is configured or
// explicitly turned off.
func TestAPI_RefusesToStartWithoutAuthorization(t *testing.T) {
	_, err := loadConfig([]string{"-auth", "smart", "-auth-issuer", "", "-auth-clients", ""})
	if err == nil || !strings.Contains(err.Error(), "PRIORFLOW_AUTH=off") {
		t.Errorf("no authorization configured: %v", err)
	}
	_, err = loadConfig([]string{"-auth", "smart", "-auth-issuer", "https://idp.example", "-auth-clients", ""})
	if err == nil || !strings.Contains(err.Error(), "PRIORFLOW_AUTH_JWKS_URL") {
		t.Errorf("issuer without keys: %v", err)
	}
	if _, err := loadConfig([]string{"-auth", "sometimes"}); err == nil {
		t.Error("an unknown mode was accepted")
	}
	if _, err := loadConfig([]string{"-auth", "dev"}); err != nil {
		t.Errorf("dev mode: %v", err)
	}
	// Migrating touches no patient data.
	if _, err := loadConfigFor([]string{"-auth", "smart", "-auth-issuer", "", "-auth-clients", ""}, true); err != nil {
		t.Errorf("migrate: %v", err)
	}
}

// TestAPI_DevModeToken: dev mode writes a ready token that opens FHIR and
// DICOMweb; without it both refuse, while discovery and metadata stay open.
func TestAPI_DevModeToken(t *testing.T) {
	t.Parallel()
	a := startAPIFull(t, "-auth", "dev")
	b, err := os.ReadFile(filepath.Join(a.dataDir, "dev-token"))
	if err != nil {
		t.Fatalf("dev token: %v", err)
	}
	token := strings.TrimSpace(string(b))
	if fi, _ := os.Stat(filepath.Join(a.dataDir, "dev-token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("dev token mode %v, want 0600", fi.Mode().Perm())
	}

	if code, _, body := do(t, "GET", a.base+"/fhir/metadata", "", "", ""); code != 200 || !strings.Contains(body, "SMART-on-FHIR") {
		t.Errorf("metadata without a token: %d %.300s", code, body)
	}
	code, _, body := do(t, "GET", a.base+"/fhir/.well-known/smart-configuration", "", "", "")
	var sc struct {
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &sc) != nil || sc.TokenEndpoint != a.base+"/auth/token" {
		t.Errorf("smart-configuration: %d %s", code, body)
	}
	for _, u := range []string{a.base + "/fhir/ImagingStudy", a.base + "/dicomweb/studies", a.base + "/fhir/Subscription/x/$status"} {
		code, wa, _ := do(t, "GET", u, "", "", "")
		if code != http.StatusUnauthorized || !strings.HasPrefix(wa, "Bearer") {
			t.Errorf("GET %s without a token: %d, WWW-Authenticate %q", u, code, wa)
		}
		if code, _, body := do(t, "GET", u, token+"x", "", ""); code != http.StatusUnauthorized || strings.Contains(body, token) {
			t.Errorf("GET %s with a tampered token: %d %s", u, code, body)
		}
	}
	if code, _, body := do(t, "GET", a.base+"/fhir/ImagingStudy", token, "", ""); code != 200 {
		t.Errorf("FHIR search with the dev token: %d %s", code, body)
	}
	if code, _, body := do(t, "GET", a.base+"/dicomweb/studies", token, "", ""); code != 200 && code != 204 {
		t.Errorf("QIDO with the dev token: %d %s", code, body)
	}
}

// TestAPI_BackendServicesClient runs the SMART Backend Services flow
// against the built-in token endpoint: a registered client signs an
// assertion, gets a token with the scopes it asked for within its
// registration, and the API lets it do exactly that, on record.
func TestAPI_BackendServicesClient(t *testing.T) {
	t.Parallel()
	key := jwtauthtest.NewKey(t, jwa.ES384())
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	clients := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(clients, []byte(`clients:
  - id: ris-backend
    name: Test RIS
    jwks: {keys: [`+string(pubJSON)+`]}
    scope: system/ImagingStudy.rs system/Patient.rs system/Patient.c system/AuditEvent.rs
    purposeOfUse: [TREAT]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAPIFull(t, "-auth", "smart", "-auth-clients", clients)
	tokenURL := a.base + "/auth/token"

	getToken := func(scope string, assertion string) (int, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {tokenserver.AssertionType}, "client_assertion": {assertion}}
		code, _, body := do(t, "POST", tokenURL, "", "application/x-www-form-urlencoded", form.Encode())
		var out map[string]any
		_ = json.Unmarshal([]byte(body), &out)
		return code, out
	}
	assertion := func() string {
		s, err := tokenserver.ClientAssertion("ris-backend", tokenURL, key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := assertion()
	code, tok := getToken("system/ImagingStudy.rs system/Patient.rs system/Patient.c system/AuditEvent.rs", first)
	if code != 200 || tok["access_token"] == nil {
		t.Fatalf("token: %d %v", code, tok)
	}
	token := tok["access_token"].(string)
	if code, out := getToken("system/ImagingStudy.rs", first); code != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("a replayed assertion: %d %v", code, out)
	}
	if code, out := getToken("system/ImagingStudy.cruds", assertion()); code == 200 && strings.Contains(out["scope"].(string), "cruds") {
		t.Errorf("scope beyond the registration granted: %v", out)
	}

	patient := `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"SEC-1"}],"name":[{"family":"Audited"}]}`
	code, _, body := do(t, "POST", a.base+"/fhir/Patient", token, "application/fhir+json", patient)
	if code != http.StatusCreated {
		t.Fatalf("create Patient with system/Patient.c: %d %s", code, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(body), &created)
	if code, _, _ := do(t, "GET", a.base+"/fhir/Patient/"+created.ID, token, "", ""); code != 200 {
		t.Errorf("read Patient: %d", code)
	}
	if code, wa, body := do(t, "DELETE", a.base+"/fhir/Patient/"+created.ID, token, "", ""); code != http.StatusForbidden || !strings.Contains(wa, "insufficient_scope") {
		t.Errorf("delete without d: %d %q %s", code, wa, body)
	}
	if code, _, body := do(t, "POST", a.base+"/dicomweb/studies", token, "multipart/related; type=\"application/dicom\"; boundary=x", "--x--"); code != http.StatusForbidden {
		t.Errorf("STOW without ImagingStudy.cu: %d %s", code, body)
	}

	// The accesses are on record, searchable by patient, never writable.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _, body := do(t, "GET", a.base+"/fhir/AuditEvent?patient=Patient/"+created.ID, token, "", "")
		if code != 200 {
			t.Fatalf("AuditEvent search: %d %s", code, body)
		}
		if strings.Count(body, `"resourceType":"AuditEvent"`) >= 3 { // create, read, refused delete
			if !strings.Contains(body, "ris-backend") || !strings.Contains(body, "TREAT") || strings.Contains(body, token) {
				t.Errorf("audit records lack the client or purpose of use, or hold the token: %.2000s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AuditEvents for the patient: %.2000s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _, _ := do(t, "DELETE", a.base+"/fhir/AuditEvent/x", token, "", ""); code < 400 {
		t.Errorf("AuditEvent delete: %d", code)
	}
}

// The example client file in config/ is one the api accepts.
func TestAPI_ExampleClientsFile(t *testing.T) {
	cs, err := tokenserver.LoadClients("../../config/auth-clients.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.IDs(); len(got) != 2 {
		t.Errorf("clients %v, want ris-backend and pacs-viewer", got)
	}
}
