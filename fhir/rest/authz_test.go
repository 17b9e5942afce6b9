package rest_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
)

// asCaller stands in for the token middleware in these tests: a request
// naming its scopes in X-Test-Scopes (and its launch patient in
// X-Test-Patient) is authenticated as a caller with those; any other
// request carries no Principal.
func asCaller(t *testing.T) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if raw := r.Header.Get("X-Test-Scopes"); raw != "" {
				scopes, err := auth.ParseScopes(raw)
				if err != nil {
					t.Errorf("test scopes %q: %v", raw, err)
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				p := &auth.Principal{Subject: "test-client", ClientID: "test-client", Scopes: scopes, Patient: r.Header.Get("X-Test-Patient")}
				r = r.WithContext(auth.WithPrincipal(r.Context(), p))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// newAuthServer is a FHIR API that enforces SMART scopes.
func newAuthServer(t *testing.T) *server {
	t.Helper()
	return startServer(t, rest.Config{Auth: true, TokenURL: "https://auth.example.org/token"}, asCaller(t),
		fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.AuditEvent())
}

// as returns s sending requests as a caller with scopes and, when
// patient is set, that launch patient.
func (s *server) as(scopes, patient string) *server {
	c := *s
	c.headers = []string{"X-Test-Scopes", scopes}
	if patient != "" {
		c.headers = append(c.headers, "X-Test-Patient", patient)
	}
	return &c
}

// admin is a caller every interaction is granted to.
func (s *server) admin() *server { return s.as("system/*.cruds", "") }

// twoPatients loads patients p1 and p2 with a CT study each (s1, s2), an MR
// study of p1 (s3) and an Endpoint.
func twoPatients(t *testing.T, s *server) {
	t.Helper()
	a := s.on(t).admin()
	a.must(201, "PUT", "/Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.3","value":"MRN1"}],"name":[{"family":"One"}]}`)
	a.must(201, "PUT", "/Patient/p2", `{"resourceType":"Patient","id":"p2","identifier":[{"system":"urn:oid:1.2.3","value":"MRN2"}],"name":[{"family":"Two"}]}`)
	a.must(201, "PUT", "/ImagingStudy/s1", withID(study("1.1", "Patient/p1", "2021-01-01", "CT"), "s1"))
	a.must(201, "PUT", "/ImagingStudy/s2", withID(study("2.2", "Patient/p2", "2021-02-02", "CT"), "s2"))
	a.must(201, "PUT", "/ImagingStudy/s3", withID(study("3.3", "Patient/p1", "2021-03-03", "MR"), "s3"))
	a.must(201, "PUT", "/Endpoint/e1", `{"resourceType":"Endpoint","id":"e1","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://localhost/dicomweb"}`)
}

func withID(body, id string) string {
	return strings.Replace(body, `{"resourceType":"ImagingStudy",`, `{"resourceType":"ImagingStudy","id":"`+id+`",`, 1)
}

// wantDenied asserts a 403 OperationOutcome whose diagnostics contain want.
func wantDenied(t *testing.T, r *response, want string) {
	t.Helper()
	if r.status != http.StatusForbidden {
		t.Fatalf("status %d, want 403: %s", r.status, r.body)
	}
	is := outcome(t, r)
	if is["code"] != "forbidden" {
		t.Errorf("issue code %v, want forbidden", is["code"])
	}
	if d, _ := is["diagnostics"].(string); !strings.Contains(d, want) {
		t.Errorf("diagnostics %q do not say %q", d, want)
	}
	if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate = %q, want a Bearer insufficient_scope challenge", got)
	}
}

func TestAuth_NoPrincipal(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/ImagingStudy", ""},
		{"GET", "/ImagingStudy/s1", ""},
		{"GET", "/ImagingStudy/_history", ""},
		{"POST", "/Patient", patient("X", "Doe")},
		{"DELETE", "/Patient/p1", ""},
		{"POST", "", `{"resourceType":"Bundle","type":"batch"}`},
	} {
		r := s.do(tc.method, tc.path, tc.body)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s %s: status %d, want 401: %s", tc.method, tc.path, r.status, r.body)
			continue
		}
		if got, want := r.header.Get("WWW-Authenticate"), `Bearer realm="priorflow"`; got != want {
			t.Errorf("%s %s: WWW-Authenticate = %q, want %q", tc.method, tc.path, got, want)
		}
		if is := outcome(t, r); is["code"] != "login" {
			t.Errorf("%s %s: issue code %v, want login", tc.method, tc.path, is["code"])
		}
	}

	// The CapabilityStatement is public, and says how the rest is protected.
	cs := s.must(200, "GET", "/metadata", "")
	sec, _ := cs["rest"].([]any)[0].(map[string]any)["security"].(map[string]any)
	if sec == nil {
		t.Fatalf("no rest.security in %v", cs["rest"])
	}
	if _, ok := sec["cors"].(bool); !ok {
		t.Errorf("security.cors = %v, want a boolean", sec["cors"])
	}
	coding := sec["service"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if coding["system"] != "http://terminology.hl7.org/CodeSystem/restful-security-service" || coding["code"] != "SMART-on-FHIR" {
		t.Errorf("security.service coding = %v", coding)
	}
	ext := sec["extension"].([]any)[0].(map[string]any)
	token := ext["extension"].([]any)[0].(map[string]any)
	if ext["url"] != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" || token["url"] != "token" || token["valueUri"] != "https://auth.example.org/token" {
		t.Errorf("oauth-uris extension = %v", ext)
	}
}

func TestAuth_Off_NoSecurityDeclared(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cs := s.must(200, "GET", "/metadata", "")
	if sec := cs["rest"].([]any)[0].(map[string]any)["security"]; sec != nil {
		t.Errorf("rest.security = %v without Auth", sec)
	}
	// Without Auth, no Principal is needed.
	s.must(201, "POST", "/Patient", patient("X", "Doe"))
}

func TestAuth_PermissionPerInteraction(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	upd := `{"resourceType":"Patient","id":"p1","name":[{"family":"Updated"}]}`
	for _, tc := range []struct {
		name      string
		scopes    string
		method    string
		path      string
		body      string
		headers   []string
		want      int
		wantDenia string // part of the 403 diagnostics
	}{
		{name: "read needs r", scopes: "system/ImagingStudy.s", method: "GET", path: "/ImagingStudy/s1", want: 403, wantDenia: `"r" on ImagingStudy`},
		{name: "read with r", scopes: "system/ImagingStudy.r", method: "GET", path: "/ImagingStudy/s1", want: 200},
		{name: "vread needs r", scopes: "system/ImagingStudy.s", method: "GET", path: "/ImagingStudy/s1/_history/1", want: 403, wantDenia: `"r" on ImagingStudy`},
		{name: "vread with r", scopes: "system/ImagingStudy.r", method: "GET", path: "/ImagingStudy/s1/_history/1", want: 200},
		{name: "instance history needs r", scopes: "system/ImagingStudy.s", method: "GET", path: "/ImagingStudy/s1/_history", want: 403, wantDenia: `"r" on ImagingStudy`},
		{name: "instance history with r", scopes: "system/ImagingStudy.r", method: "GET", path: "/ImagingStudy/s1/_history", want: 200},
		{name: "search needs s", scopes: "system/ImagingStudy.r", method: "GET", path: "/ImagingStudy", want: 403, wantDenia: `the access token's scopes do not grant "s" on ImagingStudy`},
		{name: "search with s", scopes: "system/ImagingStudy.s", method: "GET", path: "/ImagingStudy", want: 200},
		{name: "POST _search needs s", scopes: "system/ImagingStudy.r", method: "POST", path: "/ImagingStudy/_search", want: 403, wantDenia: `"s" on ImagingStudy`},
		{name: "type history needs s", scopes: "system/ImagingStudy.r", method: "GET", path: "/ImagingStudy/_history", want: 403, wantDenia: `"s" on ImagingStudy`},
		{name: "type history with s", scopes: "system/ImagingStudy.s", method: "GET", path: "/ImagingStudy/_history", want: 200},
		{name: "other type's scope", scopes: "system/Patient.cruds", method: "GET", path: "/ImagingStudy", want: 403, wantDenia: `"s" on ImagingStudy`},
		{name: "create needs c", scopes: "system/Patient.rus", method: "POST", path: "/Patient", body: patient("N1", "New"), want: 403, wantDenia: `"c" on Patient`},
		{name: "create with c", scopes: "system/Patient.c", method: "POST", path: "/Patient", body: patient("N2", "New"), want: 201},
		{name: "conditional create needs s", scopes: "system/Patient.c", method: "POST", path: "/Patient", body: patient("N3", "New"), headers: []string{"If-None-Exist", "identifier=N3"}, want: 403, wantDenia: `"s" on Patient`},
		{name: "conditional create with c and s", scopes: "system/Patient.cs", method: "POST", path: "/Patient", body: patient("N4", "New"), headers: []string{"If-None-Exist", "identifier=N4"}, want: 201},
		{name: "conditional create with separate scopes", scopes: "system/Patient.c system/Patient.s", method: "POST", path: "/Patient", body: patient("N5", "New"), headers: []string{"If-None-Exist", "identifier=N5"}, want: 201},
		{name: "update needs u", scopes: "system/Patient.crds", method: "PUT", path: "/Patient/p1", body: upd, want: 403, wantDenia: `"u" on Patient`},
		{name: "update with u", scopes: "system/Patient.u", method: "PUT", path: "/Patient/p1", body: upd, want: 200},
		{name: "conditional update needs s", scopes: "system/Patient.u", method: "PUT", path: "/Patient?identifier=MRN2", body: patient("MRN2", "Two"), want: 403, wantDenia: `"s" on Patient`},
		{name: "conditional update with u and s", scopes: "system/Patient.us", method: "PUT", path: "/Patient?identifier=MRN2", body: patient("MRN2", "Two"), want: 200},
		{name: "delete needs d", scopes: "system/ImagingStudy.cru", method: "DELETE", path: "/ImagingStudy/s3", want: 403, wantDenia: `"d" on ImagingStudy`},
		{name: "delete with d", scopes: "system/ImagingStudy.d", method: "DELETE", path: "/ImagingStudy/s3", want: 204},
		{name: "v1 read grants read", scopes: "user/ImagingStudy.read", method: "GET", path: "/ImagingStudy/s1", want: 200},
		{name: "v1 read grants search", scopes: "system/ImagingStudy.read", method: "GET", path: "/ImagingStudy?modality=CT", want: 200},
		{name: "v1 read does not grant create", scopes: "system/Patient.read", method: "POST", path: "/Patient", body: patient("N6", "New"), want: 403, wantDenia: `"c" on Patient`},
		{name: "v1 write grants create", scopes: "system/Patient.write", method: "POST", path: "/Patient", body: patient("N7", "New"), want: 201},
		{name: "v1 wildcard", scopes: "system/*.*", method: "GET", path: "/Endpoint/e1", want: 200},
		{name: "non-resource scopes grant nothing", scopes: "openid fhirUser launch/patient", method: "GET", path: "/Patient", want: 403, wantDenia: `"s" on Patient`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.on(t).as(tc.scopes, "").do(tc.method, tc.path, tc.body, tc.headers...)
			if tc.want == 403 {
				wantDenied(t, r, tc.wantDenia)
				return
			}
			if r.status != tc.want {
				t.Errorf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
		})
	}
}

func TestAuth_PatientScope_NarrowsSearch(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	p1 := s.as("patient/*.rs", "p1")

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"/ImagingStudy", []string{"s1", "s3"}},
		{"/ImagingStudy?modality=CT", []string{"s1"}},
		{"/ImagingStudy?patient=p2", nil},
		{"/ImagingStudy?_id=s2", nil},
		{"/Patient", []string{"p1"}},
		{"/Patient?identifier=MRN2", nil},
		// Endpoints are not patient data: a patient scope does not narrow them.
		{"/Endpoint", []string{"e1"}},
	} {
		got := ids(p1.on(t).must(200, "GET", tc.query, ""))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	if b := p1.must(200, "GET", "/ImagingStudy?_summary=count", ""); b["total"] != float64(2) {
		t.Errorf("_summary=count total = %v, want 2", b["total"])
	}
	// POST _search is narrowed the same way.
	r := p1.do("POST", "/ImagingStudy/_search", "", "Content-Type", "application/x-www-form-urlencoded")
	if got := ids(r.json()); r.status != 200 || len(got) != 2 {
		t.Errorf("POST _search: status %d ids %v", r.status, got)
	}
	// Paging keeps the narrowing: the next page is narrowed again.
	b := p1.must(200, "GET", "/ImagingStudy?_count=1", "")
	next := link(b, "next")
	if next == "" {
		t.Fatal("no next link")
	}
	r = p1.do("GET", strings.TrimPrefix(next, s.url), "")
	if got := ids(r.json()); r.status != 200 || len(got) != 1 || got[0] == "s2" {
		t.Errorf("next page: status %d ids %v", r.status, got)
	}
	if link(r.json(), "next") != "" {
		t.Error("a third page under the patient scope")
	}
	// A chain reads the resources it chains through: it needs an
	// unnarrowed grant on them.
	wantDenied(t, p1.do("GET", "/ImagingStudy?patient.identifier=MRN2", ""), "chained search through Patient")
	if got := ids(s.as("system/ImagingStudy.rs system/Patient.s", "").must(200, "GET", "/ImagingStudy?patient.identifier=MRN2", "")); !slices.Equal(got, []string{"s2"}) {
		t.Errorf("chain with system scopes: %v, want [s2]", got)
	}
	wantDenied(t, s.as("system/ImagingStudy.rs", "").do("GET", "/ImagingStudy?patient.identifier=MRN2", ""), `"s" on Patient`)

	// The whole type's history cannot be narrowed.
	wantDenied(t, p1.do("GET", "/ImagingStudy/_history", ""), "history of all ImagingStudy")
	p1.must(200, "GET", "/Endpoint/_history", "")

	// A patient scope without a launch patient grants nothing.
	wantDenied(t, s.as("patient/*.rs", "").do("GET", "/ImagingStudy", ""), "patient launch context")
}

