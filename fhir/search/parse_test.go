package search_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

func newRegistry(t testing.TB) *fhir.Registry {
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return reg
}

// parse parses a raw query string (as it appears after "?") on typ.
func parse(t *testing.T, typ, query string, opt search.Options) (*search.Query, error) {
	t.Helper()
	reg := newRegistry(t)
	params, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("url.ParseQuery(%q): %v", query, err)
	}
	return search.Parse(reg, reg.Type(typ), params, opt)
}

func mustParse(t *testing.T, typ, query string, opt search.Options) *search.Query {
	t.Helper()
	q, err := parse(t, typ, query, opt)
	if err != nil {
		t.Fatalf("Parse(%s?%s): %v", typ, query, err)
	}
	return q
}

// clause is a Clause with the parameter by name, for comparisons.
type clause struct {
	Param      string
	Modifier   search.Modifier
	TargetType string
	Missing    *bool
	Values     []search.Value
	Chain      *clause
}

func view(c *search.Clause) *clause {
	if c == nil {
		return nil
	}
	return &clause{Param: c.Param.Name, Modifier: c.Modifier, TargetType: c.TargetType, Missing: c.Missing, Values: c.Values, Chain: view(c.Chain)}
}

func views(q *search.Query) []*clause {
	var out []*clause
	for i := range q.Clauses {
		out = append(out, view(&q.Clauses[i]))
	}
	return out
}

func utc(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
}

func dr(start, end time.Time) fhir.DateRange { return fhir.DateRange{Start: start, End: end} }

func ptr[T any](v T) *T { return &v }

