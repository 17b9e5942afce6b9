package fhir_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
)

func newCodec(t testing.TB) *fhir.Codec {
	t.Helper()
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func newRegistry(t testing.TB, types ...*fhir.ResourceType) *fhir.Registry {
	t.Helper()
	if len(types) == 0 {
		types = []*fhir.ResourceType{fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint()}
	}
	reg, err := fhir.NewRegistry(types...)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return reg
}

func mustParse(t testing.TB, c *fhir.Codec, body []byte) (proto.Message, string) {
	t.Helper()
	res, typ, err := c.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return res, typ
}

// values extracts every parameter of the resource's type, by name; empty
// parameters are left out.
func values(t testing.TB, reg *fhir.Registry, res proto.Message, typ string) map[string][]fhir.Value {
	t.Helper()
	rt := reg.Type(typ)
	if rt == nil {
		t.Fatalf("type %s is not registered", typ)
	}
	out := map[string][]fhir.Value{}
	for _, p := range rt.Params {
		if vs := p.Values(res); len(vs) > 0 {
			out[p.Name] = vs
		}
	}
	return out
}

func tok(system, code string) fhir.Value {
	return fhir.Value{Token: fhir.Token{System: system, Code: code}}
}
func str(s string) fhir.Value       { return fhir.Value{String: s} }
func ref(typ, id string) fhir.Value { return fhir.Value{Ref: fhir.Ref{Type: typ, ID: id}} }
func date(start, end time.Time) fhir.Value {
	return fhir.Value{Date: fhir.DateRange{Start: start, End: end}}
}
func utc(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
}

func TestSearchParam_Values_ImagingStudy(t *testing.T) {
	const (
		dcm   = "http://dicom.nema.org/resources/ontology/DCM"
		sct   = "http://snomed.info/sct"
		dicom = "urn:dicom:uid"
		rfc   = "urn:ietf:rfc:3986"
		ctImg = "urn:oid:1.2.840.10008.5.1.4.1.1.2"
	)
	tests := []struct {
		file string
		want map[string][]fhir.Value
	}{
		{"ImagingStudy-example.json", map[string][]fhir.Value{
			"identifier":  {tok(dicom, "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045")},
			"patient":     {ref("Patient", "dicom")},
			"subject":     {ref("Patient", "dicom")},
			"started":     {date(utc(2011, 1, 1, 8, 1, 20, 0), utc(2011, 1, 1, 8, 1, 21, 0))},
			"modality":    {tok(dcm, "CT")},
			"bodysite":    {tok(sct, "67734004")},
			"series":      {tok("", "2.16.124.113543.6003.2588828330.45298.17418.2723805630")},
			"instance":    {tok("", "2.16.124.113543.6003.189642796.63084.16748.2599092903")},
			"dicom-class": {tok(rfc, ctImg)},
			"status":      {tok("", "available")},
		}},
		{"ImagingStudy-example-xr.json", map[string][]fhir.Value{
			"identifier": {
				tok(dicom, "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430046"),
				tok("", "W12342398"),
				tok("", "55551234"),
			},
			"patient":  {ref("Patient", "dicom")},
			"subject":  {ref("Patient", "dicom")},
			"started":  {date(utc(2017, 1, 1, 8, 1, 20, 0), utc(2017, 1, 1, 8, 1, 21, 0))},
			"modality": {tok(dcm, "DX")}, // series.modality, not the study's ModalitiesInStudy
			"bodysite": {tok(sct, "T-15460")},
			"basedon":  {ref("ServiceRequest", "example")},
			"series":   {tok("", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1")},
			"instance": {
				tok("", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1"),
				tok("", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.2"),
			},
			"dicom-class": {tok(rfc, ctImg)}, // two instances, one class: deduplicated
			"status":      {tok("", "available")},
			"endpoint":    {ref("Endpoint", "example-wadors")}, // study and series endpoint: deduplicated
			"encounter":   {ref("Encounter", "example")},
			"interpreter": {ref("Practitioner", "example")},
			"performer":   {ref("Practitioner", "example")},
			"reason":      {tok(sct, "357009")},
			"referrer":    {ref("Practitioner", "example")},
		}},
	}
	c, reg := newCodec(t), newRegistry(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, typ := mustParse(t, c, fhirtest.Example(t, tt.file))
			if diff := cmp.Diff(tt.want, values(t, reg, res, typ)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("every parameter is covered", func(t *testing.T) {
		seen := map[string]bool{}
		for _, tt := range tests {
			for name := range tt.want {
				seen[name] = true
			}
		}
		for _, p := range reg.Type("ImagingStudy").Params {
			if !seen[p.Name] {
				t.Errorf("no example checks %s", p.Name)
			}
		}
		if got, want := len(reg.Type("ImagingStudy").Params), 17; got != want {
			t.Errorf("ImagingStudy has %d parameters, want the %d of R4", got, want)
		}
	})
}

func TestSearchParam_Values_Patient(t *testing.T) {
	tests := []struct {
		file string
		want map[string][]fhir.Value
	}{
		{"Patient-example.json", map[string][]fhir.Value{
			"identifier": {tok("urn:oid:1.2.36.146.595.217.0.1", "12345")},
			"name":       {str("Chalmers"), str("Peter"), str("James"), str("Jim"), str("Windsor")},
			"family":     {str("Chalmers"), str("Windsor")},
			"given":      {str("Peter"), str("James"), str("Jim")},
			"birthdate":  {date(utc(1974, 12, 25, 0, 0, 0, 0), utc(1974, 12, 26, 0, 0, 0, 0))},
			"gender":     {tok("", "male")},
			"active":     {tok("", "true")},
		}},
		{"Patient-mom.json", map[string][]fhir.Value{
			"identifier": {tok("http://hl7.org/fhir/sid/us-ssn", "444222222")},
			"name":       {str("Everywoman"), str("Eve")},
			"family":     {str("Everywoman")},
			"given":      {str("Eve")},
			"birthdate":  {date(utc(1973, 5, 31, 0, 0, 0, 0), utc(1973, 6, 1, 0, 0, 0, 0))},
			"gender":     {tok("", "female")},
			"active":     {tok("", "true")},
			"link":       {ref("RelatedPerson", "newborn-mom")},
		}},
		{"Patient-pat1.json", map[string][]fhir.Value{
			"identifier": {tok("urn:oid:0.1.2.3.4.5.6.7", "654321")},
			"name":       {str("Donald"), str("Duck")},
			"family":     {str("Donald")},
			"given":      {str("Duck")},
			"gender":     {tok("", "male")},
			"active":     {tok("", "true")},
			"link":       {ref("Patient", "pat2")},
		}},
		{"Patient-glossy.json", map[string][]fhir.Value{
			"identifier": {tok("http://www.goodhealth.org/identifiers/mrn", "123456")},
			"name":       {str("Levin"), str("Henry"), str("The 7th")}, // suffix included
			"family":     {str("Levin")},
			"given":      {str("Henry")},
			"birthdate":  {date(utc(1932, 9, 24, 0, 0, 0, 0), utc(1932, 9, 25, 0, 0, 0, 0))},
			"gender":     {tok("", "male")},
			"active":     {tok("", "true")},
		}},
	}
	c, reg := newCodec(t), newRegistry(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, typ := mustParse(t, c, fhirtest.Example(t, tt.file))
			if diff := cmp.Diff(tt.want, values(t, reg, res, typ)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSearchParam_Values_Endpoint(t *testing.T) {
	const ct = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
	tests := []struct {
		file string
		want map[string][]fhir.Value
	}{
		{"Endpoint-example.json", map[string][]fhir.Value{
			"identifier":      {tok("http://example.org/enpoint-identifier", "epcp12")},
			"status":          {tok("", "active")},
			"connection-type": {tok(ct, "hl7-fhir-rest")},
			"name":            {str("Health Intersections CarePlan Hub")},
			"organization":    {ref("Organization", "hl7")},
		}},
		{"Endpoint-example-wadors.json", map[string][]fhir.Value{
			"status":          {tok("", "active")},
			"connection-type": {tok(ct, "dicom-wado-rs")},
			"name":            {str("PACS Hospital DICOM WADO-RS endpoint")},
		}},
		{"Endpoint-direct-endpoint.json", map[string][]fhir.Value{
			"status":          {tok("", "active")},
			"connection-type": {tok("", "direct-project")}, // a Coding without system
			"name":            {str("MARTIN SMIETANKA")},
			"organization":    {ref("Organization", "299")},
		}},
	}
	c, reg := newCodec(t), newRegistry(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, typ := mustParse(t, c, fhirtest.Example(t, tt.file))
			if diff := cmp.Diff(tt.want, values(t, reg, res, typ)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

// Every official example of the served types parses, round trips, and
// yields well-formed index values.
func TestSearchParam_Values_AllExamples(t *testing.T) {
	c, reg := newCodec(t), newRegistry(t)
	for _, pattern := range []string{"ImagingStudy-*.json", "Patient-*.json", "Endpoint-*.json"} {
		for _, name := range fhirtest.Examples(t, pattern) {
			t.Run(name, func(t *testing.T) {
				res, typ := mustParse(t, c, fhirtest.Example(t, name))
				if got := fhir.ID(res); !fhir.ValidID(got) {
					t.Errorf("ID=%q, want a valid id", got)
				}
				for _, p := range reg.Type(typ).Params {
					for _, v := range p.Values(res) {
						checkValue(t, p, v)
					}
				}
				b, err := c.Marshal(res)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				again, _ := mustParse(t, c, b)
				if diff := cmp.Diff(res, again, protocmp.Transform()); diff != "" {
					t.Errorf("round trip (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func checkValue(t *testing.T, p *fhir.SearchParam, v fhir.Value) {
	t.Helper()
	switch p.Type {
	case fhir.ParamToken:
		if v.Token.Code == "" {
			t.Errorf("%s: token without code %+v", p.Name, v.Token)
		}
	case fhir.ParamString:
		if v.String == "" {
			t.Errorf("%s: empty string", p.Name)
		}
	case fhir.ParamDate:
		if !v.Date.Start.Before(v.Date.End) {
			t.Errorf("%s: empty range [%v, %v)", p.Name, v.Date.Start, v.Date.End)
		}
	case fhir.ParamReference:
		if v.Ref.URL == "" && (!fhir.IsResourceType(v.Ref.Type) || !fhir.ValidID(v.Ref.ID)) {
			t.Errorf("%s: bad reference %+v", p.Name, v.Ref)
		}
		if len(p.Targets) > 0 && v.Ref.Type != "" && !contains(p.Targets, v.Ref.Type) {
			t.Errorf("%s: reference %+v outside targets %v", p.Name, v.Ref, p.Targets)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

const minimalStudy = `"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"}`

// study returns an ImagingStudy with the given extra JSON members.
func study(members string) []byte {
	if members == "" {
		return []byte("{" + minimalStudy + "}")
	}
	return []byte("{" + minimalStudy + "," + members + "}")
}

func TestSearchParam_Values_Edges(t *testing.T) {
	plus1 := time.FixedZone("", 3600)
	tests := []struct {
		name  string
		body  []byte
		param string
		want  []fhir.Value
	}{
		{"status entered-in-error keeps its dashes", []byte(`{"resourceType":"ImagingStudy","status":"entered-in-error","subject":{"reference":"Patient/p1"}}`),
			"status", []fhir.Value{tok("", "entered-in-error")}},
		{"started at year precision", study(`"started":"2021"`),
			"started", []fhir.Value{date(utc(2021, 1, 1, 0, 0, 0, 0), utc(2022, 1, 1, 0, 0, 0, 0))}},
		{"started at month precision", study(`"started":"2021-02"`),
			"started", []fhir.Value{date(utc(2021, 2, 1, 0, 0, 0, 0), utc(2021, 3, 1, 0, 0, 0, 0))}},
		{"started at day precision", study(`"started":"2021-02-28"`),
			"started", []fhir.Value{date(utc(2021, 2, 28, 0, 0, 0, 0), utc(2021, 3, 1, 0, 0, 0, 0))}},
		{"started at second precision in Z", study(`"started":"2021-02-28T23:59:59Z"`),
			"started", []fhir.Value{date(utc(2021, 2, 28, 23, 59, 59, 0), utc(2021, 3, 1, 0, 0, 0, 0))}},
		{"started with an offset", study(`"started":"2021-02-28T10:00:00+01:00"`),
			"started", []fhir.Value{date(time.Date(2021, 2, 28, 10, 0, 0, 0, plus1), time.Date(2021, 2, 28, 10, 0, 1, 0, plus1))}},
		{"started with milliseconds", study(`"started":"2021-02-28T10:00:00.123Z"`),
			"started", []fhir.Value{date(utc(2021, 2, 28, 10, 0, 0, 123e6), utc(2021, 2, 28, 10, 0, 0, 124e6))}},
		{"started with microseconds", study(`"started":"2021-02-28T10:00:00.123456Z"`),
			"started", []fhir.Value{date(utc(2021, 2, 28, 10, 0, 0, 123456e3), utc(2021, 2, 28, 10, 0, 0, 123457e3))}},
		{"subject Device is no patient", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Device/d1"}}`),
			"patient", nil},
		{"subject Device is a subject", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Device/d1"}}`),
			"subject", []fhir.Value{ref("Device", "d1")}},
		{"subject Group", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Group/g-1.2"}}`),
			"subject", []fhir.Value{ref("Group", "g-1.2")}},
		{"reference with history", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1/_history/3"}}`),
			"patient", []fhir.Value{ref("Patient", "p1")}},
		{"absolute reference keeps the URL", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"https://other.example/fhir/Patient/p9"}}`),
			"patient", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p9", URL: "https://other.example/fhir/Patient/p9"}}}},
		{"absolute reference with history", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"https://other.example/fhir/Patient/p9/_history/2"}}`),
			"subject", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p9", URL: "https://other.example/fhir/Patient/p9/_history/2"}}}},
		{"urn reference is a URL", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"urn:uuid:a5e3c2d0-3f4b-4b55-9c8e-2d3c1f0e9a71"}}`),
			"subject", []fhir.Value{{Ref: fhir.Ref{URL: "urn:uuid:a5e3c2d0-3f4b-4b55-9c8e-2d3c1f0e9a71"}}}},
		{"contained reference is not indexed", []byte(`{"resourceType":"ImagingStudy","status":"available","contained":[{"resourceType":"Patient","id":"c1"}],"subject":{"reference":"#c1"}}`),
			"subject", nil},
		{"logical reference is not indexed", []byte(`{"resourceType":"ImagingStudy","status":"available","subject":{"identifier":{"system":"urn:mrn","value":"1"}}}`),
			"subject", nil},
		{"interpreter PractitionerRole", study(`"interpreter":[{"reference":"PractitionerRole/r1"},{"reference":"Practitioner/x"}]`),
			"interpreter", []fhir.Value{ref("PractitionerRole", "r1"), ref("Practitioner", "x")}},
		{"basedOn of several kinds", study(`"basedOn":[{"reference":"ServiceRequest/s1"},{"reference":"Appointment/a1"},{"reference":"Task/t1"}]`),
			"basedon", []fhir.Value{ref("ServiceRequest", "s1"), ref("Appointment", "a1"), ref("Task", "t1")}},
		{"series endpoint only", study(`"series":[{"uid":"1.2","modality":{"code":"MR"},"endpoint":[{"reference":"Endpoint/e2"}]}]`),
			"endpoint", []fhir.Value{ref("Endpoint", "e2")}},
		{"identifier without value is not indexed", study(`"identifier":[{"system":"urn:dicom:uid"},{"value":"A1"}]`),
			"identifier", []fhir.Value{tok("", "A1")}},
		{"reason codings of one concept", study(`"reasonCode":[{"coding":[{"system":"s","code":"1"},{"system":"t","code":"2"},{"display":"no code"}],"text":"free text"}]`),
			"reason", []fhir.Value{tok("s", "1"), tok("t", "2")}},
		{"unicode and quotes are stored as they are", study(`"identifier":[{"system":"urn:x","value":"Ü'; DROP TABLE x;--"}]`),
			"identifier", []fhir.Value{tok("urn:x", "Ü'; DROP TABLE x;--")}},
	}
	c, reg := newCodec(t), newRegistry(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := mustParse(t, c, tt.body)
			got := reg.Type("ImagingStudy").Param(tt.param).Values(res)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s values (-want +got):\n%s", tt.param, diff)
			}
		})
	}
}

func TestSearchParam_Values_PatientEdges(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		param string
		want  []fhir.Value
	}{
		{"inactive is a token", `{"resourceType":"Patient","active":false}`, "active", []fhir.Value{tok("", "false")}},
		{"absent active is not indexed", `{"resourceType":"Patient"}`, "active", nil},
		{"gender other", `{"resourceType":"Patient","gender":"other"}`, "gender", []fhir.Value{tok("", "other")}},
		{"birth year", `{"resourceType":"Patient","birthDate":"1970"}`, "birthdate", []fhir.Value{date(utc(1970, 1, 1, 0, 0, 0, 0), utc(1971, 1, 1, 0, 0, 0, 0))}},
		{"birth month", `{"resourceType":"Patient","birthDate":"1970-12"}`, "birthdate", []fhir.Value{date(utc(1970, 12, 1, 0, 0, 0, 0), utc(1971, 1, 1, 0, 0, 0, 0))}},
		{"name text prefix and suffix", `{"resourceType":"Patient","name":[{"text":"Dr. Jane Doe Jr.","family":"Doe","given":["Jane"],"prefix":["Dr."],"suffix":["Jr."]}]}`,
			"name", []fhir.Value{str("Dr. Jane Doe Jr."), str("Doe"), str("Jane"), str("Dr."), str("Jr.")}},
		{"duplicate names are indexed once", `{"resourceType":"Patient","name":[{"family":"Doe"},{"family":"Doe","given":["Doe"]}]}`,
			"name", []fhir.Value{str("Doe")}},
		{"accents are kept in the value", `{"resourceType":"Patient","name":[{"family":"du Marché"}]}`,
			"family", []fhir.Value{str("du Marché")}},
	}
	c, reg := newCodec(t), newRegistry(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := mustParse(t, c, []byte(tt.body))
			got := reg.Type("Patient").Param(tt.param).Values(res)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s values (-want +got):\n%s", tt.param, diff)
			}
		})
	}
}

// Period and the other element types the ImagingStudy set does not use are
// reached through a type registered for the test.
func TestSearchParam_Values_Period(t *testing.T) {
	enc := &fhir.ResourceType{Name: "Encounter", Params: []*fhir.SearchParam{
		{Name: "date", Type: fhir.ParamDate, Path: "Encounter.period"},
		{Name: "class", Type: fhir.ParamToken, Path: "Encounter.class"},
		{Name: "length", Type: fhir.ParamNumber, Path: "Encounter.length.value"},
	}}
	reg := newRegistry(t, enc)
	c := newCodec(t)
	tests := []struct {
		name  string
		body  string
		param string
		want  []fhir.Value
	}{
		{"closed period runs to the end of its end", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2021-01-01","end":"2021-01-31"}}`,
			"date", []fhir.Value{date(utc(2021, 1, 1, 0, 0, 0, 0), utc(2021, 2, 1, 0, 0, 0, 0))}},
		{"open end", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2021-01-01T10:00:00Z"}}`,
			"date", []fhir.Value{date(utc(2021, 1, 1, 10, 0, 0, 0), fhir.MaxTime)}},
		{"open start", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"end":"2021"}}`,
			"date", []fhir.Value{date(fhir.MinTime, utc(2022, 1, 1, 0, 0, 0, 0))}},
		{"keyword-named element", `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}}`,
			"class", []fhir.Value{tok("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")}},
		{"decimal number", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"length":{"value":1.5,"unit":"h"}}`,
			"length", []fhir.Value{{Number: 1.5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := mustParse(t, c, []byte(tt.body))
			got := reg.Type("Encounter").Param(tt.param).Values(res)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s values (-want +got):\n%s", tt.param, diff)
			}
		})
	}
}

func TestNewRegistry_Errors(t *testing.T) {
	tests := []struct {
		name  string
		types func() []*fhir.ResourceType
	}{
		{"duplicate type", func() []*fhir.ResourceType { return []*fhir.ResourceType{fhir.Patient(), fhir.Patient()} }},
		{"not an R4 type", func() []*fhir.ResourceType { return []*fhir.ResourceType{{Name: "Study"}} }},
		{"duplicate parameter", func() []*fhir.ResourceType {
			p := fhir.Patient()
			p.Params = append(p.Params, &fhir.SearchParam{Name: "name", Type: fhir.ParamString, Path: "Patient.name"})
			return []*fhir.ResourceType{p}
		}},
		{"parameter shadows _id", func() []*fhir.ResourceType {
			return []*fhir.ResourceType{{Name: "Patient", Params: []*fhir.SearchParam{{Name: "_id", Type: fhir.ParamToken, Path: "Patient.id"}}}}
		}},
		{"path of another type", func() []*fhir.ResourceType {
			return []*fhir.ResourceType{{Name: "Patient", Params: []*fhir.SearchParam{{Name: "x", Type: fhir.ParamToken, Path: "Observation.code"}}}}
		}},
		{"path to no element", func() []*fhir.ResourceType {
			return []*fhir.ResourceType{{Name: "Patient", Params: []*fhir.SearchParam{{Name: "x", Type: fhir.ParamToken, Path: "Patient.nope"}}}}
		}},
		{"path that is only the type", func() []*fhir.ResourceType {
			return []*fhir.ResourceType{{Name: "Patient", Params: []*fhir.SearchParam{{Name: "x", Type: fhir.ParamToken, Path: "Patient"}}}}
		}},
		{"sort on an unknown parameter", func() []*fhir.ResourceType {
			p := fhir.Patient()
			p.Sorts = []string{"nope"}
			return []*fhir.ResourceType{p}
		}},
		{"include of a non-reference", func() []*fhir.ResourceType {
			p := fhir.Patient()
			p.Includes = []string{"name"}
			return []*fhir.ResourceType{p}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fhir.NewRegistry(tt.types()...); err == nil {
				t.Error("NewRegistry succeeded, want an error")
			}
		})
	}
}

func TestRegistry_Lookup(t *testing.T) {
	reg := newRegistry(t)
	var names []string
	for _, rt := range reg.Types() {
		names = append(names, rt.Name)
	}
	if diff := cmp.Diff([]string{"Endpoint", "ImagingStudy", "Patient"}, names); diff != "" {
		t.Errorf("Types (-want +got):\n%s", diff)
	}
	if got := reg.Type("Observation"); got != nil {
		t.Errorf("Type(Observation)=%v, want nil", got.Name)
	}
	is := reg.Type("ImagingStudy")
	if got, want := is.Param("_id"), fhir.ParamID; got != want {
		t.Errorf("Param(_id)=%v, want the common _id", got)
	}
	if got, want := is.Param("_lastUpdated"), fhir.ParamLastUpdated; got != want {
		t.Errorf("Param(_lastUpdated)=%v, want the common _lastUpdated", got)
	}
	if got := is.Param("nope"); got != nil {
		t.Errorf("Param(nope)=%v, want nil", got)
	}
	if diff := cmp.Diff([]string{"ImagingStudy:patient", "ImagingStudy:subject", "Patient:link"}, reg.RevIncludes("Patient")); diff != "" {
		t.Errorf("RevIncludes(Patient) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ImagingStudy:endpoint"}, reg.RevIncludes("Endpoint")); diff != "" {
		t.Errorf("RevIncludes(Endpoint) (-want +got):\n%s", diff)
	}
}

func TestIsResourceType(t *testing.T) {
	for name, want := range map[string]bool{
		"ImagingStudy": true, "Patient": true, "PractitionerRole": true, "Endpoint": true,
		"": false, "patient": false, "Study": false, "Resource ": false,
	} {
		if got := fhir.IsResourceType(name); got != want {
			t.Errorf("IsResourceType(%q)=%v, want %v", name, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "A-1.b": true, "0123456789012345678901234567890123456789012345678901234567890123": true,
		"": false, "a_b": false, "a b": false, "a/b": false, "é": false,
		"01234567890123456789012345678901234567890123456789012345678901234": false,
	} {
		if got := fhir.ValidID(id); got != want {
			t.Errorf("ValidID(%q)=%v, want %v", id, got, want)
		}
	}
}

func TestNormalizeString(t *testing.T) {
	for in, want := range map[string]string{
		"Chalmers": "chalmers", "Bénédicte": "benedicte", "du Marché": "du marche",
		"ÅNGSTRÖM": "angstrom", "张无忌": "张无忌", "50%_off": "50%_off", "": "",
	} {
		if got := fhir.NormalizeString(in); got != want {
			t.Errorf("NormalizeString(%q)=%q, want %q", in, got, want)
		}
	}
}