func TestAuth_PatientScope_Read(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	p1 := s.as("patient/ImagingStudy.read patient/Patient.read", "p1")

	p1.must(200, "GET", "/ImagingStudy/s1", "")
	p1.must(200, "GET", "/Patient/p1", "")
	for _, path := range []string{"/ImagingStudy/s2", "/ImagingStudy/s2/_history/1", "/ImagingStudy/s2/_history", "/Patient/p2"} {
		wantDenied(t, p1.on(t).do("GET", path, ""), "outside the access token's patient compartment/scope")
	}
	if r := p1.do("GET", "/ImagingStudy/nope", ""); r.status != 404 {
		t.Errorf("unknown id: status %d, want 404", r.status)
	}

	// s4 was filed under p2, then moved to p1: p1 sees the resource, but
	// not the version that was p2's.
	a := s.admin()
	a.must(201, "PUT", "/ImagingStudy/s4", withID(study("4.4", "Patient/p2", "2021-04-04", "CT"), "s4"))
	a.must(200, "PUT", "/ImagingStudy/s4", withID(study("4.4", "Patient/p1", "2021-04-04", "CT"), "s4"))
	p1.must(200, "GET", "/ImagingStudy/s4", "")
	p1.must(200, "GET", "/ImagingStudy/s4/_history/2", "")
	wantDenied(t, p1.do("GET", "/ImagingStudy/s4/_history/1", ""), "outside")
	h := p1.must(200, "GET", "/ImagingStudy/s4/_history", "")
	if entries := h["entry"].([]any); len(entries) != 1 || h["total"] != float64(1) {
		t.Errorf("history of s4 under p1: %d entries, total %v; want only version 2", len(entries), h["total"])
	}
	// And p2 no longer reaches it at all.
	wantDenied(t, s.as("patient/*.read", "p2").do("GET", "/ImagingStudy/s4/_history/1", ""), "outside")

	// s5 was filed under p1 by this server's absolute URL, then under
	// another site's Patient/p1, then back: the first version is p1's as
	// the search index reads it, the second is not.
	a.must(201, "PUT", "/ImagingStudy/s5", withID(study("5.5", s.url+"/Patient/p1", "2021-05-05", "CT"), "s5"))
	a.must(200, "PUT", "/ImagingStudy/s5", withID(study("5.5", "https://other.example/fhir/Patient/p1", "2021-05-05", "CT"), "s5"))
	wantDenied(t, p1.do("GET", "/ImagingStudy/s5", ""), "outside")
	a.must(200, "PUT", "/ImagingStudy/s5", withID(study("5.5", s.url+"/Patient/p1", "2021-05-05", "CT"), "s5"))
	p1.must(200, "GET", "/ImagingStudy/s5", "")
	p1.must(200, "GET", "/ImagingStudy/s5/_history/1", "")
	wantDenied(t, p1.do("GET", "/ImagingStudy/s5/_history/2", ""), "outside")
}

