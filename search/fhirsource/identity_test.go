package fhirsource

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/search"
)

// The name a remote Patient is compared by is its first current
// alphabetic one: JP Core lists the ideographic and phonetic writings first.
func TestIdentity_AlphabeticName(t *testing.T) {
	src, err := New(search.SourceInfo{Name: "node-p", Kind: search.KindPriorflow, URL: "http://peer.test/fhir", Issuer: "HOSP-P",
		Match: search.MatchDemographics, Mode: search.ModeImport}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	rep := func(code string) string {
		return `"extension":[{"url":"` + fhir.ENRepresentation + `","valueCode":"` + code + `"}],`
	}
	tests := []struct {
		names, family string
		given         []string
	}{
		{`[{` + rep("IDE") + `"family":"山田","given":["太郎"]},{` + rep("SYL") + `"family":"やまだ","given":["たろう"]},{` + rep("ABC") + `"family":"Yamada","given":["Tarou"]}]`,
			"Yamada", []string{"Tarou"}},
		{`[{"use":"old","family":"Doe","given":["Jane"]},{"use":"official","family":"Roe","given":["Jane"]}]`, "Roe", []string{"Jane"}},
		{`[{` + rep("IDE") + `"family":"山田","given":["太郎"]}]`, "山田", []string{"太郎"}},
		{`[{"family":"Doe","given":["Jane"]}]`, "Doe", []string{"Jane"}},
	}
	for _, tt := range tests {
		var p patient
		if err := json.Unmarshal([]byte(`{"id":"p1","name":`+tt.names+`}`), &p); err != nil {
			t.Fatal(err)
		}
		id := src.identity(p, search.PatientQuery{})
		if id.Family != tt.family || !slices.Equal(id.Given, tt.given) {
			t.Errorf("names %s: %q %q, want %q %q", tt.names, id.Family, id.Given, tt.family, tt.given)
		}
	}
}
