package fhir_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
)

func TestSubscription_Values_Example(t *testing.T) {
	reg, err := fhir.NewRegistry(fhir.Subscription())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := codec.Parse(fhirtest.Example(t, "Subscription-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	typ := reg.Type("Subscription")
	for _, tc := range []struct {
		param string
		want  []fhir.Value
	}{
		{"status", []fhir.Value{{Token: fhir.Token{Code: "requested"}}}},
		{"type", []fhir.Value{{Token: fhir.Token{Code: "rest-hook"}}}},
		{"url", []fhir.Value{{String: "https://biliwatch.com/customers/mount-auburn-miu/on-result"}}},
		{"payload", []fhir.Value{{Token: fhir.Token{Code: "application/fhir+json"}}}},
		{"criteria", []fhir.Value{{String: "Observation?code=http://loinc.org|1975-2"}}},
	} {
		if diff := cmp.Diff(tc.want, typ.Param(tc.param).Values(res)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.param, diff)
		}
	}
}