func TestAuth_NarrowedWritesRefused(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	for _, tc := range []struct {
		scopes, method, path, body string
	}{
		{"patient/*.cruds", "POST", "/ImagingStudy", study("9.9", "Patient/p1", "2021-01-01", "CT")},
		{"patient/*.cruds", "PUT", "/ImagingStudy/s1", withID(study("1.1", "Patient/p1", "2021-01-01", "CT"), "s1")},
		{"patient/*.cruds", "DELETE", "/ImagingStudy/s1", ""},
		{"system/ImagingStudy.cruds?modality=CT", "DELETE", "/ImagingStudy/s1", ""},
		{"patient/Endpoint.c", "POST", "/Endpoint", `{"resourceType":"Endpoint","status":"active","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://x"}`},
	} {
		wantDenied(t, s.on(t).as(tc.scopes, "p1").do(tc.method, tc.path, tc.body), "writes need a system/ or user/ scope")
	}
	s.admin().must(200, "GET", "/ImagingStudy/s1", "")
}

func TestAuth_Include_LeavesOutWhatIsNotGranted(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)

	// entries splits a searchset into match ids, include ids and the
	// diagnostics of outcome entries.
	entries := func(b map[string]any) (match, include []string, outcomes []string) {
		for _, e := range b["entry"].([]any) {
			em := e.(map[string]any)
			res := em["resource"].(map[string]any)
			switch em["search"].(map[string]any)["mode"] {
			case "match":
				match = append(match, res["id"].(string))
			case "include":
				include = append(include, res["resourceType"].(string)+"/"+res["id"].(string))
			case "outcome":
				is := res["issue"].([]any)[0].(map[string]any)
				outcomes = append(outcomes, is["code"].(string)+": "+is["diagnostics"].(string))
			}
		}
		slices.Sort(match)
		slices.Sort(include)
		return match, include, outcomes
	}

	t.Run("include of a patient outside the compartment", func(t *testing.T) {
		b := s.on(t).as("system/ImagingStudy.rs patient/Patient.rs", "p1").must(200, "GET", "/ImagingStudy?_include=ImagingStudy:patient", "")
		match, include, outcomes := entries(b)
		if !slices.Equal(match, []string{"s1", "s2", "s3"}) {
			t.Errorf("matches %v", match)
		}
		if !slices.Equal(include, []string{"Patient/p1"}) {
			t.Errorf("included %v, want only Patient/p1", include)
		}
		if len(outcomes) != 1 || !strings.Contains(outcomes[0], "suppressed: 1 included resource was left out (1 Patient)") {
			t.Errorf("outcomes %q", outcomes)
		}
	})
	t.Run("include of a type not granted", func(t *testing.T) {
		b := s.on(t).as("system/ImagingStudy.rs", "").must(200, "GET", "/ImagingStudy?_include=ImagingStudy:patient", "")
		_, include, outcomes := entries(b)
		if len(include) != 0 {
			t.Errorf("included %v without a Patient grant", include)
		}
		if len(outcomes) != 1 || !strings.Contains(outcomes[0], "2 included resources were left out (2 Patient)") {
			t.Errorf("outcomes %q", outcomes)
		}
	})
	t.Run("revinclude outside the compartment", func(t *testing.T) {
		b := s.on(t).as("system/Patient.rs patient/ImagingStudy.rs", "p1").must(200, "GET", "/Patient?_revinclude=ImagingStudy:patient", "")
		match, include, outcomes := entries(b)
		if !slices.Equal(match, []string{"p1", "p2"}) {
			t.Errorf("matches %v", match)
		}
		if !slices.Equal(include, []string{"ImagingStudy/s1", "ImagingStudy/s3"}) {
			t.Errorf("included %v, want p1's studies", include)
		}
		if len(outcomes) != 1 || !strings.Contains(outcomes[0], "1 ImagingStudy") {
			t.Errorf("outcomes %q", outcomes)
		}
	})
	t.Run("all granted: no outcome", func(t *testing.T) {
		b := s.on(t).as("patient/*.rs", "p1").must(200, "GET", "/ImagingStudy?_include=ImagingStudy:patient", "")
		match, include, outcomes := entries(b)
		if !slices.Equal(match, []string{"s1", "s3"}) || !slices.Equal(include, []string{"Patient/p1"}) || len(outcomes) != 0 {
			t.Errorf("matches %v included %v outcomes %q", match, include, outcomes)
		}
	})
}

