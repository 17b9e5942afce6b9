package rest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/fhir/search"
)

// Every bad request gets an OperationOutcome with the right status, and
// nothing is stored.
func TestBadInput_OperationOutcomeAndNothingStored(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	existing := s.must(201, "PUT", "/Patient/p1", strings.Replace(patient("P1", "Doe"), `"Patient",`, `"Patient","id":"p1",`, 1))
	_ = existing
	big := `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("x", 2<<20) + `"}]}`
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
		expr                     string
	}{
		{"malformed JSON", "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400, "invalid", ""},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, "invalid", ""},
		{"no resourceType", "POST", "/Patient", `{"gender":"male"}`, nil, 400, "invalid", "resourceType"},
		{"wrong resourceType", "POST", "/Patient", `{"resourceType":"Endpoint","status":"active","connectionType":{"code":"x"},"payloadType":[{"text":"x"}],"address":"http://x"}`, nil, 400, "invalid", "resourceType"},
		{"unknown resourceType", "POST", "/Patient", `{"resourceType":"Spaceship"}`, nil, 400, "invalid", "resourceType"},
		{"id mismatch", "PUT", "/Patient/p1", strings.Replace(patient("P1", "Doe"), `"Patient",`, `"Patient","id":"p2",`, 1), nil, 400, "invalid", "Patient.id"},
		{"no id on update", "PUT", "/Patient/p1", patient("P1", "Doe"), nil, 400, "invalid", "Patient.id"},
		{"invalid code", "POST", "/Patient", `{"resourceType":"Patient","gender":"robot"}`, nil, 422, "invalid", "Patient.gender"},
		{"missing required", "POST", "/ImagingStudy", `{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}}`, nil, 422, "invalid", "ImagingStudy"},
		{"wrong reference type", "POST", "/ImagingStudy", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Endpoint/e1"}}`, nil, 422, "invalid", "ImagingStudy.subject"},
		{"bad date", "POST", "/Patient", `{"resourceType":"Patient","birthDate":"1970-13-45"}`, nil, 422, "invalid", "Patient.birthDate"},
		{"unsupported media type", "POST", "/Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type", "application/fhir+xml"}, 415, "not-supported", ""},
		{"oversize body", "POST", "/Patient", big, nil, 413, "too-costly", ""},
		{"unknown type", "GET", "/Spaceship", "", nil, 404, "not-found", ""},
		{"unknown type create", "POST", "/Spaceship", `{"resourceType":"Spaceship"}`, nil, 404, "not-found", ""},
		{"unknown parameter", "GET", "/Patient?shoe-size=42", "", nil, 400, "invalid", "shoe-size"},
		{"bad modifier", "GET", "/Patient?birthdate:exact=1970", "", nil, 400, "invalid", "birthdate:exact"},
		{"bad date parameter", "GET", "/Patient?birthdate=yesterday", "", nil, 400, "invalid", "birthdate"},
		{"bad _count", "GET", "/Patient?_count=-1", "", nil, 400, "invalid", "_count"},
		{"_summary=true is not claimed", "GET", "/Patient?_summary=true", "", nil, 400, "invalid", "_summary"},
		{"bad _sort", "GET", "/Patient?_sort=shoe", "", nil, 400, "invalid", "_sort"},
		{"bad _include", "GET", "/ImagingStudy?_include=ImagingStudy:shoe", "", nil, 400, "invalid", "_include"},
		{"damaged cursor", "GET", "/Patient?_cursor=!!!", "", nil, 400, "invalid", "_cursor"},
		{"tampered cursor", "GET", "/Patient?_sort=_lastUpdated&_cursor=" + search.EncodeCursor(&search.Cursor{Key: []string{"not a time"}, RID: 1}), "", nil, 400, "invalid", "_cursor"},
		{"cursor of another search", "GET", "/Patient?_cursor=" + search.EncodeCursor(&search.Cursor{Key: []string{"a", "b"}, RID: 1}), "", nil, 400, "invalid", "_cursor"},
		{"Latin-1 in a string parameter", "GET", "/Patient?family:exact=M%FCller", "", nil, 400, "invalid", "family:exact"},
		{"Latin-1 in a token", "GET", "/Patient?identifier=%FC", "", nil, 400, "invalid", "identifier"},
		{"not UTF-8 in an id", "GET", "/Patient?_id=%FF", "", nil, 400, "invalid", "_id"},
		{"NUL in a string parameter", "GET", "/Patient?name=%00", "", nil, 400, "invalid", "name"},
		{"not UTF-8 in a reference URL", "GET", "/ImagingStudy?patient=A://%88", "", nil, 400, "invalid", "patient"},
		{"not UTF-8 in a POST _search", "POST", "/Patient/_search", "family=M%FCller", []string{"Content-Type", "application/x-www-form-urlencoded"}, 400, "invalid", "family"},
		{"SQL in a parameter name", "GET", "/Patient?name%3B%20DROP%20TABLE%20resource=1", "", nil, 400, "invalid", ""},
		{"bad If-Match", "PUT", "/Patient/p1", strings.Replace(patient("P1", "Doe"), `"Patient",`, `"Patient","id":"p1",`, 1), []string{"If-Match", "yesterday"}, 400, "invalid", ""},
		{"method not allowed", "PATCH", "/Patient/p1", `{}`, nil, 405, "not-supported", ""},
		{"xml requested", "GET", "/Patient/p1?_format=xml", "", nil, 406, "invalid", ""},
		{"unknown id", "GET", "/Patient/nobody", "", nil, 404, "not-found", ""},
		{"invalid id", "GET", "/Patient/" + strings.Repeat("a", 65), "", nil, 404, "not-found", ""},
		{"bundle of wrong kind", "POST", "", `{"resourceType":"Bundle","type":"collection"}`, nil, 400, "invalid", "Bundle.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.on(t).do(c.method, c.path, c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %.300s", r.status, c.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("Content-Type %q", ct)
			}
			is := outcome(t, r)
			if is["code"] != c.code {
				t.Errorf("issue code %v, want %s", is["code"], c.code)
			}
			if d, _ := is["diagnostics"].(string); d == "" {
				t.Error("no diagnostics")
			}
			if c.expr != "" {
				expr, _ := is["expression"].([]any)
				if len(expr) == 0 || expr[0] != c.expr {
					t.Errorf("expression %v, want [%s]", expr, c.expr)
				}
			}
		})
	}
	// Nothing but p1 was stored, and p1 is unchanged.
	if got := ids(s.must(200, "GET", "/Patient", "")); len(got) != 1 || got[0] != "p1" {
		t.Errorf("patients after bad input: %v, want [p1]", got)
	}
	if v := s.must(200, "GET", "/Patient/p1", "")["meta"].(map[string]any)["versionId"]; v != "1" {
		t.Errorf("p1 version %v, want 1", v)
	}
	for _, typ := range []string{"ImagingStudy", "Endpoint"} {
		if got := ids(s.must(200, "GET", "/"+typ, "")); len(got) != 0 {
			t.Errorf("%s stored after bad input: %v", typ, got)
		}
	}
}

