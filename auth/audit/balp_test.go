package audit

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
)

var (
	t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

	backend = &auth.Principal{Issuer: "https://issuer.example.org", Subject: "pacs-sync", ClientID: "pacs-sync",
		TokenID: "jti-1", PurposeOfUse: []string{"TREAT"}}
	clinician = &auth.Principal{Issuer: "https://issuer.example.org", Subject: "u-42", ClientID: "viewer",
		FHIRUser: "Practitioner/pr1", TokenID: "jti-2", PurposeOfUse: []string{"TREAT", "not a\tcode"}}
)

// parse builds ev's records and parses each with the FHIR codec, as the
// writer does: every record we build must be valid R4.
func parse(t *testing.T, ev *Event, minimal bool) []map[string]any {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.AuditEvent())
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, ae := range build(ev, "Priorflow test", minimal) {
		b, err := json.Marshal(ae)
		if err != nil {
			t.Fatal(err)
		}
		msg, typ, err := codec.Parse(b)
		if err != nil {
			t.Fatalf("the codec refuses %s: %v", b, err)
		}
		if typ != "AuditEvent" {
			t.Fatalf("type %s", typ)
		}
		printed, err := codec.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(printed, &m); err != nil {
			t.Fatal(err)
		}
		// The search parameters find what we mean them to.
		m["_agent"] = reg.Type("AuditEvent").Param("agent").Values(msg)
		m["_patient"] = reg.Type("AuditEvent").Param("patient").Values(msg)
		out = append(out, m)
	}
	return out
}

func TestBuild_OneRecordPerPatient(t *testing.T) {
	ev := &Event{Interaction: SearchType, ResourceType: "ImagingStudy", Query: "/fhir/ImagingStudy?modality=CT",
		Patients: []string{"Patient/p1", "Patient/p2", "Patient/p1/_history/3", "Group/g1"}, Status: 200,
		Principal: backend, ClientAddress: "192.0.2.7", ServerHost: "fhir.example.org", RequestID: "req-1", Start: t0, Recorded: t0.Add(time.Second)}
	recs := parse(t, ev, false)
	if got, want := len(recs), 2; got != want {
		t.Fatalf("%d records, want %d (one per distinct patient)", got, want)
	}
	for i, want := range []string{"p1", "p2"} {
		if diff := cmp.Diff([]fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: want}}}, recs[i]["_patient"]); diff != "" {
			t.Errorf("record %d patient (-want +got):\n%s", i, diff)
		}
	}
	r := recs[0]
	if got, want := r["action"], "E"; got != want {
		t.Errorf("action %v, want %v", got, want)
	}
	if got, want := r["recorded"], "2024-05-06T07:08:10.123456Z"; got != want {
		t.Errorf("recorded %v, want %v", got, want)
	}
	sub := r["subtype"].([]any)[0].(map[string]any)
	if sub["system"] != SystemRESTInteraction || sub["code"] != "search-type" {
		t.Errorf("subtype %v", sub)
	}
	var query map[string]any
	for _, e := range r["entity"].([]any) {
		if em := e.(map[string]any); roleCode(em) == "24" {
			query = em
		}
	}
	if query == nil {
		t.Fatalf("no query entity in %v", r["entity"])
	}
	if q, _ := base64.StdEncoding.DecodeString(query["query"].(string)); string(q) != ev.Query {
		t.Errorf("query %q, want %q", q, ev.Query)
	}
	// A backend service is one agent, the requestor, with the jti as policy.
	agents := r["agent"].([]any)
	if got, want := len(agents), 2; got != want {
		t.Fatalf("%d agents, want %d", got, want)
	}
	client := agents[0].(map[string]any)
	if client["requestor"] != true || client["name"] != "pacs-sync" {
		t.Errorf("client agent %v", client)
	}
	if got, want := client["policy"], []any{"urn:ietf:params:oauth:jti:jti-1"}; !cmp.Equal(got, want) {
		t.Errorf("policy %v, want %v", got, want)
	}
	if got := client["who"].(map[string]any)["identifier"]; !cmp.Equal(got, map[string]any{"system": "https://issuer.example.org", "value": "pacs-sync"}) {
		t.Errorf("who %v", got)
	}
	if got := client["network"]; !cmp.Equal(got, map[string]any{"address": "192.0.2.7", "type": "2"}) {
		t.Errorf("network %v", got)
	}
}

func TestBuild_UserIsRequestorWithFHIRUserReference(t *testing.T) {
	ev := &Event{Interaction: Read, ResourceType: "ImagingStudy", ResourceID: "s1", VersionID: "2",
		Patients: []string{"Patient/p1"}, Status: 200, Principal: clinician, Recorded: t0}
	r := parse(t, ev, false)[0]
	if diff := cmp.Diff([]fhir.Value{{Ref: fhir.Ref{Type: "Practitioner", ID: "pr1"}}}, r["_agent"]); diff != "" {
		t.Errorf("agent values (-want +got):\n%s", diff)
	}
	user := r["agent"].([]any)[0].(map[string]any)
	if user["requestor"] != true || user["name"] != "Practitioner/pr1" {
		t.Errorf("user agent %v", user)
	}
	if got := user["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]; got != "IRCP" {
		t.Errorf("user type %v, want IRCP for a read", got)
	}
	// The code with a tab is left out, the valid one kept.
	if got := user["purposeOfUse"].([]any); len(got) != 1 {
		t.Errorf("purposeOfUse %v", got)
	}
	client := r["agent"].([]any)[1].(map[string]any)
	if client["requestor"] != false {
		t.Errorf("client is not the requestor when a user is: %v", client)
	}
	// A read flows from the server (source) to the client (destination).
	if got := client["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]; got != "110152" {
		t.Errorf("client role %v, want 110152", got)
	}
	var data string
	for _, e := range r["entity"].([]any) {
		if em := e.(map[string]any); roleCode(em) == "4" {
			data = em["what"].(map[string]any)["reference"].(string)
		}
	}
	if got, want := data, "ImagingStudy/s1/_history/2"; got != want {
		t.Errorf("data entity %q, want %q", got, want)
	}
}