func TestAuth_QueryScope(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	ct := s.as("system/ImagingStudy.rs?modality=CT", "")

	got := ids(ct.must(200, "GET", "/ImagingStudy", ""))
	slices.Sort(got)
	if !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("search: %v, want the CT studies", got)
	}
	if got := ids(ct.must(200, "GET", "/ImagingStudy?modality=MR", "")); len(got) != 0 {
		t.Errorf("MR under a CT scope: %v", got)
	}
	ct.must(200, "GET", "/ImagingStudy/s1", "")
	wantDenied(t, ct.do("GET", "/ImagingStudy/s3", ""), "outside")

	// With a patient scope as well, the patient scope wins (auth.Allow):
	// it is the wider.
	both := s.as("system/ImagingStudy.rs?modality=CT patient/ImagingStudy.rs", "p1")
	got = ids(both.must(200, "GET", "/ImagingStudy", ""))
	slices.Sort(got)
	if !slices.Equal(got, []string{"s1", "s3"}) {
		t.Errorf("patient and query scopes: %v", got)
	}
	// A patient scope with a query applies both.
	pq := s.as("patient/ImagingStudy.rs?modality=CT", "p1")
	if got := ids(pq.must(200, "GET", "/ImagingStudy", "")); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("patient scope with query: %v, want [s1]", got)
	}

	// Earlier versions cannot be checked against the query.
	s.admin().must(200, "PUT", "/ImagingStudy/s1", withID(study("1.1", "Patient/p1", "2021-01-05", "CT"), "s1"))
	ct.must(200, "GET", "/ImagingStudy/s1/_history/2", "")
	wantDenied(t, ct.do("GET", "/ImagingStudy/s1/_history/1", ""), "search restriction")
	if h := ct.must(200, "GET", "/ImagingStudy/s1/_history", ""); len(h["entry"].([]any)) != 1 {
		t.Errorf("history under a query scope: %d entries, want the current version only", len(h["entry"].([]any)))
	}

	// A query that does not fit the type grants nothing there.
	wantDenied(t, s.as("system/*.rs?modality=CT", "").do("GET", "/Patient", ""), "cannot be applied to Patient")
}

