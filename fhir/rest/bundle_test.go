package rest_test

import (
	"net/http"
	"strings"
	"testing"
)

const studyTmpl = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%UID%"}],"status":"available","subject":{"reference":"%SUBJ%"},"started":"%STARTED%","series":[{"uid":"%UID%.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"%MOD%"},"instance":[{"uid":"%UID%.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"}}]}]}`

func study(uid, subject, started, modality string) string {
	return strings.NewReplacer("%UID%", uid, "%SUBJ%", subject, "%STARTED%", started, "%MOD%", modality).Replace(studyTmpl)
}

func TestTransaction_ResolvesURNReferences(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":` + study("1.2.3", "urn:uuid:22222222-2222-2222-2222-222222222222", "2021-03-04T10:00:00Z", "CT") + `,
	   "request":{"method":"POST","url":"ImagingStudy"}},
	  {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":` + patient("T1", "Doe") + `,
	   "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:oid:1.2.3|T1"}}]}`
	b := s.must(200, "POST", "", tx)
	if b["type"] != "transaction-response" {
		t.Fatalf("type = %v", b["type"])
	}
	entries := b["entry"].([]any)
	if len(entries) != 2 {
		t.Fatalf("%d response entries, want 2", len(entries))
	}
	// Response entries keep the request order.
	st := entries[0].(map[string]any)
	pt := entries[1].(map[string]any)
	if got := st["response"].(map[string]any)["status"]; got != "201 Created" {
		t.Errorf("study status = %v", got)
	}
	pid := pt["resource"].(map[string]any)["id"].(string)
	subj := st["resource"].(map[string]any)["subject"].(map[string]any)["reference"]
	if subj != "Patient/"+pid {
		t.Errorf("study subject = %v, want Patient/%s", subj, pid)
	}
	if got := ids(s.must(200, "GET", "/ImagingStudy?patient="+pid, "")); len(got) != 1 {
		t.Errorf("patient= finds %v, want the study", got)
	}

	// The same transaction again: the conditional create finds the patient.
	b = s.must(200, "POST", "", tx)
	pt = b["entry"].([]any)[1].(map[string]any)
	if got := pt["response"].(map[string]any)["status"]; got != "200 OK" {
		t.Errorf("conditional create on replay: status %v, want 200 OK", got)
	}
	if got := len(ids(s.must(200, "GET", "/Patient?identifier=T1", ""))); got != 1 {
		t.Errorf("%d patients after replay, want 1", got)
	}
}

func TestTransaction_IsAtomic(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"resource":` + patient("A1", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"resource":` + patient("A2", "Doe") + `,"request":{"method":"PUT","url":"Patient/x1","ifMatch":"W/\"3\""}}]}`
	r := s.do("POST", "", tx)
	if r.status != http.StatusPreconditionFailed {
		t.Fatalf("stale ifMatch in entry 1: status %d, want 412: %s", r.status, r.body)
	}
	if got := len(ids(s.must(200, "GET", "/Patient", ""))); got != 0 {
		t.Errorf("%d patients stored after a failed transaction, want 0", got)
	}
}

func TestTransaction_FailingEntryRollsBackEarlierWrites(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.must(201, "PUT", "/Patient/keep", strings.Replace(patient("K1", "Doe"), `"Patient",`, `"Patient","id":"keep",`, 1))
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"request":{"method":"DELETE","url":"Patient/keep"}},
	  {"resource":` + patient("A1", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"resource":` + study("1.2.9", "urn:uuid:99999999-9999-9999-9999-999999999999", "2021-03-04", "CT") + `,"request":{"method":"POST","url":"ImagingStudy"}}]}`
	r := s.do("POST", "", tx)
	if r.status != 400 {
		t.Fatalf("dangling urn reference: status %d, want 400: %s", r.status, r.body)
	}
	if is := outcome(t, r); !strings.Contains(is["diagnostics"].(string), "entry[2]") {
		t.Errorf("diagnostics %q do not name entry[2]", is["diagnostics"])
	}
	s.must(200, "GET", "/Patient/keep", "")
	if got := len(ids(s.must(200, "GET", "/Patient", ""))); got != 1 {
		t.Errorf("%d patients, want only the kept one", got)
	}
}

func TestBatch_EntriesSucceedOrFailAlone(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	  {"resource":` + patient("B1", "Doe") + `,"request":{"method":"POST","url":"Patient"}},
	  {"request":{"method":"GET","url":"Patient/nope"}},
	  {"resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"POST","url":"Observation"}},
	  {"request":{"method":"GET","url":"Patient?identifier=B1"}}]}`
	b := s.must(200, "POST", "", batch)
	var statuses []string
	for _, e := range b["entry"].([]any) {
		statuses = append(statuses, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	want := []string{"201 Created", "404 Not Found", "404 Not Found", "200 OK"}
	if strings.Join(statuses, ",") != strings.Join(want, ",") {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	search := b["entry"].([]any)[3].(map[string]any)["resource"].(map[string]any)
	if search["type"] != "searchset" || len(search["entry"].([]any)) != 1 {
		t.Errorf("GET search entry = %v", search)
	}
	if _, ok := b["entry"].([]any)[1].(map[string]any)["response"].(map[string]any)["outcome"]; !ok {
		t.Error("failed entry has no outcome")
	}
}

func TestBundle_RejectsOtherTypes(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for _, body := range []string{
		`{"resourceType":"Bundle","type":"searchset"}`,
		patient("X", "Doe"),
	} {
		if r := s.do("POST", "", body); r.status != http.StatusBadRequest {
			t.Errorf("POST / %s: status %d, want 400", body[:30], r.status)
		}
	}
}
