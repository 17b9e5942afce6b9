package search_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

// FuzzParse feeds arbitrary query strings through url.ParseQuery and Parse:
// Parse must never panic, must fail only with a *fhir.Error of KindInvalid,
// and what it accepts must be within the documented limits.
func FuzzParse(f *testing.F) {
	for _, q := range []string{
		"modality=CT,MR&status:not=cancelled",
		"identifier=urn:dicom:uid|urn:oid:1.2.3&identifier=|W12342398&identifier=sys|",
		`identifier=a\,b,c\|d\\,e\$f`,
		"started=ge2021-03-04T10:11:12.123%2B01:00&started=lt2022&started=ap2021-03",
		"patient=Patient/123/_history/4&subject:Device=d1&endpoint=https://other.example/fhir/Endpoint/e1",
		"patient.identifier=urn:oid:1.2|12345&subject:Patient.name=Chalmers&patient.link:Patient.birthdate=1970",
		"_count=10&_sort=-started,_id&_summary=true&_total=accurate&_elements=identifier,status",
		"_include=ImagingStudy:patient&_include:iterate=ImagingStudy:subject:Patient&_revinclude=ImagingStudy:endpoint",
		"_cursor=" + search.EncodeCursor(&search.Cursor{Key: []string{"2021-01-01T00:00:00Z"}, RID: 7, Before: true}),
		"name=O'Brien'--;%25_%5C&family:exact=M%C3%BCller&given:contains=%E5%BC%A0",
		"identifier:missing=true&_lastUpdated=gt2021-02-30&foo=bar",
		"birthdate=ge1970-01-01&gender=male&active=true&link=Patient/p1",
		"connection-type=dicom-wado-rs&organization=Organization/hl7&name=PACS",
	} {
		f.Add(q, false)
		f.Add(q, true)
	}
	for _, tt := range errorCases {
		f.Add(tt.query, false)
	}
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		f.Fatal(err)
	}
	types := reg.Types()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string, lenient bool) {
		params, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, typ := range types {
			q, err := search.Parse(reg, typ, params, search.Options{Lenient: lenient, Now: now, BaseURL: "https://priorflow.example/fhir"})
			if err != nil {
				var fe *fhir.Error
				if !errors.As(err, &fe) {
					t.Fatalf("Parse(%s?%q) error %T %v, want *fhir.Error", typ.Name, raw, err, err)
				}
				if fe.Kind != fhir.KindInvalid {
					t.Fatalf("Parse(%s?%q) Kind=%v, want invalid (%v)", typ.Name, raw, fe.Kind, err)
				}
				continue
			}
			checkQuery(t, typ, q)
		}
	})
}

func checkQuery(t *testing.T, typ *fhir.ResourceType, q *search.Query) {
	t.Helper()
	if q.Type != typ {
		t.Fatalf("Type=%v, want %v", q.Type.Name, typ.Name)
	}
	if q.Count < 0 || q.Count > search.MaxCount {
		t.Fatalf("Count=%d out of [0, %d]", q.Count, search.MaxCount)
	}
	if len(q.Clauses) > 64 {
		t.Fatalf("len(Clauses)=%d, want at most 64", len(q.Clauses))
	}
	for i := range q.Clauses {
		checkClause(t, typ, &q.Clauses[i], 0)
	}
	if q.Cursor != nil {
		c, err := search.DecodeCursor(search.EncodeCursor(q.Cursor))
		if err != nil {
			t.Fatalf("cursor %+v does not round trip: %v", q.Cursor, err)
		}
		if diff := cmp.Diff(q.Cursor, c); diff != "" {
			t.Fatalf("cursor round trip (-want +got):\n%s", diff)
		}
	}
}

func checkClause(t *testing.T, typ *fhir.ResourceType, c *search.Clause, depth int) {
	t.Helper()
	if c.Param == nil || typ.Param(c.Param.Name) != c.Param {
		t.Fatalf("clause parameter %v is not a parameter of %s", c.Param, typ.Name)
	}
	if depth > 2 {
		t.Fatalf("chain deeper than 2")
	}
	switch {
	case c.Chain != nil:
		if c.Param.Type != fhir.ParamReference || c.TargetType == "" {
			t.Fatalf("chain on %s (%s) to %q", c.Param.Name, c.Param.Type, c.TargetType)
		}
		return // the chained type is checked by the registry lookup in Parse
	case c.Missing != nil:
		if len(c.Values) != 0 {
			t.Fatalf(":missing clause with values")
		}
		return
	case len(c.Values) == 0:
		t.Fatalf("clause %s has no values", c.Param.Name)
	}
	for _, v := range c.Values {
		// The index holds UTF-8; anything else would reach the
		// database, which refuses it (a 500 for the client).
		for _, s := range []string{v.Token.System, v.Token.Code, v.String, v.Ref.Type, v.Ref.ID, v.Ref.URL} {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("%s: value %q is not UTF-8 or holds a NUL", c.Param.Name, s)
			}
		}
		switch c.Param.Type {
		case fhir.ParamDate:
			if !v.Date.Start.Before(v.Date.End) {
				t.Fatalf("%s: empty date range [%v, %v)", c.Param.Name, v.Date.Start, v.Date.End)
			}
		case fhir.ParamReference:
			if v.Ref.URL == "" && !fhir.ValidID(v.Ref.ID) {
				t.Fatalf("%s: reference %+v has no valid id", c.Param.Name, v.Ref)
			}
			if v.Ref.Type != "" && !fhir.IsResourceType(v.Ref.Type) {
				t.Fatalf("%s: reference type %q is not an R4 type", c.Param.Name, v.Ref.Type)
			}
		case fhir.ParamToken:
			if v.SystemSet && v.Token.System == "" && v.Token.Code == "" {
				t.Fatalf("%s: empty token", c.Param.Name)
			}
		}
	}
}
