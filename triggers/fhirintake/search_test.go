package fhirintake_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSearch_CareParams searches the care event types by their main R4
// parameters through the REST API.
func TestSearch_CareParams(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	put := func(path, body string) { h.must(201, "PUT", path, body) }
	put("/Patient/p1", patientP1)
	put("/Patient/p2", `{"resourceType":"Patient","id":"p2","identifier":[{"system":"urn:oid:1.2.3","value":"B"}]}`)
	put("/ServiceRequest/o1", `{"resourceType":"ServiceRequest","id":"o1","status":"active","intent":"order","priority":"stat",
	  "identifier":[{"system":"urn:oid:1.2.3.11","value":"ORD-1"}],"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
	  "code":{"coding":[{"system":"http://loinc.org","code":"30745-4"}]},"bodySite":[{"coding":[{"system":"http://snomed.info/sct","code":"69536005"}]}],
	  "authoredOn":"2026-02-27T08:00:00Z","occurrenceDateTime":"2026-03-01T10:00:00Z","requester":{"reference":"Practitioner/dr1"}}`)
	put("/ServiceRequest/o2", `{"resourceType":"ServiceRequest","id":"o2","status":"revoked","intent":"order","subject":{"reference":"Patient/p2"},
	  "basedOn":[{"reference":"ServiceRequest/o1"}],"authoredOn":"2026-01-01"}`)
	put("/Appointment/a1", `{"resourceType":"Appointment","id":"a1","status":"booked","start":"2026-03-01T10:00:00Z","end":"2026-03-01T10:30:00Z",
	  "identifier":[{"system":"urn:oid:1.2.3.9","value":"APT-1"}],"basedOn":[{"reference":"ServiceRequest/o1"}],
	  "serviceType":[{"coding":[{"system":"urn:local","code":"CT"}]}],"specialty":[{"coding":[{"system":"http://snomed.info/sct","code":"394914008"}]}],
	  "appointmentType":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0276","code":"ROUTINE"}]},
	  "participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"},{"actor":{"reference":"Location/ct1"},"status":"accepted"},
	                 {"actor":{"reference":"Practitioner/dr1"},"status":"accepted"}]}`)
	put("/Appointment/a2", `{"resourceType":"Appointment","id":"a2","status":"cancelled","start":"2026-04-01T10:00:00Z","end":"2026-04-01T10:30:00Z",
	  "participant":[{"actor":{"reference":"Patient/p2"},"status":"declined"},{"actor":{"reference":"Location/mr1"},"status":"accepted"}]}`)
	put("/Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"in-progress",
	  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"identifier":[{"system":"urn:oid:1.2.3.10","value":"V-1"}],
	  "subject":{"reference":"Patient/p1"},"period":{"start":"2026-03-01T02:00:00Z"},"serviceProvider":{"reference":"Organization/h1"},
	  "type":[{"coding":[{"system":"http://snomed.info/sct","code":"50849002"}]}],"appointment":[{"reference":"Appointment/a1"}],
	  "location":[{"location":{"reference":"Location/ed"},"status":"active"}]}`)
	put("/Encounter/e2", `{"resourceType":"Encounter","id":"e2","status":"finished",
	  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"Patient/p2"},
	  "period":{"start":"2025-12-01","end":"2025-12-05"},"basedOn":[{"reference":"ServiceRequest/o2"}],
	  "location":[{"location":{"reference":"Location/ward3"},"status":"completed"}]}`)

	cases := []struct {
		query string
		want  []string
	}{
		{"Appointment?patient=p1", []string{"a1"}},
		{"Appointment?patient=Patient/p2", []string{"a2"}},
		{"Appointment?actor=Practitioner/dr1", []string{"a1"}},
		{"Appointment?practitioner=dr1", []string{"a1"}},
		{"Appointment?date=2026-03-01", []string{"a1"}},
		{"Appointment?date=ge2026-03-15", []string{"a2"}},
		{"Appointment?status=booked", []string{"a1"}},
		{"Appointment?identifier=urn:oid:1.2.3.9|APT-1", []string{"a1"}},
		{"Appointment?location=Location/mr1", []string{"a2"}},
		{"Appointment?based-on=ServiceRequest/o1", []string{"a1"}},
		{"Appointment?service-type=CT", []string{"a1"}},
		{"Appointment?appointment-type=ROUTINE", []string{"a1"}},
		{"Appointment?specialty=394914008", []string{"a1"}},
		{"Appointment?_sort=-date", []string{"a2", "a1"}},

		{"Encounter?patient=p1", []string{"e1"}},
		{"Encounter?subject=Patient/p2", []string{"e2"}},
		{"Encounter?class=EMER", []string{"e1"}},
		{"Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP", []string{"e2"}},
		{"Encounter?status=in-progress", []string{"e1"}},
		{"Encounter?date=2025-12", []string{"e2"}},
		{"Encounter?date=2025-12-03", nil}, // eq: the day does not contain the stay
		{"Encounter?date=ge2026-01-01", []string{"e1"}},
		{"Encounter?location=Location/ward3", []string{"e2"}},
		{"Encounter?identifier=V-1", []string{"e1"}},
		{"Encounter?based-on=ServiceRequest/o2", []string{"e2"}},
		{"Encounter?appointment=Appointment/a1", []string{"e1"}},
		{"Encounter?service-provider=Organization/h1", []string{"e1"}},
		{"Encounter?type=50849002", []string{"e1"}},

		{"ServiceRequest?patient=p1", []string{"o1"}},
		{"ServiceRequest?status=revoked", []string{"o2"}},
		{"ServiceRequest?identifier=urn:oid:1.2.3.11|ORD-1", []string{"o1"}},
		{"ServiceRequest?code=http://loinc.org|30745-4", []string{"o1"}},
		{"ServiceRequest?based-on=ServiceRequest/o1", []string{"o2"}},
		{"ServiceRequest?encounter=e1", []string{"o1"}},
		{"ServiceRequest?requester=Practitioner/dr1", []string{"o1"}},
		{"ServiceRequest?body-site=69536005", []string{"o1"}},
		{"ServiceRequest?priority=stat", []string{"o1"}},
		{"ServiceRequest?intent=order&_sort=authored", []string{"o2", "o1"}},
		{"ServiceRequest?occurrence=2026-03-01", []string{"o1"}},
		{"ServiceRequest?authored=lt2026-02-01", []string{"o2"}},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			path, q, _ := cutQuery(c.query)
			got := ids(h.on(t).must(200, "GET", "/"+path+"?"+q, ""))
			if !slices.Contains([]string{"Appointment?_sort=-date", "ServiceRequest?intent=order&_sort=authored"}, c.query) {
				slices.Sort(got)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("location cannot point at a Patient", func(t *testing.T) {
		if status, _ := h.on(t).do("GET", "/Appointment?location=Patient/p1", ""); status != 400 {
			t.Errorf("status %d, want 400", status)
		}
	})
	t.Run("include Appointment:patient", func(t *testing.T) {
		b := h.on(t).must(200, "GET", "/Appointment?_id=a1&_include=Appointment:patient", "")
		var all []string
		for _, e := range b["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			all = append(all, r["resourceType"].(string)+"/"+r["id"].(string))
		}
		slices.Sort(all)
		if diff := cmp.Diff([]string{"Appointment/a1", "Patient/p1"}, all); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
	})
}

func cutQuery(s string) (path, query string, ok bool) {
	path, query, ok = strings.Cut(s, "?")
	v, err := url.ParseQuery(query)
	if err != nil {
		panic(err)
	}
	return path, v.Encode(), ok
}