func TestBuild_Outcomes(t *testing.T) {
	for status, want := range map[int]string{200: "0", 201: "0", 204: "0", 401: "4", 403: "4", 404: "4", 500: "8", 503: "8"} {
		ev := &Event{Interaction: Read, ResourceType: "Patient", ResourceID: "p1", Patients: []string{"Patient/p1"}, Status: status, Recorded: t0}
		r := parse(t, ev, false)[0]
		if r["outcome"] != want {
			t.Errorf("status %d: outcome %v, want %v", status, r["outcome"], want)
		}
		if desc, _ := r["outcomeDesc"].(string); !strings.HasPrefix(desc, itoa(status)+" ") {
			t.Errorf("status %d: outcomeDesc %q", status, desc)
		}
	}
}

func TestBuild_DICOMStudiesGoWithTheirPatient(t *testing.T) {
	ev := &Event{Interaction: QIDORS, Query: "/dicomweb/studies?PatientID=X", Status: 200, Principal: backend, Recorded: t0,
		Studies: []Study{{"1.2.3", "Patient/p1"}, {"1.2.4", "Patient/p2"}, {"1.2.5", "Patient/p1"}, {"1.2.6", ""}}}
	recs := parse(t, ev, false)
	if got, want := len(recs), 3; got != want {
		t.Fatalf("%d records, want %d (p1, p2, and the study without patient)", got, want)
	}
	studies := func(r map[string]any) []string {
		var out []string
		for _, e := range r["entity"].([]any) {
			w, _ := e.(map[string]any)["what"].(map[string]any)
			if id, ok := w["identifier"].(map[string]any); ok && id["system"] == SystemDICOMUID {
				out = append(out, id["value"].(string))
			}
		}
		return out
	}
	for i, want := range [][]string{{"urn:oid:1.2.3", "urn:oid:1.2.5"}, {"urn:oid:1.2.4"}, {"urn:oid:1.2.6"}} {
		if diff := cmp.Diff(want, studies(recs[i])); diff != "" {
			t.Errorf("record %d studies (-want +got):\n%s", i, diff)
		}
	}
	if got := recs[0]["type"].(map[string]any)["code"]; got != "110112" {
		t.Errorf("type %v, want DCM 110112 Query", got)
	}
	wado := parse(t, &Event{Interaction: WADORS, Studies: []Study{{"1.2.3", "Patient/p1"}}, Status: 200, Recorded: t0}, false)[0]
	if got := wado["type"].(map[string]any)["code"]; got != "110103" || wado["action"] != "R" {
		t.Errorf("WADO-RS type %v action %v, want 110103 R", got, wado["action"])
	}
}

func TestBuild_MinimalLeavesOutCallerText(t *testing.T) {
	ev := &Event{Interaction: SearchType, Query: "/fhir/Patient?name=x", Status: 200, Principal: clinician, RequestID: "r", Recorded: t0}
	r := parse(t, ev, true)[0]
	b, _ := json.Marshal(r)
	for _, s := range []string{"name=x", "jti-2", "TREAT"} {
		if strings.Contains(string(b), s) {
			t.Errorf("minimal record holds %q: %s", s, b)
		}
	}
}

func TestBuild_OddCallerValuesStayValid(t *testing.T) {
	p := &auth.Principal{Issuer: "https://issuer.example.org", Subject: "  ", ClientID: "app with spaces", FHIRUser: "Person/x",
		TokenID: "has space", PurposeOfUse: []string{"", " TREAT"}}
	ev := &Event{Interaction: Create, ResourceType: "Bogus", ResourceID: "bad id!", Status: 201, Principal: p,
		RequestID: strings.Repeat("é", 300), ClientAddress: "", Recorded: t0, OutcomeDesc: "\xff"}
	parse(t, ev, false)
	parse(t, &Event{Interaction: Read, Status: 200, Recorded: t0}, false) // authorization off
	parse(t, &Event{Interaction: Read, Status: 200, Recorded: t0, Principal: &auth.Principal{}}, false)
}

func TestPatientRef(t *testing.T) {
	for in, want := range map[string]string{
		"Patient/p1":            "Patient/p1",
		"Patient/p1/_history/2": "Patient/p1",
		"https://other.example.org/fhir/Patient/p1":     "https://other.example.org/fhir/Patient/p1",
		"https://other.example.org/fhir/Patient/p1?x=1": "",
		"Group/g1": "",
		"urn:uuid:0b7c1e9f-8d3e-4e0a-9f1a-3b7c2d1e0f4a": "",
		"Patient/":          "",
		"Patient/has space": "",
		"p1":                "",
	} {
		if got := patientRef(in); got != want {
			t.Errorf("patientRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWhoRef(t *testing.T) {
	for in, want := range map[string]string{
		"Practitioner/pr1": "Practitioner/pr1",
		"https://ehr.example.org/fhir/Practitioner/pr1": "https://ehr.example.org/fhir/Practitioner/pr1",
		"Person/x":                  "",
		"Practitioner/pr1/extra":    "",
		"Patient/p1":                "Patient/p1",
		"https://ehr.example.org/x": "",
	} {
		if got := whoRef(in); got != want {
			t.Errorf("whoRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func roleCode(entity map[string]any) any {
	role, _ := entity["role"].(map[string]any)
	return role["code"]
}
