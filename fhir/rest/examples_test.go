package rest_test

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"testing"

	"github.com/priorflow/priorflow/fhir/fhirtest"
)

// The official R4 examples of the served types store, read back unchanged
// (but for meta), and are found by their identifiers and references.
func TestExamples_StoreReadAndSearch(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	var names []string
	for _, pattern := range []string{"Patient-*.json", "Endpoint-*.json", "ImagingStudy-*.json"} {
		names = append(names, fhirtest.Examples(t, pattern)...)
	}
	if len(names) < 25 {
		t.Fatalf("only %d examples found", len(names))
	}
	for _, name := range names {
		body := fhirtest.Example(t, filepath.Base(name))
		var res map[string]any
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		typ, id := res["resourceType"].(string), res["id"].(string)
		r := s.do("PUT", "/"+typ+"/"+id, string(body))
		if r.status != 201 {
			t.Errorf("PUT %s: status %d: %.300s", name, r.status, r.body)
			continue
		}
		got := s.must(200, "GET", "/"+typ+"/"+id, "")
		delete(got, "meta")
		delete(res, "meta")
		if a, b := mustMarshal(canonical(got)), mustMarshal(canonical(res)); a != b {
			t.Errorf("%s changed on the round trip:\n got %.400s\nwant %.400s", name, a, b)
		}
		// Every identifier finds its resource.
		idents, _ := res["identifier"].([]any)
		for _, x := range idents {
			idm := x.(map[string]any)
			v, _ := idm["value"].(string)
			if v == "" {
				continue
			}
			tok := v
			if sys, ok := idm["system"].(string); ok {
				tok = sys + "|" + v
			}
			b := s.must(200, "GET", "/"+typ+"?identifier="+url.QueryEscape(tok), "")
			if !slices.Contains(ids(b), id) {
				t.Errorf("%s?identifier=%s does not find %s", typ, tok, id)
			}
		}
	}
	// The ImagingStudy example is about Patient/dicom and its series are CT.
	b := s.must(200, "GET", "/ImagingStudy?patient=Patient/dicom&modality=CT&_include=ImagingStudy:patient", "")
	if got := ids(b); !slices.Equal(got, []string{"example"}) {
		t.Errorf("ImagingStudy?patient=dicom&modality=CT = %v, want [example]", got)
	}
	if n := len(b["entry"].([]any)); n != 2 {
		t.Errorf("%d entries, want the study and its included patient", n)
	}
}

// canonical round-trips v through JSON so numbers and maps compare equal.
func canonical(v any) any {
	var out any
	_ = json.Unmarshal([]byte(mustMarshal(v)), &out)
	return out
}
