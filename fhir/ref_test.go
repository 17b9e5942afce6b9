package fhir_test

import (
	"testing"

	"github.com/priorflow/priorflow/fhir"
)

func TestRef_Local(t *testing.T) {
	const base = "https://pacs.example/fhir"
	for _, tc := range []struct {
		name string
		in   fhir.Ref
		base string
		want fhir.Ref
	}{
		{"relative", fhir.Ref{Type: "Patient", ID: "1"}, base, fhir.Ref{Type: "Patient", ID: "1"}},
		{"under the base", fhir.Ref{Type: "Patient", ID: "1", URL: base + "/Patient/1"}, base, fhir.Ref{Type: "Patient", ID: "1"}},
		{"base given with a slash", fhir.Ref{Type: "Patient", ID: "1", URL: base + "/Patient/1"}, base + "/", fhir.Ref{Type: "Patient", ID: "1"}},
		{"a version under the base", fhir.Ref{Type: "Patient", ID: "1", URL: base + "/Patient/1/_history/3"}, base, fhir.Ref{Type: "Patient", ID: "1"}},
		{"another server", fhir.Ref{Type: "Patient", ID: "1", URL: "https://other.example/fhir/Patient/1"}, base, fhir.Ref{URL: "https://other.example/fhir/Patient/1"}},
		{"the base as a prefix of another path", fhir.Ref{Type: "Patient", ID: "1", URL: base + "2/Patient/1"}, base, fhir.Ref{URL: base + "2/Patient/1"}},
		{"deeper under the base", fhir.Ref{Type: "Patient", ID: "1", URL: base + "/x/Patient/1"}, base, fhir.Ref{URL: base + "/x/Patient/1"}},
		{"another scheme", fhir.Ref{Type: "Patient", ID: "1", URL: "http://pacs.example/fhir/Patient/1"}, base, fhir.Ref{URL: "http://pacs.example/fhir/Patient/1"}},
		{"no base known", fhir.Ref{Type: "Patient", ID: "1", URL: base + "/Patient/1"}, "", fhir.Ref{URL: base + "/Patient/1"}},
		{"a URL that names no resource", fhir.Ref{URL: "urn:uuid:1"}, base, fhir.Ref{URL: "urn:uuid:1"}},
	} {
		if got := tc.in.Local(tc.base); got != tc.want {
			t.Errorf("%s: %+v.Local(%q) = %+v, want %+v", tc.name, tc.in, tc.base, got, tc.want)
		}
	}
}
