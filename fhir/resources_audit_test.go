package fhir_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
)

func TestAuditEvent_Values(t *testing.T) {
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.AuditEvent())
	if err != nil {
		t.Fatal(err)
	}
	// A patient reading their own record through an app, and a backend
	// client known by an identifier only.
	const body = `{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},
		"action":"R","recorded":"2024-05-06T07:08:09Z","outcome":"0",
		"agent":[{"who":{"reference":"Patient/p1"},"name":"Patient/p1","requestor":true},
		         {"who":{"identifier":{"system":"https://issuer.example.org","value":"viewer"}},"name":"viewer","requestor":false}],
		"source":{"observer":{"display":"Priorflow"}},
		"entity":[{"what":{"reference":"Patient/p1"}},{"what":{"reference":"ImagingStudy/s1/_history/2"}}]}`
	res, _, err := codec.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	rt := reg.Type("AuditEvent")
	for _, c := range []struct {
		param string
		want  []fhir.Value
	}{
		// R4 AuditEvent-patient: a Patient agent or entity, once.
		{"patient", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p1"}}}},
		// agent matches references only: the identifier-only client is
		// not among its values …
		{"agent", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p1"}}}},
		// … and is found by agent-name.
		{"agent-name", []fhir.Value{{String: "Patient/p1"}, {String: "viewer"}}},
		{"entity", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p1"}}, {Ref: fhir.Ref{Type: "ImagingStudy", ID: "s1"}}}},
	} {
		if diff := cmp.Diff(c.want, rt.Param(c.param).Values(res)); diff != "" {
			t.Errorf("%s values (-want +got):\n%s", c.param, diff)
		}
	}
}