func TestAuth_Transaction_DeniedEntryWritesNothing(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":` + patient("T1", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"resource":` + study("1.2.3", "urn:uuid:22222222-2222-2222-2222-222222222222", "2021-03-04T10:00:00Z", "CT") + `,"request":{"method":"POST","url":"ImagingStudy"}}]}`
	r := s.as("system/Patient.cruds system/ImagingStudy.rs", "").do("POST", "", tx)
	wantDenied(t, r, `Bundle.entry[1]: the access token's scopes do not grant "c" on ImagingStudy`)
	if got := ids(s.admin().must(200, "GET", "/Patient", "")); len(got) != 0 {
		t.Errorf("patients after a denied transaction: %v", got)
	}

	// A GET entry outside the compartment fails the transaction too, and
	// its writes roll back.
	twoPatients(t, s)
	tx = `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"resource":` + patient("T2", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"request":{"method":"GET","url":"ImagingStudy/s2"}}]}`
	r = s.as("system/Patient.c patient/ImagingStudy.r", "p1").do("POST", "", tx)
	wantDenied(t, r, "outside")
	if got := ids(s.admin().must(200, "GET", "/Patient?identifier=T2", "")); len(got) != 0 {
		t.Errorf("patient T2 written by a failed transaction: %v", got)
	}

	// Granted, the same transaction commits.
	s.as("system/Patient.c system/ImagingStudy.r", "").must(200, "POST", "", tx)
}

func TestAuth_Batch_PerEntry(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	twoPatients(t, s)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	  {"resource":` + patient("B1", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"resource":` + study("5.5", "Patient/p1", "2021-03-04T10:00:00Z", "CT") + `,"request":{"method":"POST","url":"ImagingStudy"}},
	  {"request":{"method":"GET","url":"ImagingStudy/s1"}},
	  {"request":{"method":"GET","url":"ImagingStudy/s2"}},
	  {"request":{"method":"GET","url":"ImagingStudy?_include=ImagingStudy:patient"}},
	  {"request":{"method":"DELETE","url":"ImagingStudy/s1"}}]}`
	b := s.as("system/Patient.c patient/ImagingStudy.rs", "p1").must(200, "POST", "", batch)
	entries := b["entry"].([]any)
	status := func(i int) string {
		return entries[i].(map[string]any)["response"].(map[string]any)["status"].(string)
	}
	for i, want := range []string{"201 Created", "403 Forbidden", "200 OK", "403 Forbidden", "200 OK", "403 Forbidden"} {
		if got := status(i); got != want {
			t.Errorf("entry %d: status %q, want %q", i, got, want)
		}
	}
	// The search entry is narrowed, and its includes of an ungranted type
	// are left out with an outcome.
	set := entries[4].(map[string]any)["resource"].(map[string]any)
	var studies, outcomes int
	for _, e := range set["entry"].([]any) {
		switch e.(map[string]any)["resource"].(map[string]any)["resourceType"] {
		case "ImagingStudy":
			studies++
		case "OperationOutcome":
			outcomes++
		case "Patient":
			t.Error("a Patient included without a Patient grant")
		}
	}
	if studies != 2 || outcomes != 1 {
		t.Errorf("search entry: %d studies, %d outcomes; want 2 and 1", studies, outcomes)
	}
	s.admin().must(200, "GET", "/ImagingStudy/s1", "")
	if got := ids(s.admin().must(200, "GET", "/Patient?identifier=B1", "")); len(got) != 1 {
		t.Errorf("the granted entry was not written: %v", got)
	}
}

// AuditEvents are the server's own record; no scope makes them writable.
func TestAuth_AuditEventIsNeverWritable(t *testing.T) {
	t.Parallel()
	const ae = `{"resourceType":"AuditEvent","id":"a1","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},"recorded":"2024-01-02T03:04:05Z","agent":[{"requestor":true,"who":{"display":"x"}}],"source":{"observer":{"display":"priorflow"}}}`
	for _, authOn := range []bool{true, false} {
		s := startServer(t, rest.Config{Auth: authOn}, asCaller(t), fhir.ImagingStudy(), fhir.Patient(), fhir.AuditEvent()).admin()
		// The server writes AuditEvents through the store.
		res, _, err := mustCodec(t).Parse([]byte(ae))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.store.InTx(context.Background(), func(tx *postgres.Tx) error { _, err := tx.CreateAs(context.Background(), res, "a1"); return err }); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			method, path, body string
			headers            []string
		}{
			{"POST", "/AuditEvent", ae, nil},
			{"POST", "/AuditEvent", ae, []string{"If-None-Exist", "type=110112"}},
			{"PUT", "/AuditEvent/a1", ae, nil},
			{"PUT", "/AuditEvent/a2", strings.Replace(ae, `"a1"`, `"a2"`, 1), nil},
			{"PUT", "/AuditEvent?type=110112", ae, nil},
			{"DELETE", "/AuditEvent/a1", "", nil},
		} {
			if r := s.on(t).do(tc.method, tc.path, tc.body, tc.headers...); r.status != http.StatusMethodNotAllowed {
				t.Errorf("auth %v: %s %s: status %d, want 405: %s", authOn, tc.method, tc.path, r.status, r.body)
			}
		}
		for _, kind := range []string{"transaction", "batch"} {
			b := `{"resourceType":"Bundle","type":"` + kind + `","entry":[
			  {"resource":` + ae + `,"request":{"method":"POST","url":"AuditEvent"}},
			  {"resource":` + ae + `,"request":{"method":"PUT","url":"AuditEvent/a1"}},
			  {"request":{"method":"DELETE","url":"AuditEvent/a1"}}]}`
			r := s.on(t).do("POST", "", b)
			if kind == "transaction" {
				if r.status != http.StatusMethodNotAllowed {
					t.Errorf("auth %v: transaction: status %d, want 405: %s", authOn, r.status, r.body)
				}
				continue
			}
			for i, e := range r.json()["entry"].([]any) {
				if got := e.(map[string]any)["response"].(map[string]any)["status"]; got != "405 Method Not Allowed" {
					t.Errorf("auth %v: batch entry %d: status %v, want 405", authOn, i, got)
				}
			}
		}
		got := ids(s.must(200, "GET", "/AuditEvent", ""))
		if !slices.Equal(got, []string{"a1"}) {
			t.Errorf("auth %v: AuditEvents %v, want [a1] untouched", authOn, got)
		}
		if v := s.must(200, "GET", "/AuditEvent/a1", "")["meta"].(map[string]any)["versionId"]; v != "1" {
			t.Errorf("auth %v: a1 at version %v, want 1", authOn, v)
		}
	}
}

func mustCodec(t *testing.T) *fhir.Codec {
	t.Helper()
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