func TestParse_Tokens(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		query string
		want  []*clause
	}{
		{"code alone matches any system", "ImagingStudy", "modality=CT",
			[]*clause{{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "CT"}}}}}},
		{"system and code", "ImagingStudy", "identifier=urn:dicom:uid|urn:oid:1.2.3",
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{System: "urn:dicom:uid", Code: "urn:oid:1.2.3"}, SystemSet: true}}}}},
		{"leading bar means no system", "ImagingStudy", "identifier=|W12342398",
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: "W12342398"}, SystemSet: true}}}}},
		{"trailing bar means any code in system", "ImagingStudy", "identifier=urn:dicom:uid|",
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{System: "urn:dicom:uid"}, SystemSet: true}}}}},
		{"comma separates alternatives", "ImagingStudy", "modality=CT,MR",
			[]*clause{{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "CT"}}, {Token: fhir.Token{Code: "MR"}}}}}},
		{"empty alternatives are dropped", "ImagingStudy", "modality=,CT,,MR,",
			[]*clause{{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "CT"}}, {Token: fhir.Token{Code: "MR"}}}}}},
		{"escaped comma is part of the code", "ImagingStudy", `identifier=a\,b`,
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: "a,b"}}}}}},
		{"escaped bar is part of the code", "ImagingStudy", `identifier=sys|a\|b`,
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{System: "sys", Code: "a|b"}, SystemSet: true}}}}},
		{"escaped bar in system", "ImagingStudy", `identifier=s\|y|c`,
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{System: "s|y", Code: "c"}, SystemSet: true}}}}},
		{"escaped backslash before comma splits", "ImagingStudy", `identifier=a\\,b`,
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: `a\`}}, {Token: fhir.Token{Code: "b"}}}}}},
		{"escaped dollar", "ImagingStudy", `identifier=a\$b`,
			[]*clause{{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: "a$b"}}}}}},
		{"not modifier", "ImagingStudy", "status:not=cancelled",
			[]*clause{{Param: "status", Modifier: search.ModNot, Values: []search.Value{{Token: fhir.Token{Code: "cancelled"}}}}}},
		{"boolean is a token", "Patient", "active=true",
			[]*clause{{Param: "active", Values: []search.Value{{Token: fhir.Token{Code: "true"}}}}}},
		{"_id is a token", "Patient", "_id=a,b",
			[]*clause{{Param: "_id", Values: []search.Value{{Token: fhir.Token{Code: "a"}}, {Token: fhir.Token{Code: "b"}}}}}},
		{"repeated parameter is AND", "ImagingStudy", "modality=CT&modality=MR",
			[]*clause{
				{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "CT"}}}},
				{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "MR"}}}},
			}},
		{"clauses are ordered by parameter name", "ImagingStudy", "status=available&modality=CT&identifier=x",
			[]*clause{
				{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: "x"}}}},
				{Param: "modality", Values: []search.Value{{Token: fhir.Token{Code: "CT"}}}},
				{Param: "status", Values: []search.Value{{Token: fhir.Token{Code: "available"}}}},
			}},
		{"endpoint connection type", "Endpoint", "connection-type=http://terminology.hl7.org/CodeSystem/endpoint-connection-type|dicom-wado-rs",
			[]*clause{{Param: "connection-type", Values: []search.Value{{Token: fhir.Token{System: "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", Code: "dicom-wado-rs"}, SystemSet: true}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, tt.typ, tt.query, search.Options{})
			if diff := cmp.Diff(tt.want, views(q)); diff != "" {
				t.Errorf("Parse(%s) clauses (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParse_Strings(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  []*clause
	}{
		{"plain value", "name=Chalmers",
			[]*clause{{Param: "name", Values: []search.Value{{String: "Chalmers"}}}}},
		{"exact modifier", "family:exact=Chalmers",
			[]*clause{{Param: "family", Modifier: search.ModExact, Values: []search.Value{{String: "Chalmers"}}}}},
		{"contains modifier", "given:contains=ete",
			[]*clause{{Param: "given", Modifier: search.ModContains, Values: []search.Value{{String: "ete"}}}}},
		{"unicode is kept as sent", "name=B%C3%A9n%C3%A9dicte,%E5%BC%A0%E6%97%A0%E5%BF%8C",
			[]*clause{{Param: "name", Values: []search.Value{{String: "Bénédicte"}, {String: "张无忌"}}}}},
		{"space from plus", "name=van+de+Heuvel",
			[]*clause{{Param: "name", Values: []search.Value{{String: "van de Heuvel"}}}}},
		{"escaped comma", `name=Smith\,+John`,
			[]*clause{{Param: "name", Values: []search.Value{{String: "Smith, John"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, "Patient", tt.query, search.Options{})
			if diff := cmp.Diff(tt.want, views(q)); diff != "" {
				t.Errorf("Parse(%s) clauses (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

// Values that look like SQL, LIKE patterns or escapes are plain values: they
// reach the store as they were sent and are bound as arguments there.
func TestParse_InjectionShapedValuesArePlain(t *testing.T) {
	tests := []struct {
		name  string
		param string
		raw   string
		want  string
	}{
		{"quote and comment", "name", `O'Brien'--`, `O'Brien'--`},
		{"statement", "name", `x'); DROP TABLE resource; --`, `x'); DROP TABLE resource; --`},
		{"semicolons", "name", `a;b;c`, `a;b;c`},
		{"like wildcards", "name", `50%_off`, `50%_off`},
		{"double quotes", "name", `"quoted"`, `"quoted"`},
		{"lone backslash", "name", `C:\temp`, `C:\temp`},
		{"trailing backslash", "name", `abc\`, `abc\`},
		{"backslash quote", "name", `O\'Brien`, `O\'Brien`},
		{"unicode", "name", "Müller 张 🙂", "Müller 张 🙂"},
		{"control characters", "name", "a\x01b\nc", "a\x01b\nc"}, // NUL is refused: errorCases
		{"dollar", "name", `$where`, `$where`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t)
			q, err := search.Parse(reg, reg.Type("Patient"), url.Values{tt.param: {tt.raw}}, search.Options{})
			if err != nil {
				t.Fatalf("Parse(%s=%q): %v", tt.param, tt.raw, err)
			}
			if got, want := len(q.Clauses), 1; got != want {
				t.Fatalf("len(Clauses)=%d, want %d", got, want)
			}
			if diff := cmp.Diff([]search.Value{{String: tt.want}}, q.Clauses[0].Values); diff != "" {
				t.Errorf("Values (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("token with quotes and bars", func(t *testing.T) {
		reg := newRegistry(t)
		q, err := search.Parse(reg, reg.Type("ImagingStudy"), url.Values{"identifier": {`' OR 1=1 --|%_\x`}}, search.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := []search.Value{{Token: fhir.Token{System: "' OR 1=1 --", Code: `%_\x`}, SystemSet: true}}
		if diff := cmp.Diff(want, q.Clauses[0].Values); diff != "" {
			t.Errorf("Values (-want +got):\n%s", diff)
		}
	})
}

func TestParse_Missing(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  *bool
	}{
		{"missing true", "identifier:missing=true", ptr(true)},
		{"missing false", "started:missing=false", ptr(false)},
		{"missing on reference", "patient:missing=true", ptr(true)},
		{"missing on _lastUpdated", "_lastUpdated:missing=false", ptr(false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, "ImagingStudy", tt.query, search.Options{})
			c := q.Clauses[0]
			if got, want := c.Modifier, search.ModMissing; got != want {
				t.Errorf("Modifier=%q, want %q", got, want)
			}
			if diff := cmp.Diff(tt.want, c.Missing); diff != "" {
				t.Errorf("Missing (-want +got):\n%s", diff)
			}
			if got := len(c.Values); got != 0 {
				t.Errorf("len(Values)=%d, want 0", got)
			}
		})
	}
}