func TestSearch_LenientIgnoresUnknownAndSaysSo(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.must(201, "POST", "/Patient", patient("L1", "Doe"))
	r := s.do("GET", "/Patient?identifier=L1&shoe-size=42", "", "Prefer", "handling=lenient")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	b := r.json()
	if got := ids(b); len(got) != 1 {
		t.Errorf("matches %v, want 1", got)
	}
	if self := link(b, "self"); strings.Contains(self, "shoe-size") {
		t.Errorf("self link %q keeps the ignored parameter", self)
	}
	entries := b["entry"].([]any)
	last := entries[len(entries)-1].(map[string]any)
	if last["search"].(map[string]any)["mode"] != "outcome" || !strings.Contains(string(mustMarshal(last["resource"])), "shoe-size") {
		t.Errorf("no outcome entry naming the ignored parameter: %v", last)
	}
}

func TestAccept_Negotiation(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for accept, want := range map[string]int{
		"application/fhir+json":            200,
		"application/json":                 200,
		"*/*":                              200,
		"text/html, application/fhir+json": 200,
		"application/fhir+xml":             406,
	} {
		if r := s.do("GET", "/metadata", "", "Accept", accept); r.status != want {
			t.Errorf("Accept %q: status %d, want %d", accept, r.status, want)
		}
	}
}
