package rest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const patientJSON = `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"%s"}],"name":[{"family":"%s","given":["Jane"]}],"birthDate":"1970-05-06","gender":"female"}`

func patient(mrn, family string) string { return fmt.Sprintf(patientJSON, mrn, family) }

func TestCRUD_Lifecycle(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	r := s.do("POST", "/Patient", patient("P1", "Doe"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: status %d: %s", r.status, r.body)
	}
	if got, want := r.header.Get("ETag"), `W/"1"`; got != want {
		t.Errorf("create ETag = %q, want %q", got, want)
	}
	loc := r.header.Get("Location")
	id := r.json()["id"].(string)
	if want := s.url + "/Patient/" + id + "/_history/1"; loc != want {
		t.Errorf("Location = %q, want %q", loc, want)
	}
	if r.header.Get("Last-Modified") == "" {
		t.Error("create: no Last-Modified")
	}
	meta := r.json()["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Errorf("create meta = %v", meta)
	}

	got := s.must(200, "GET", "/Patient/"+id, "")
	if got["id"] != id {
		t.Errorf("read id = %v", got["id"])
	}

	upd := strings.Replace(patient("P1", "Roe"), `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
	r = s.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`)
	if r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("update: status %d ETag %q: %s", r.status, r.header.Get("ETag"), r.body)
	}
	r = s.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`)
	if r.status != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: status %d, want 412: %s", r.status, r.body)
	}

	v1 := s.must(200, "GET", "/Patient/"+id+"/_history/1", "")
	if fam := v1["name"].([]any)[0].(map[string]any)["family"]; fam != "Doe" {
		t.Errorf("vread 1 family = %v, want Doe", fam)
	}
	v2 := s.must(200, "GET", "/Patient/"+id+"/_history/2", "")
	if fam := v2["name"].([]any)[0].(map[string]any)["family"]; fam != "Roe" {
		t.Errorf("vread 2 family = %v, want Roe", fam)
	}
	if r := s.do("GET", "/Patient/"+id+"/_history/9", ""); r.status != 404 {
		t.Errorf("vread 9: status %d, want 404", r.status)
	}
	if r := s.do("GET", "/Patient/"+id, "", "If-None-Match", `W/"2"`); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match current: status %d, want 304", r.status)
	}

	if r := s.do("DELETE", "/Patient/"+id, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: status %d: %s", r.status, r.body)
	}
	r = s.do("GET", "/Patient/"+id, "")
	if r.status != http.StatusGone {
		t.Errorf("read deleted: status %d, want 410", r.status)
	}
	if is := outcome(t, r); is["code"] != "deleted" {
		t.Errorf("read deleted: issue code %v, want deleted", is["code"])
	}
	if r := s.do("DELETE", "/Patient/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("delete again: status %d, want 204 (idempotent)", r.status)
	}
	if r := s.do("GET", "/Patient/"+id+"/_history/3", ""); r.status != http.StatusGone {
		t.Errorf("vread of the deletion: status %d, want 410", r.status)
	}

	hist := s.must(200, "GET", "/Patient/"+id+"/_history", "")
	entries := hist["entry"].([]any)
	if len(entries) != 3 {
		t.Fatalf("history has %d entries, want 3", len(entries))
	}
	var methods []string
	for _, e := range entries {
		methods = append(methods, e.(map[string]any)["request"].(map[string]any)["method"].(string))
	}
	if got, want := strings.Join(methods, ","), "DELETE,PUT,POST"; got != want {
		t.Errorf("history methods = %s, want %s", got, want)
	}
	if _, ok := entries[0].(map[string]any)["resource"]; ok {
		t.Error("history: the deletion entry carries a resource")
	}

	// The deleted resource is gone from search, but its history stays.
	if b := s.must(200, "GET", "/Patient?identifier=urn:oid:1.2.3|P1", ""); len(ids(b)) != 0 {
		t.Errorf("search finds deleted patient: %v", ids(b))
	}
	th := s.must(200, "GET", "/Patient/_history", "")
	if n := len(th["entry"].([]any)); n != 3 {
		t.Errorf("type history has %d entries, want 3", n)
	}
}

func TestUpdate_AsCreateWithClientID(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	body := `{"resourceType":"Endpoint","id":"wado-local","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://localhost/dicomweb"}`
	r := s.do("PUT", "/Endpoint/wado-local", body)
	if r.status != http.StatusCreated {
		t.Fatalf("update as create: status %d: %s", r.status, r.body)
	}
	r = s.do("PUT", "/Endpoint/wado-local", body)
	if r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("second PUT: status %d ETag %s", r.status, r.header.Get("ETag"))
	}
	if r := s.do("PUT", "/Endpoint/wado-local", body, "If-Match", `W/"7"`); r.status != 412 {
		t.Errorf("If-Match 7: status %d, want 412", r.status)
	}
}

func TestPrefer_Return(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	r := s.do("POST", "/Patient", patient("P1", "Doe"), "Prefer", "return=minimal")
	if r.status != 201 || len(r.body) != 0 {
		t.Errorf("return=minimal: status %d, body %q", r.status, r.body)
	}
	r = s.do("POST", "/Patient", patient("P2", "Doe"), "Prefer", "return=OperationOutcome")
	if is := outcome(t, r); r.status != 201 || is["severity"] != "information" {
		t.Errorf("return=OperationOutcome: status %d, issue %v", r.status, is)
	}
}

func TestConditionalCreate(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cond := "identifier=urn:oid:1.2.3|P7"
	r1 := s.do("POST", "/Patient", patient("P7", "Doe"), "If-None-Exist", cond)
	if r1.status != 201 {
		t.Fatalf("first: status %d: %s", r1.status, r1.body)
	}
	r2 := s.do("POST", "/Patient", patient("P7", "Doe"), "If-None-Exist", cond)
	if r2.status != 200 {
		t.Fatalf("second: status %d, want 200: %s", r2.status, r2.body)
	}
	if a, b := r1.json()["id"], r2.json()["id"]; a != b {
		t.Errorf("conditional create returned %v, want the existing %v", b, a)
	}
	s.must(201, "POST", "/Patient", patient("P7", "Other")) // a second match, unconditionally
	if r := s.do("POST", "/Patient", patient("P7", "Doe"), "If-None-Exist", cond); r.status != 412 {
		t.Errorf("two matches: status %d, want 412", r.status)
	}
	if r := s.do("POST", "/Patient", patient("P8", "Doe"), "If-None-Exist", "bogus=1"); r.status != 400 {
		t.Errorf("bad condition: status %d, want 400", r.status)
	}
}

func TestConditionalCreate_ConcurrentCreatesOne(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.do("POST", "/Patient", patient("C1", "Doe"), "If-None-Exist", "identifier=urn:oid:1.2.3|C1").status
		}()
	}
	wg.Wait()
	created := 0
	for _, st := range statuses {
		switch st {
		case 201:
			created++
		case 200:
		default:
			t.Errorf("status %d", st)
		}
	}
	if created != 1 {
		t.Errorf("%d creates, want exactly 1", created)
	}
	if n := len(ids(s.must(200, "GET", "/Patient?identifier=C1", ""))); n != 1 {
		t.Errorf("%d patients stored, want 1", n)
	}
}

func TestConditionalUpdate(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	r := s.do("PUT", "/Patient?identifier=urn:oid:1.2.3|U1", patient("U1", "Doe"))
	if r.status != 201 {
		t.Fatalf("no match: status %d, want 201: %s", r.status, r.body)
	}
	id := r.json()["id"].(string)
	r = s.do("PUT", "/Patient?identifier=urn:oid:1.2.3|U1", patient("U1", "Roe"))
	if r.status != 200 || r.json()["id"] != id || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("one match: status %d id %v ETag %s", r.status, r.json()["id"], r.header.Get("ETag"))
	}
	wrong := strings.Replace(patient("U1", "Roe"), `"Patient",`, `"Patient","id":"other",`, 1)
	if r := s.do("PUT", "/Patient?identifier=urn:oid:1.2.3|U1", wrong); r.status != 400 {
		t.Errorf("id differs from the match: status %d, want 400", r.status)
	}
	s.must(201, "POST", "/Patient", patient("U1", "Twin"))
	if r := s.do("PUT", "/Patient?identifier=urn:oid:1.2.3|U1", patient("U1", "Doe")); r.status != 412 {
		t.Errorf("two matches: status %d, want 412", r.status)
	}
}

func TestUpdate_ConcurrentWritersGetConsecutiveVersions(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	body := strings.Replace(patient("V1", "Doe"), `"Patient",`, `"Patient","id":"v1",`, 1)
	s.must(201, "PUT", "/Patient/v1", body)
	const n = 12
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := s.do("PUT", "/Patient/v1", body); r.status != 200 {
				t.Errorf("PUT: status %d: %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	got := s.must(200, "GET", "/Patient/v1", "")
	if v := got["meta"].(map[string]any)["versionId"]; v != fmt.Sprint(n+1) {
		t.Errorf("versionId = %v, want %d", v, n+1)
	}
	hist := s.must(200, "GET", "/Patient/v1/_history?_count=100", "")
	if m := len(hist["entry"].([]any)); m != n+1 {
		t.Errorf("history has %d versions, want %d", m, n+1)
	}
}
