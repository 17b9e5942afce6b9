package fhir_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
)

func careRegistry(t *testing.T) *fhir.Registry {
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.Appointment(), fhir.Encounter(), fhir.ServiceRequest(), fhir.Patient(), fhir.ImagingStudy(), fhir.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestCareTypes_Values(t *testing.T) {
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg := careRegistry(t)
	const actCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	participants := `"participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"},{"actor":{"reference":"Location/l1"},"status":"accepted"}]`
	cases := []struct {
		name, body, param string
		want              []fhir.Value
	}{
		{"Encounter class is a Coding (class_value)", `{"resourceType":"Encounter","status":"arrived","class":{"system":"` + actCode + `","code":"EMER"}}`,
			"class", []fhir.Value{{Token: fhir.Token{System: actCode, Code: "EMER"}}}},
		{"Encounter status code", `{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP"}}`,
			"status", []fhir.Value{{Token: fhir.Token{Code: "in-progress"}}}},
		{"Encounter location.location", `{"resourceType":"Encounter","status":"arrived","class":{"code":"IMP"},"location":[{"location":{"reference":"Location/w1"}},{"location":{"reference":"Location/w2"}}]}`,
			"location", []fhir.Value{{Ref: fhir.Ref{Type: "Location", ID: "w1"}}, {Ref: fhir.Ref{Type: "Location", ID: "w2"}}}},
		{"Appointment patient: Patient actors only", `{"resourceType":"Appointment","status":"booked",` + participants + `}`,
			"patient", []fhir.Value{{Ref: fhir.Ref{Type: "Patient", ID: "p1"}}}},
		{"Appointment location: Location actors only", `{"resourceType":"Appointment","status":"booked",` + participants + `}`,
			"location", []fhir.Value{{Ref: fhir.Ref{Type: "Location", ID: "l1"}}}},
		{"ServiceRequest priority code", `{"resourceType":"ServiceRequest","status":"active","intent":"order","priority":"stat","subject":{"reference":"Patient/p1"}}`,
			"priority", []fhir.Value{{Token: fhir.Token{Code: "stat"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, typ, err := codec.Parse([]byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, reg.Type(typ).Param(c.param).Values(res)); diff != "" {
				t.Errorf("%s values (-want +got):\n%s", c.param, diff)
			}
		})
	}
}

// TestCareTypes_R4Examples parses and indexes every R4 example of the care
// event types.
func TestCareTypes_R4Examples(t *testing.T) {
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg := careRegistry(t)
	for _, typ := range []string{"Appointment", "Encounter", "ServiceRequest"} {
		for _, name := range fhirtest.Examples(t, typ+"-*.json") {
			t.Run(name, func(t *testing.T) {
				res, _, err := codec.Parse(fhirtest.Example(t, name))
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, p := range reg.Type(typ).Params {
					n += len(p.Values(res))
				}
				if n == 0 {
					t.Error("no index values")
				}
			})
		}
	}
}
