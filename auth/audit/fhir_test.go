package audit_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/auth/audit"
)

const studyTmpl = `{"resourceType":"ImagingStudy",%ID%"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%UID%"}],"status":"available","subject":{"reference":"%SUBJ%"},"description":"%DESC%"}`

func study(id, uid, subject, desc string) string {
	idField := ""
	if id != "" {
		idField = `"id":"` + id + `",`
	}
	return strings.NewReplacer("%ID%", idField, "%UID%", uid, "%SUBJ%", subject, "%DESC%", desc).Replace(studyTmpl)
}

func TestFHIR_RecordsEveryInteraction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now().UTC().Add(-time.Second)

	// The backend loads two patients and a study of each.
	e.fhir("backend", "PUT", "/Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"One"}]}`, http.StatusCreated)
	e.fhir("backend", "PUT", "/Patient/p2", `{"resourceType":"Patient","id":"p2","name":[{"family":"Two"}]}`, http.StatusCreated)
	s1 := e.fhir("backend", "POST", "/ImagingStudy", study("", "1.2.3.1", "Patient/p1", "CT head"), http.StatusCreated).json(t)["id"].(string)
	s2 := e.fhir("backend", "POST", "/ImagingStudy", study("", "1.2.3.2", "Patient/p2", "CT chest"), http.StatusCreated, "Prefer", "return=minimal").header.Get("Location")
	s2 = strings.Split(strings.TrimPrefix(s2, e.url+"/fhir/ImagingStudy/"), "/")[0]

	// The clinician reads, searches, updates and deletes.
	e.fhir("clinician", "GET", "/ImagingStudy/"+s1, "", http.StatusOK)
	bundle := e.fhir("clinician", "GET", "/ImagingStudy?_sort=_id", "", http.StatusOK, "X-Request-Id", "req-search").json(t)
	if got := len(bundle["entry"].([]any)); got != 2 {
		t.Fatalf("the search found %d studies, want 2", got)
	}
	e.fhir("clinician", "PUT", "/ImagingStudy/"+s1, study(s1, "1.2.3.1", "Patient/p1", "CT head, revised"), http.StatusOK)
	e.fhir("clinician", "DELETE", "/ImagingStudy/"+s2, "", http.StatusNoContent)
	e.fhir("clinician", "GET", "/ImagingStudy/missing", "", http.StatusNotFound)
	// Refused: a client without ImagingStudy scopes, and a request with no
	// token at all.
	e.fhir("endpoints", "GET", "/ImagingStudy/"+s1, "", http.StatusForbidden)
	e.fhir("", "GET", "/ImagingStudy/"+s1, "", http.StatusUnauthorized)
	// Not an access: the CapabilityStatement.
	e.fhir("", "GET", "/metadata", "", http.StatusOK)
	// Endpoints hold no patient data; reading them is an access all the same.
	e.fhir("endpoints", "GET", "/Endpoint", "", http.StatusOK)
	// A search for a patient that finds nothing still names the patient.
	e.fhir("backend", "GET", "/ImagingStudy?patient=p9", "", http.StatusOK)

	if err := e.stop(); err != nil {
		t.Fatalf("stopping the recorder: %v", err)
	}
	// Everything was written by the time Run returned; the searches below
	// are recorded too, by Record writing for itself after Run stopped.
	if got, want := countAuditEvents(t, e.store), 14; got != want {
		t.Errorf("%d AuditEvents written, want %d", got, want)
	}

	t.Run("patient finds each patient's records", func(t *testing.T) {
		var got1, got2 []string
		for _, ae := range e.auditEvents("patient=Patient/p1") {
			got1 = append(got1, summary(ae))
		}
		for _, ae := range e.auditEvents("patient=p2") {
			got2 = append(got2, summary(ae))
		}
		slices.Sort(got1)
		slices.Sort(got2)
		want1 := []string{
			"create 0 ImagingStudy/" + s1,
			"read 0 ImagingStudy/" + s1,
			"read 4 ImagingStudy/" + s1, // 401
			"read 4 ImagingStudy/" + s1, // 403
			"search-type 0",
			"update 0 ImagingStudy/" + s1,
			"update 0 Patient/p1",
		}
		want2 := []string{
			"create 0 ImagingStudy/" + s2,
			"delete 0 ImagingStudy/" + s2,
			"search-type 0",
			"update 0 Patient/p2",
		}
		if diff := cmp.Diff(want1, got1); diff != "" {
			t.Errorf("Patient/p1 (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want2, got2); diff != "" {
			t.Errorf("Patient/p2 (-want +got):\n%s", diff)
		}
		if got := e.auditEvents("patient=Patient/p9"); len(got) != 1 || subtype(got[0]) != "search-type" {
			t.Errorf("Patient/p9: %d records", len(got))
		}
	})

	t.Run("a search is recorded once per patient with its query", func(t *testing.T) {
		found := e.auditEvents("subtype=search-type&patient=Patient/p1")
		if len(found) != 1 {
			t.Fatalf("%d search records of p1", len(found))
		}
		ae := found[0]
		if got, want := queryOf(t, ae), "/fhir/ImagingStudy?_sort=_id"; got != want {
			t.Errorf("query %q, want %q", got, want)
		}
		if ae["action"] != "E" {
			t.Errorf("action %v, want E", ae["action"])
		}
		var reqID string
		for _, en := range ae["entity"].([]any) {
			if w, _ := en.(map[string]any)["what"].(map[string]any); w != nil {
				if id, _ := w["identifier"].(map[string]any); id != nil {
					reqID, _ = id["value"].(string)
				}
			}
		}
		if reqID != "req-search" {
			t.Errorf("X-Request-Id entity %q", reqID)
		}
	})

	t.Run("failures carry their outcome", func(t *testing.T) {
		var got []string
		for _, ae := range e.auditEvents("outcome=4&subtype=read") {
			got = append(got, ae["outcomeDesc"].(string)[:3])
		}
		slices.Sort(got)
		if diff := cmp.Diff([]string{"401", "403", "404"}, got); diff != "" {
			t.Errorf("failed reads (-want +got):\n%s", diff)
		}
		for _, ae := range e.auditEvents("outcome=4&subtype=read") {
			if strings.HasPrefix(ae["outcomeDesc"].(string), "401") {
				if w := requestor(ae)["who"].(map[string]any); w["display"] != "unauthenticated caller" {
					t.Errorf("401 requestor %v", w)
				}
			}
		}
	})

	t.Run("agent finds the clinician by fhirUser", func(t *testing.T) {
		found := e.auditEvents("agent=Practitioner/pr1")
		var got []string
		for _, ae := range found {
			got = append(got, summary(ae))
			r := requestor(ae)
			if r["who"].(map[string]any)["reference"] != "Practitioner/pr1" {
				t.Errorf("requestor %v", r)
			}
			if !cmp.Equal(r["policy"], []any{"urn:ietf:params:oauth:jti:jti-clinician"}) {
				t.Errorf("policy %v", r["policy"])
			}
			pou := r["purposeOfUse"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
			if pou["system"] != audit.SystemActReason || pou["code"] != "TREAT" {
				t.Errorf("purposeOfUse %v", pou)
			}
		}
		slices.Sort(got)
		want := []string{
			"delete 0 ImagingStudy/" + s2,
			"read 0 ImagingStudy/" + s1,
			"read 4 ImagingStudy/missing",
			"search-type 0",
			"search-type 0",
			"update 0 ImagingStudy/" + s1,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the clinician's records (-want +got):\n%s", diff)
		}
	})

	t.Run("agent-name finds a backend client", func(t *testing.T) {
		// Two Patients, two studies, the search for p9.
		if got := e.auditEvents("agent-name=pacs-sync"); len(got) != 5 {
			t.Errorf("%d records of the backend's accesses, want 5", len(got))
		}
	})

	t.Run("accesses without patient data are recorded without a patient", func(t *testing.T) {
		var got []string
		for _, ae := range e.auditEvents("agent-name=ep-admin") {
			got = append(got, summary(ae)+" "+strings.Join(patientsOf(ae), ","))
		}
		slices.Sort(got)
		want := []string{"read 4 ImagingStudy/" + s1 + " Patient/p1", "search-type 0 "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
	})

	t.Run("date bounds the records", func(t *testing.T) {
		if got := e.auditEvents("date=ge" + start.Format(time.RFC3339) + "&subtype=create"); len(got) != 2 {
			t.Errorf("date=ge: %d creates, want 2", len(got))
		}
		if got := e.auditEvents("date=lt" + start.Format(time.RFC3339)); len(got) != 0 {
			t.Errorf("date=lt: %d records, want 0", len(got))
		}
	})

	if logs := e.logs.String(); strings.Contains(logs, "p1") || strings.Contains(logs, "Patient/") {
		t.Errorf("the recorder's log names a patient:\n%s", logs)
	}
}

func TestFHIR_NeverRecordsAccessTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fhir("backend", "PUT", "/Patient/p1", `{"resourceType":"Patient","id":"p1"}`, http.StatusCreated)
	e.do("backend", "GET", "/fhir/Patient?_id=p1&access_token=qs-SECRET-1", "", nil, "Authorization", "Bearer hdr-SECRET-2")
	e.do("backend", "POST", "/fhir/Patient/_search?access_token=qs-SECRET-3", "application/x-www-form-urlencoded",
		[]byte("_id=p1&access_token=form-SECRET-4"))
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	found := e.auditEvents("patient=Patient/p1&subtype=search-type")
	if len(found) != 2 {
		t.Fatalf("%d search records, want 2", len(found))
	}
	for _, ae := range found {
		b := mustJSON(ae)
		if strings.Contains(b, "SECRET") {
			t.Errorf("a record holds a token: %s", b)
		}
		if q := queryOf(t, ae); strings.Contains(q, "SECRET") || !strings.Contains(q, "_id=p1") {
			t.Errorf("query %q", q)
		}
	}
}

func TestFHIR_Transaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},
	   "request":{"method":"POST","url":"Patient"}},
	  {"resource":` + study("", "1.2.9", "urn:uuid:22222222-2222-2222-2222-222222222222", "MR") + `,
	   "request":{"method":"POST","url":"ImagingStudy"}}]}`
	b := e.fhir("backend", "POST", "", tx, http.StatusOK).json(t)
	loc := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	pid := strings.Split(loc, "/")[1]
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	found := e.auditEvents("patient=Patient/" + pid)
	if len(found) != 1 || subtype(found[0]) != "transaction" || found[0]["action"] != "E" {
		t.Fatalf("records of the transaction's patient: %v", found)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