func TestParse_DatePrefixes(t *testing.T) {
	day := dr(utc(2021, 3, 4, 0, 0, 0, 0), utc(2021, 3, 5, 0, 0, 0, 0))
	tests := []struct {
		name string
		raw  string
		want search.Value
	}{
		{"no prefix is eq", "2021-03-04", search.Value{Prefix: search.PrefixEq, Date: day}},
		{"eq prefix covers the day", "eq2021-03-04", search.Value{Prefix: search.PrefixEq, Date: day}},
		{"ne prefix", "ne2021-03-04", search.Value{Prefix: search.PrefixNe, Date: day}},
		{"lt prefix", "lt2021-03-04", search.Value{Prefix: search.PrefixLt, Date: day}},
		{"gt prefix", "gt2021-03-04", search.Value{Prefix: search.PrefixGt, Date: day}},
		{"le prefix", "le2021-03-04", search.Value{Prefix: search.PrefixLe, Date: day}},
		{"ge prefix includes day", "ge2021-03-04", search.Value{Prefix: search.PrefixGe, Date: day}},
		{"sa prefix", "sa2021-03-04", search.Value{Prefix: search.PrefixSa, Date: day}},
		{"eb prefix", "eb2021-03-04", search.Value{Prefix: search.PrefixEb, Date: day}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, "ImagingStudy", "started="+tt.raw, search.Options{})
			if diff := cmp.Diff([]search.Value{tt.want}, q.Clauses[0].Values); diff != "" {
				t.Errorf("Values (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ap prefix widens by a tenth of the distance from now", func(t *testing.T) {
		now := utc(2021, 12, 31, 0, 0, 0, 0) // 300 days after 2021-03-06
		q := mustParse(t, "ImagingStudy", "started=ap2021-03-06", search.Options{Now: now})
		w := 30 * 24 * time.Hour
		want := search.Value{Prefix: search.PrefixAp, Date: dr(utc(2021, 3, 6, 0, 0, 0, 0).Add(-w), utc(2021, 3, 7, 0, 0, 0, 0).Add(w))}
		if diff := cmp.Diff([]search.Value{want}, q.Clauses[0].Values); diff != "" {
			t.Errorf("Values (-want +got):\n%s", diff)
		}
	})
	t.Run("ap prefix widens by at least a day", func(t *testing.T) {
		now := utc(2021, 3, 6, 12, 0, 0, 0)
		q := mustParse(t, "ImagingStudy", "started=ap2021-03-06", search.Options{Now: now})
		want := search.Value{Prefix: search.PrefixAp, Date: dr(utc(2021, 3, 5, 0, 0, 0, 0), utc(2021, 3, 8, 0, 0, 0, 0))}
		if diff := cmp.Diff([]search.Value{want}, q.Clauses[0].Values); diff != "" {
			t.Errorf("Values (-want +got):\n%s", diff)
		}
	})
	t.Run("prefixes per alternative", func(t *testing.T) {
		q := mustParse(t, "ImagingStudy", "started=lt2020,gt2022", search.Options{})
		want := []search.Value{
			{Prefix: search.PrefixLt, Date: dr(utc(2020, 1, 1, 0, 0, 0, 0), utc(2021, 1, 1, 0, 0, 0, 0))},
			{Prefix: search.PrefixGt, Date: dr(utc(2022, 1, 1, 0, 0, 0, 0), utc(2023, 1, 1, 0, 0, 0, 0))},
		}
		if diff := cmp.Diff(want, q.Clauses[0].Values); diff != "" {
			t.Errorf("Values (-want +got):\n%s", diff)
		}
	})
	t.Run("range of ge and le is ANDed", func(t *testing.T) {
		q := mustParse(t, "Patient", "birthdate=ge1970&birthdate=le1979", search.Options{})
		if got, want := len(q.Clauses), 2; got != want {
			t.Fatalf("len(Clauses)=%d, want %d", got, want)
		}
	})
}

func TestParseDate_Precision(t *testing.T) {
	plus1 := time.FixedZone("+01:00", 3600)
	minus5 := time.FixedZone("-05:00", -5*3600)
	tests := []struct {
		name string
		in   string
		want fhir.DateRange
	}{
		{"year", "2021", dr(utc(2021, 1, 1, 0, 0, 0, 0), utc(2022, 1, 1, 0, 0, 0, 0))},
		{"month", "2021-02", dr(utc(2021, 2, 1, 0, 0, 0, 0), utc(2021, 3, 1, 0, 0, 0, 0))},
		{"december rolls into the next year", "2021-12", dr(utc(2021, 12, 1, 0, 0, 0, 0), utc(2022, 1, 1, 0, 0, 0, 0))},
		{"day", "2021-02-28", dr(utc(2021, 2, 28, 0, 0, 0, 0), utc(2021, 3, 1, 0, 0, 0, 0))},
		{"leap day", "2020-02-29", dr(utc(2020, 2, 29, 0, 0, 0, 0), utc(2020, 3, 1, 0, 0, 0, 0))},
		{"minute without zone is UTC", "2021-03-04T10:11", dr(utc(2021, 3, 4, 10, 11, 0, 0), utc(2021, 3, 4, 10, 12, 0, 0))},
		{"minute with Z", "2021-03-04T10:11Z", dr(utc(2021, 3, 4, 10, 11, 0, 0), utc(2021, 3, 4, 10, 12, 0, 0))},
		{"second", "2021-03-04T10:11:12Z", dr(utc(2021, 3, 4, 10, 11, 12, 0), utc(2021, 3, 4, 10, 11, 13, 0))},
		{"second without zone is UTC", "2021-03-04T10:11:12", dr(utc(2021, 3, 4, 10, 11, 12, 0), utc(2021, 3, 4, 10, 11, 13, 0))},
		{"offset +01:00 is an hour before UTC", "2021-03-04T10:11:12+01:00",
			dr(time.Date(2021, 3, 4, 10, 11, 12, 0, plus1), time.Date(2021, 3, 4, 10, 11, 13, 0, plus1))},
		{"negative offset", "2021-03-04T23:30:00-05:00",
			dr(time.Date(2021, 3, 4, 23, 30, 0, 0, minus5), time.Date(2021, 3, 4, 23, 30, 1, 0, minus5))},
		{"unencoded plus arrives as space", "2021-03-04T10:11:12 01:00",
			dr(time.Date(2021, 3, 4, 10, 11, 12, 0, plus1), time.Date(2021, 3, 4, 10, 11, 13, 0, plus1))},
		{"offset +14:00 is the largest", "2021-03-04T10:00:00+14:00",
			dr(utc(2021, 3, 3, 20, 0, 0, 0), utc(2021, 3, 3, 20, 0, 1, 0))},
		{"tenths of a second", "2021-03-04T10:11:12.5Z", dr(utc(2021, 3, 4, 10, 11, 12, 5e8), utc(2021, 3, 4, 10, 11, 12, 6e8))},
		{"milliseconds", "2021-03-04T10:11:12.123Z", dr(utc(2021, 3, 4, 10, 11, 12, 123e6), utc(2021, 3, 4, 10, 11, 12, 124e6))},
		{"microseconds", "2021-03-04T10:11:12.123456Z", dr(utc(2021, 3, 4, 10, 11, 12, 123456e3), utc(2021, 3, 4, 10, 11, 12, 123457e3))},
		{"nanoseconds", "2021-03-04T10:11:12.123456789Z", dr(utc(2021, 3, 4, 10, 11, 12, 123456789), utc(2021, 3, 4, 10, 11, 12, 123456790))},
		{"fraction with offset", "2021-03-04T10:11:12.1+01:00",
			dr(time.Date(2021, 3, 4, 10, 11, 12, 1e8, plus1), time.Date(2021, 3, 4, 10, 11, 12, 2e8, plus1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := search.ParseDate(tt.in)
			if err != nil {
				t.Fatalf("ParseDate(%q): %v", tt.in, err)
			}
			if !got.Start.Equal(tt.want.Start) || !got.End.Equal(tt.want.End) {
				t.Errorf("ParseDate(%q)=[%v, %v), want [%v, %v)", tt.in, got.Start, got.End, tt.want.Start, tt.want.End)
			}
		})
	}
}

func TestParseDate_Invalid(t *testing.T) {
	for _, in := range []string{
		"", "21", "202", "20210", "2021-1", "2021-1-1", "2021/01/01", "01-02-2021",
		"2021-00", "2021-13", "2021-02-30", "2021-02-29", "2021-04-31", "2021-01-00", "2021-01-32",
		"2021-01-01T", "2021-01-01T10", "2021-01-01T24:00", "2021-01-01T10:60", "2021-01-01T10:00:61",
		"2021-01-01Z", "2021-01-01+01:00", "2021-01-01T10:00:00+15:00", "2021-01-01T10:00:00+01:60",
		"2021-01-01T10:00:00+0100", "2021-01-01T10:00:00.", "2021-01-01T10:00:00.1234567890",
		"2021-01-01t10:00:00z", "2021-01-01T10:00:00ZZ", "now", " 2021", "2021 ", "２０２１",
	} {
		t.Run(in, func(t *testing.T) {
			if r, err := search.ParseDate(in); err == nil {
				t.Errorf("ParseDate(%q)=%v, want an error", in, r)
			}
		})
	}
}

func TestParse_References(t *testing.T) {
	const base = "https://priorflow.example/fhir"
	tests := []struct {
		name  string
		typ   string
		query string
		want  []*clause
	}{
		{"bare id takes the single target type", "ImagingStudy", "patient=123",
			[]*clause{{Param: "patient", Values: []search.Value{{Ref: fhir.Ref{Type: "Patient", ID: "123"}}}}}},
		{"bare id on several targets has no type", "ImagingStudy", "subject=123",
			[]*clause{{Param: "subject", Values: []search.Value{{Ref: fhir.Ref{ID: "123"}}}}}},
		{"type and id", "ImagingStudy", "subject=Device/d1",
			[]*clause{{Param: "subject", Values: []search.Value{{Ref: fhir.Ref{Type: "Device", ID: "d1"}}}}}},
		{"history is ignored", "ImagingStudy", "patient=Patient/123/_history/4",
			[]*clause{{Param: "patient", Values: []search.Value{{Ref: fhir.Ref{Type: "Patient", ID: "123"}}}}}},
		{"type modifier types a bare id", "ImagingStudy", "subject:Patient=123",
			[]*clause{{Param: "subject", TargetType: "Patient", Values: []search.Value{{Ref: fhir.Ref{Type: "Patient", ID: "123"}}}}}},
		{"type modifier for a type the server does not store", "ImagingStudy", "referrer:Practitioner=p1",
			[]*clause{{Param: "referrer", TargetType: "Practitioner", Values: []search.Value{{Ref: fhir.Ref{Type: "Practitioner", ID: "p1"}}}}}},
		{"type modifier on a parameter without targets", "ImagingStudy", "performer:Practitioner=p1",
			[]*clause{{Param: "performer", TargetType: "Practitioner", Values: []search.Value{{Ref: fhir.Ref{Type: "Practitioner", ID: "p1"}}}}}},
		{"absolute URL elsewhere stays a URL", "ImagingStudy", "endpoint=https://other.example/fhir/Endpoint/e1",
			[]*clause{{Param: "endpoint", Values: []search.Value{{Ref: fhir.Ref{Type: "Endpoint", URL: "https://other.example/fhir/Endpoint/e1"}}}}}},
		{"absolute URL under our base is local", "ImagingStudy", "patient=" + url.QueryEscape(base+"/Patient/123"),
			[]*clause{{Param: "patient", Values: []search.Value{{Ref: fhir.Ref{Type: "Patient", ID: "123"}}}}}},
		{"alternatives", "ImagingStudy", "patient=1,Patient/2",
			[]*clause{{Param: "patient", Values: []search.Value{{Ref: fhir.Ref{Type: "Patient", ID: "1"}}, {Ref: fhir.Ref{Type: "Patient", ID: "2"}}}}}},
		{"endpoint organization", "Endpoint", "organization=Organization/hl7",
			[]*clause{{Param: "organization", Values: []search.Value{{Ref: fhir.Ref{Type: "Organization", ID: "hl7"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, tt.typ, tt.query, search.Options{BaseURL: base})
			if diff := cmp.Diff(tt.want, views(q)); diff != "" {
				t.Errorf("Parse(%s) clauses (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParse_Chains(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  []*clause
	}{
		{"single target needs no type", "patient.identifier=urn:oid:1.2|12345",
			[]*clause{{Param: "patient", TargetType: "Patient", Chain: &clause{Param: "identifier",
				Values: []search.Value{{Token: fhir.Token{System: "urn:oid:1.2", Code: "12345"}, SystemSet: true}}}}}},
		{"type named on a multi-target parameter", "subject:Patient.name=Chalmers",
			[]*clause{{Param: "subject", TargetType: "Patient", Chain: &clause{Param: "name", Values: []search.Value{{String: "Chalmers"}}}}}},
		{"modifier on the chained parameter", "patient.family:exact=Chalmers",
			[]*clause{{Param: "patient", TargetType: "Patient", Chain: &clause{Param: "family", Modifier: search.ModExact, Values: []search.Value{{String: "Chalmers"}}}}}},
		{"chained date", "patient.birthdate=ge1970",
			[]*clause{{Param: "patient", TargetType: "Patient", Chain: &clause{Param: "birthdate",
				Values: []search.Value{{Prefix: search.PrefixGe, Date: dr(utc(1970, 1, 1, 0, 0, 0, 0), utc(1971, 1, 1, 0, 0, 0, 0))}}}}}},
		{"two levels", "patient.link:Patient.identifier=x",
			[]*clause{{Param: "patient", TargetType: "Patient", Chain: &clause{Param: "link", TargetType: "Patient",
				Chain: &clause{Param: "identifier", Values: []search.Value{{Token: fhir.Token{Code: "x"}}}}}}}},
		{"endpoint", "endpoint.connection-type=dicom-wado-rs",
			[]*clause{{Param: "endpoint", TargetType: "Endpoint", Chain: &clause{Param: "connection-type", Values: []search.Value{{Token: fhir.Token{Code: "dicom-wado-rs"}}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, "ImagingStudy", tt.query, search.Options{})
			if diff := cmp.Diff(tt.want, views(q)); diff != "" {
				t.Errorf("Parse(%s) clauses (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParse_ResultParams(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		query string
		want  *search.Query // only the result fields are compared
	}{
		{"defaults", "ImagingStudy", "", &search.Query{Count: search.DefaultCount}},
		{"count", "ImagingStudy", "_count=10", &search.Query{Count: 10}},
		{"count zero", "ImagingStudy", "_count=0", &search.Query{Count: 0}},
		{"count above the maximum is clamped", "ImagingStudy", "_count=100000", &search.Query{Count: search.MaxCount}},
		{"sort keys in order with direction", "ImagingStudy", "_sort=-started,identifier,_id,-_lastUpdated",
			&search.Query{Count: search.DefaultCount, Sort: []search.Sort{{Param: "started", Desc: true}, {Param: "identifier"}, {Param: "_id"}, {Param: "_lastUpdated", Desc: true}}}},
		{"summary count drops the page", "ImagingStudy", "_summary=count&_count=10", &search.Query{Summary: "count"}},
		{"summary data", "ImagingStudy", "_summary=data", &search.Query{Count: search.DefaultCount, Summary: "data"}},
		{"total", "ImagingStudy", "_total=accurate", &search.Query{Count: search.DefaultCount, Total: "accurate"}},
		{"elements", "ImagingStudy", "_elements=identifier,+status,,series", &search.Query{Count: search.DefaultCount, Elements: []string{"identifier", "status", "series"}}},
		{"format and pretty are left to HTTP", "ImagingStudy", "_format=json&_pretty=true", &search.Query{Count: search.DefaultCount}},
		{"include", "ImagingStudy", "_include=ImagingStudy:patient&_include=ImagingStudy:subject:Patient",
			&search.Query{Count: search.DefaultCount, Include: []search.Include{{Source: "ImagingStudy", Param: "patient"}, {Source: "ImagingStudy", Param: "subject", Target: "Patient"}}}},
		{"include iterate", "ImagingStudy", "_include:iterate=ImagingStudy:endpoint",
			&search.Query{Count: search.DefaultCount, Include: []search.Include{{Source: "ImagingStudy", Param: "endpoint"}}}},
		{"revinclude", "Patient", "_revinclude=ImagingStudy:patient",
			&search.Query{Count: search.DefaultCount, RevInclude: []search.Include{{Source: "ImagingStudy", Param: "patient"}}}},
		{"revinclude of endpoint", "Endpoint", "_revinclude=ImagingStudy:endpoint",
			&search.Query{Count: search.DefaultCount, RevInclude: []search.Include{{Source: "ImagingStudy", Param: "endpoint"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, tt.typ, tt.query, search.Options{})
			got := &search.Query{Count: q.Count, Sort: q.Sort, Summary: q.Summary, Total: q.Total,
				Include: q.Include, RevInclude: q.RevInclude, Elements: q.Elements, Cursor: q.Cursor}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%s) (-want +got):\n%s", tt.query, diff)
			}
			if got := len(q.Clauses); got != 0 {
				t.Errorf("len(Clauses)=%d, want 0", got)
			}
		})
	}
}

func TestParse_Lenient(t *testing.T) {
	t.Run("unknown parameters are ignored and reported once", func(t *testing.T) {
		q := mustParse(t, "ImagingStudy", "foo=1&modality=CT&bar=2&foo=3&_foo=4", search.Options{Lenient: true})
		if diff := cmp.Diff([]string{"_foo", "bar", "foo"}, q.Ignored); diff != "" {
			t.Errorf("Ignored (-want +got):\n%s", diff)
		}
		if got, want := len(q.Clauses), 1; got != want {
			t.Errorf("len(Clauses)=%d, want %d", got, want)
		}
	})
	t.Run("a bad value of a known parameter still fails", func(t *testing.T) {
		_, err := parse(t, "ImagingStudy", "started=yesterday", search.Options{Lenient: true})
		if got, want := fhir.ErrorKind(err), fhir.KindInvalid; got != want {
			t.Errorf("ErrorKind=%v, want %v (err %v)", got, want, err)
		}
	})
	t.Run("strict mode fails on unknown parameters", func(t *testing.T) {
		_, err := parse(t, "ImagingStudy", "foo=1", search.Options{})
		if got, want := fhir.ErrorKind(err), fhir.KindInvalid; got != want {
			t.Errorf("ErrorKind=%v, want %v (err %v)", got, want, err)
		}
	})
}

// errorCase is a search that must fail with KindInvalid naming expr.
type errorCase struct {
	name  string
	typ   string
	query string
	expr  []string // nil: the error names no single parameter
}

var errorCases = []errorCase{
	// unknown and malformed parameters
	{"unknown parameter", "ImagingStudy", "foo=1", []string{"foo"}},
	{"parameter of another type", "ImagingStudy", "birthdate=2021", []string{"birthdate"}},
	{"bad parameter name", "ImagingStudy", "mod%24lity=CT", []string{"mod$lity"}},
	{"empty parameter name", "ImagingStudy", "=CT", []string{""}},
	{"unsupported result parameter", "ImagingStudy", "_has=Observation:patient:code=1", []string{"_has"}},
	{"_filter is not supported", "ImagingStudy", "_filter=x", []string{"_filter"}},
	// values
	{"empty value", "ImagingStudy", "modality=", []string{"modality"}},
	{"only commas", "ImagingStudy", "modality=,,", []string{"modality"}},
	{"token with only a bar", "ImagingStudy", "identifier=|", []string{"identifier"}},
	{"token bar in an alternative", "ImagingStudy", "identifier=a,|", []string{"identifier"}},
	// modifiers
	{"exact on a token", "ImagingStudy", "identifier:exact=x", []string{"identifier:exact"}},
	{"not on a string", "Patient", "name:not=x", []string{"name:not"}},
	{"text modifier", "ImagingStudy", "reason:text=fracture", []string{"reason:text"}},
	{"unknown modifier", "ImagingStudy", "modality:foo=CT", []string{"modality:foo"}},
	{"missing on _id", "ImagingStudy", "_id:missing=true", []string{"_id:missing"}},
	{"missing takes a boolean", "ImagingStudy", "identifier:missing=yes", []string{"identifier:missing"}},
	{"type modifier outside the targets", "ImagingStudy", "subject:Observation=1", []string{"subject:Observation"}},
	{"type modifier that is no type", "ImagingStudy", "subject:Foo=1", []string{"subject:Foo"}},
	// dates
	{"not a date", "ImagingStudy", "started=yesterday", []string{"started"}},
	{"february 30", "ImagingStudy", "started=2021-02-30", []string{"started"}},
	{"thirteenth month", "ImagingStudy", "started=2021-13", []string{"started"}},
	{"day 32", "Patient", "birthdate=1970-01-32", []string{"birthdate"}},
	{"hour 24", "ImagingStudy", "started=2021-01-01T24:00", []string{"started"}},
	{"offset out of range", "ImagingStudy", "started=2021-01-01T10:00%2B15:00", []string{"started"}},
	{"unknown prefix", "ImagingStudy", "started=xx2021", []string{"started"}},
	{"prefix alone", "ImagingStudy", "started=ge", []string{"started"}},
	{"bad date among alternatives", "ImagingStudy", "started=2021,2021-02-30", []string{"started"}},
	{"bad date on _lastUpdated", "ImagingStudy", "_lastUpdated=gt2021-02-30", []string{"_lastUpdated"}},
	// references
	{"reference outside the targets", "ImagingStudy", "patient=Device/1", []string{"patient"}},
	{"reference contradicts the type modifier", "ImagingStudy", "subject:Device=Patient/1", []string{"subject:Device"}},
	{"reference type that is no type", "ImagingStudy", "performer=Foo/1", []string{"performer"}},
	{"reference with a bad id", "ImagingStudy", "patient=Patient/a_b", []string{"patient"}},
	{"reference id too long", "ImagingStudy", "patient=" + strings.Repeat("a", 65), []string{"patient"}},
	{"reference with too many parts", "ImagingStudy", "patient=Patient/1/x", []string{"patient"}},
	{"reference URL without host", "ImagingStudy", "patient=http:///Patient/1", []string{"patient"}},
	{"reference with a quote", "ImagingStudy", "patient=1'--", []string{"patient"}},
	// chains
	{"chain on a token", "ImagingStudy", "modality.code=CT", []string{"modality.code"}},
	{"chain needs a type on a multi-target parameter", "ImagingStudy", "subject.name=x", []string{"subject.name"}},
	{"chain into a type the server does not store", "ImagingStudy", "referrer.name=x", []string{"referrer.name"}},
	{"chain to an unknown parameter", "ImagingStudy", "patient.foo=x", []string{"patient.foo"}},
	{"chain with a bad value", "ImagingStudy", "patient.birthdate=2021-02-30", []string{"patient.birthdate"}},
	{"chain with a bad modifier", "ImagingStudy", "patient.identifier:exact=x", []string{"patient.identifier:exact"}},
	{"chain with an empty parameter", "ImagingStudy", "patient.=x", []string{"patient."}},
	{"chain too deep", "ImagingStudy", "patient.link.link.identifier=x", []string{"patient.link.link.identifier"}},
	{"chain with a type outside the targets", "ImagingStudy", "subject:Endpoint.name=x", []string{"subject:Endpoint.name"}},
	// result parameters
	{"count not a number", "ImagingStudy", "_count=ten", []string{"_count"}},
	{"count negative", "ImagingStudy", "_count=-1", []string{"_count"}},
	{"count overflows", "ImagingStudy", "_count=99999999999999999999", []string{"_count"}},
	{"sort on an unsortable parameter", "ImagingStudy", "_sort=modality", []string{"_sort"}},
	{"sort with an empty key", "ImagingStudy", "_sort=started,,_id", []string{"_sort"}},
	{"sort with too many keys", "ImagingStudy", "_sort=started,identifier,_id,_lastUpdated,-started", []string{"_sort"}},
	{"summary unknown", "ImagingStudy", "_summary=all", []string{"_summary"}},
	{"total unknown", "ImagingStudy", "_total=exact", []string{"_total"}},
	{"include malformed", "ImagingStudy", "_include=patient", []string{"_include"}},
	{"include of a non-reference", "ImagingStudy", "_include=ImagingStudy:modality", []string{"_include"}},
	{"include of another source", "ImagingStudy", "_include=Patient:link", []string{"_include"}},
	{"include target outside the targets", "ImagingStudy", "_include=ImagingStudy:patient:Device", []string{"_include"}},
	{"include of an unknown type", "ImagingStudy", "_include=Observation:subject", []string{"_include"}},
	{"include wildcard", "ImagingStudy", "_include=*", []string{"_include"}},
	{"revinclude pointing elsewhere", "Patient", "_revinclude=ImagingStudy:endpoint", []string{"_revinclude"}},
	{"cursor garbage", "ImagingStudy", "_cursor=%21%21%21", []string{"_cursor"}},
	// encodings: URIs carry text as percent-encoded UTF-8
	{"string in Latin-1", "Patient", "family=M%FCller", []string{"family"}},
	{"exact string in Latin-1", "Patient", "family:exact=M%FCller", []string{"family:exact"}},
	{"token not UTF-8", "Patient", "identifier=urn:oid:1.2|%FF", []string{"identifier"}},
	{"id not UTF-8", "Patient", "_id=%FF", []string{"_id"}},
	{"reference URL not UTF-8", "ImagingStudy", "patient=A://%88", []string{"patient"}},
	{"result parameter not UTF-8", "ImagingStudy", "_sort=%FF", []string{"_sort"}},
	{"parameter name not UTF-8", "Patient", "fam%FCly=x", nil},
	{"NUL in a string", "Patient", "name=a%00b", []string{"name"}},
	{"NUL in a token", "ImagingStudy", "identifier=urn:dicom:uid|%00", []string{"identifier"}},
	// limits
	{"too many values", "ImagingStudy", strings.Repeat("modality=CT&", 257), nil},
	{"too many comma-separated values", "ImagingStudy", "modality=" + strings.Repeat("CT,", 257), nil},
	{"too many clauses", "ImagingStudy", strings.Repeat("status=available&", 65), nil},
	{"value too long", "Patient", "name=" + strings.Repeat("a", 1025), []string{"name"}},
	{"name too long", "Patient", strings.Repeat("a", 1025) + "=x", nil},
}

func TestParse_Errors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			q, err := parse(t, tt.typ, tt.query, search.Options{})
			if err == nil {
				t.Fatalf("Parse(%.80s) = %+v, want an error", tt.query, q)
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error %T (%v), want *fhir.Error", err, err)
			}
			if got, want := fe.Kind, fhir.KindInvalid; got != want {
				t.Errorf("Kind=%v, want %v (err %v)", got, want, err)
			}
			if diff := cmp.Diff(tt.expr, fe.Expression); diff != "" {
				t.Errorf("Expression (-want +got):\n%s\n(err %v)", diff, err)
			}
			if fe.Message == "" {
				t.Error("Message is empty")
			}
		})
	}
}

func TestParse_Limits(t *testing.T) {
	t.Run("value of exactly the maximum length", func(t *testing.T) {
		mustParse(t, "Patient", "name="+strings.Repeat("a", 1024), search.Options{})
	})
	t.Run("256 values", func(t *testing.T) {
		q := mustParse(t, "ImagingStudy", "modality="+strings.Repeat("CT,", 255)+"CT", search.Options{})
		if got, want := len(q.Clauses[0].Values), 256; got != want {
			t.Errorf("len(Values)=%d, want %d", got, want)
		}
	})
	t.Run("64 clauses", func(t *testing.T) {
		q := mustParse(t, "ImagingStudy", strings.Repeat("status=available&", 64), search.Options{})
		if got, want := len(q.Clauses), 64; got != want {
			t.Errorf("len(Clauses)=%d, want %d", got, want)
		}
	})
}

func TestCursor_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    *search.Cursor
	}{
		{"no sort keys", &search.Cursor{RID: 1}},
		{"keys and before", &search.Cursor{Key: []string{"2021-03-04 10:11:12.123456+00", "urn:oid:1.2"}, RID: 987654321, Before: true}},
		{"four keys with odd text", &search.Cursor{Key: []string{"", "a,b|c", "ü&=?/", `"\`}, RID: 1<<63 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := search.EncodeCursor(tt.c)
			if url.QueryEscape(s) != s {
				t.Errorf("EncodeCursor=%q needs escaping in a URL", s)
			}
			got, err := search.DecodeCursor(s)
			if err != nil {
				t.Fatalf("DecodeCursor(%q): %v", s, err)
			}
			if diff := cmp.Diff(tt.c, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			q := mustParse(t, "ImagingStudy", "_cursor="+s, search.Options{})
			if diff := cmp.Diff(tt.c, q.Cursor); diff != "" {
				t.Errorf("Parse _cursor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeCursor_RejectsGarbage(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	for _, tt := range []struct{ name, in string }{
		{"empty", ""},
		{"not base64", "!!!"},
		{"standard base64 with padding", base64.StdEncoding.EncodeToString([]byte(`{"RID":12}`))},
		{"not JSON", b64([]byte("hello"))},
		{"JSON null", b64([]byte("null"))},
		{"empty object", b64([]byte("{}"))},
		{"negative row id", b64([]byte(`{"RID":-1}`))},
		{"zero row id", b64([]byte(`{"RID":0}`))},
		{"five keys", b64([]byte(`{"Key":["a","b","c","d","e"],"RID":1}`))},
		{"unknown field", b64([]byte(`{"RID":1,"SQL":"DROP"}`))},
		{"trailing data", b64([]byte(`{"RID":1}{"RID":2}`))},
		{"wrong types", b64([]byte(`{"Key":"a","RID":"1"}`))},
		{"array", b64([]byte(`[1]`))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := search.DecodeCursor(tt.in); err == nil {
				t.Errorf("DecodeCursor(%q)=%+v, want an error", tt.in, c)
			}
		})
	}
}

func ExampleParse() {
	reg, _ := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	params, _ := url.ParseQuery("patient.identifier=urn:oid:1.2|12345&started=ge2021-03&_sort=-started")
	q, err := search.Parse(reg, reg.Type("ImagingStudy"), params, search.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range q.Clauses {
		fmt.Printf("%s %q\n", c.Param.Name, c.TargetType)
	}
	fmt.Println(q.Sort)
	// Output:
	// patient "Patient"
	// started ""
	// [{started true}]
}
