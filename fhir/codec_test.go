package fhir_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	ispb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/imaging_study_go_proto"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/priorflow/priorflow/fhir"
)

func TestCodec_Parse_Errors(t *testing.T) {
	deep := string(study(`"extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 70) + strings.Repeat(`]}`, 70) + `]`))
	tests := []struct {
		name string
		body string
		kind fhir.Kind
		expr []string
	}{
		{"empty body", ``, fhir.KindInvalid, nil},
		{"truncated JSON", `{"resourceType":"Patient"`, fhir.KindInvalid, nil},
		{"trailing garbage", `{"resourceType":"Patient"} x`, fhir.KindInvalid, nil},
		{"not an object", `["resourceType","Patient"]`, fhir.KindInvalid, nil},
		{"a string", `"Patient"`, fhir.KindInvalid, nil},
		{"missing resourceType", `{"id":"x"}`, fhir.KindInvalid, []string{"resourceType"}},
		{"null resourceType", `{"resourceType":null}`, fhir.KindInvalid, []string{"resourceType"}},
		{"numeric resourceType", `{"resourceType":5}`, fhir.KindInvalid, []string{"resourceType"}},
		{"unknown resourceType", `{"resourceType":"Study"}`, fhir.KindInvalid, []string{"resourceType"}},
		{"lower-case resourceType", `{"resourceType":"patient"}`, fhir.KindInvalid, []string{"resourceType"}},
		{"invalid status code", `{"resourceType":"ImagingStudy","status":"done","subject":{"reference":"Patient/p1"}}`,
			fhir.KindUnprocessable, []string{"ImagingStudy.status"}},
		{"missing required status", `{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}}`,
			fhir.KindUnprocessable, []string{"ImagingStudy"}},
		{"missing required subject", `{"resourceType":"ImagingStudy","status":"available"}`,
			fhir.KindUnprocessable, []string{"ImagingStudy"}},
		{"missing required series uid", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"},"series":[{"modality":{"code":"CT"}}]}`,
			fhir.KindUnprocessable, []string{"ImagingStudy.series[0]"}},
		{"wrong reference type", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Observation/o1"}}`,
			fhir.KindUnprocessable, []string{"ImagingStudy.subject"}},
		{"impossible date", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"},"started":"2021-02-30T10:00:00Z"}`,
			fhir.KindUnprocessable, []string{"ImagingStudy.started"}},
		{"thirteenth month", `{"resourceType":"Patient","birthDate":"2021-13-01"}`, fhir.KindUnprocessable, []string{"Patient.birthDate"}},
		{"time without zone", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"},"started":"2021-01-01T10:00:00"}`,
			fhir.KindUnprocessable, []string{"ImagingStudy.started"}},
		{"unknown element", `{"resourceType":"Patient","nickname":"Jim"}`, fhir.KindUnprocessable, []string{"Patient"}},
		{"wrong JSON type", `{"resourceType":"Patient","active":"yes"}`, fhir.KindUnprocessable, []string{"Patient.active"}},
		{"bad id", `{"resourceType":"Patient","id":"a_b"}`, fhir.KindUnprocessable, []string{"Patient.id"}},
		{"every problem is named", `{"resourceType":"Patient","gender":"x","birthDate":"2021-13"}`,
			fhir.KindUnprocessable, []string{"Patient.birthDate", "Patient.gender"}},
		{"empty required code", `{"resourceType":"Encounter","status":"","class":{"code":"AMB"}}`, fhir.KindUnprocessable, []string{"Encounter.status"}},
		{"empty string in a list", `{"resourceType":"Patient","name":[{"family":"Doe","given":["Jo",""]}]}`, fhir.KindUnprocessable, []string{"Patient.name[0].given[1]"}},
		{"empty string deep in lists", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p"},"series":[{"uid":"1.2.1","modality":{"code":"CT"}},{"uid":"1.2.2","modality":{"code":"CT"},"instance":[{"uid":"1.2.2.1","sopClass":{"code":"1.2"}},{"uid":"1.2.2.2","sopClass":{"code":"1.2"},"title":""}]}]}`, fhir.KindUnprocessable, []string{"ImagingStudy.series[1].instance[1].title"}},
		{"empty reference", `{"resourceType":"ImagingStudy","status":"available","subject":{"reference":""}}`, fhir.KindUnprocessable, nil},
		{"deep nesting", deep, fhir.KindUnprocessable, nil}, // named in TestCodec_Parse_DeepNesting
		{"very deep nesting", `{"resourceType":"Patient","x":` + strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000) + `}`, fhir.KindInvalid, nil},
	}
	c := newCodec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _, err := c.Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse=%v, want an error", res)
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error %T (%v), want *fhir.Error", err, err)
			}
			if got, want := fe.Kind, tt.kind; got != want {
				t.Errorf("Kind=%v, want %v (err %v)", got, want, err)
			}
			if tt.expr != nil {
				if diff := cmp.Diff(tt.expr, fe.Expression); diff != "" {
					t.Errorf("Expression (-want +got):\n%s\n(err %v)", diff, err)
				}
			}
			if fe.Message == "" || strings.Contains(fe.Message, "Go value") || strings.Contains(fe.Message, "struct") {
				t.Errorf("Message=%q, want a message for a person", fe.Message)
			}
		})
	}
}

func TestCodec_Parse_DeepNesting(t *testing.T) {
	nest := func(n int) []byte {
		return study(`"extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, n) + strings.Repeat(`]}`, n) + `]`)
	}
	c := newCodec(t)
	if _, _, err := c.Parse(nest(30)); err != nil {
		t.Fatalf("30 levels: %v", err)
	}
	_, _, err := c.Parse(nest(100))
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatalf("100 levels: error %v, want *fhir.Error", err)
	}
	if got, want := fe.Kind, fhir.KindUnprocessable; got != want {
		t.Errorf("Kind=%v, want %v", got, want)
	}
	if len(fe.Expression) == 0 || !strings.HasPrefix(fe.Expression[0], "ImagingStudy.extension[0].extension[0]") {
		t.Errorf("Expression=%.80q, want the nested extension", fe.Expression)
	}
}

func TestCodec_Parse_Type(t *testing.T) {
	c := newCodec(t)
	res, typ, err := c.Parse([]byte(`{"resourceType":"Endpoint","id":"e1","status":"active","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"https://pacs.example/wado-rs"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := typ, "Endpoint"; got != want {
		t.Errorf("type=%q, want %q", got, want)
	}
	if got, want := fhir.TypeOf(res), "Endpoint"; got != want {
		t.Errorf("TypeOf=%q, want %q", got, want)
	}
	if got, want := fhir.ID(res), "e1"; got != want {
		t.Errorf("ID=%q, want %q", got, want)
	}
}

func TestCodec_SetIDAndMeta(t *testing.T) {
	c := newCodec(t)
	res, _ := mustParse(t, c, []byte(`{"resourceType":"Patient","id":"old","meta":{"versionId":"9","tag":[{"system":"urn:t","code":"x"}]}}`))
	fhir.SetID(res, "p1")
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	fhir.SetMeta(res, 2, at)
	b, err := c.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"p1","meta":{"lastUpdated":"2024-05-06T07:08:09.123456Z","tag":[{"code":"x","system":"urn:t"}],"versionId":"2"},"resourceType":"Patient"}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("Marshal (-want +got):\n%s", diff)
	}
	fhir.SetID(res, "")
	if got := fhir.ID(res); got != "" {
		t.Errorf("ID after SetID(\"\")=%q, want empty", got)
	}
}

func TestCodec_RoundTrip(t *testing.T) {
	c := newCodec(t)
	for _, body := range []string{
		string(study(`"started":"2021-02-28T10:00:00.123+01:00","series":[{"uid":"1.2","modality":{"code":"MR"},"instance":[{"uid":"1.2.3","sopClass":{"code":"1.2.840"}}]}]`)),
		`{"resourceType":"Patient","birthDate":"1970","name":[{"family":"du Marché","_family":{"extension":[{"url":"http://x","valueString":"VV"}]}}]}`,
	} {
		res, _ := mustParse(t, c, []byte(body))
		b, err := c.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := mustParse(t, c, b)
		if diff := cmp.Diff(res, again, protocmp.Transform()); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", body, diff)
		}
	}
}

func TestPeekType(t *testing.T) {
	got, err := fhir.PeekType([]byte(` {"id":"x","resourceType":"ImagingStudy","status":1} `))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ImagingStudy"; got != want {
		t.Errorf("PeekType=%q, want %q", got, want)
	}
}

func TestIsJSONObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{}`: true, ` {"a":1} `: true, `[]`: false, `{`: false, ``: false, `"x"`: false, `{} {}`: false,
	} {
		if got := fhir.IsJSONObject([]byte(in)); got != want {
			t.Errorf("IsJSONObject(%q)=%v, want %v", in, got, want)
		}
	}
}

func TestErrors_KindAndExpression(t *testing.T) {
	base := fhir.Errorf(fhir.KindInvalid, "bad %s", "value")
	at := base.At("started")
	if got, want := at.Error(), "bad value (at [started])"; got != want {
		t.Errorf("Error()=%q, want %q", got, want)
	}
	if base.Expression != nil {
		t.Errorf("At changed the original: %v", base.Expression)
	}
	wrapped := errors.Join(errors.New("context"), at)
	if got, want := fhir.ErrorKind(wrapped), fhir.KindInvalid; got != want {
		t.Errorf("ErrorKind=%v, want %v", got, want)
	}
	if !fhir.IsKind(wrapped, fhir.KindInvalid) || fhir.IsKind(nil, fhir.KindInternal) {
		t.Error("IsKind misreports")
	}
	if got, want := fhir.ErrorKind(errors.New("plain")), fhir.KindInternal; got != want {
		t.Errorf("ErrorKind(plain)=%v, want %v", got, want)
	}
	cause := errors.New("cause")
	if e := (&fhir.Error{Kind: fhir.KindUnavailable, Message: "db down", Err: cause}); !errors.Is(e, cause) {
		t.Error("errors.Is does not reach the cause")
	}
}

// Check must refuse what Parse refuses in a resource built in Go, and name
// the element as Parse does.
func TestCodec_Check(t *testing.T) {
	c := newCodec(t)
	ok, _ := mustParse(t, c, benchStudy)
	if err := c.Check(ok); err != nil {
		t.Fatalf("Check(parsed study) = %v", err)
	}
	for name, tt := range map[string]struct {
		mod  func(*ispb.ImagingStudy)
		path string
		// printedAway: the printer leaves the faulty element out, so the
		// printed JSON no longer carries the fault for Parse to refuse.
		printedAway bool
	}{
		"no status": {mod: func(s *ispb.ImagingStudy) { s.Status = nil }, path: "ImagingStudy"}, // Parse names the parent too
		"code with a leading space": {mod: func(s *ispb.ImagingStudy) { s.Series[0].Modality.Code.Value = " CT" },
			path: "ImagingStudy.series[0].modality.code"},
		"empty description": {mod: func(s *ispb.ImagingStudy) { s.Description = &dpb.String{} },
			path: "ImagingStudy.description", printedAway: true},
		"subject of a wrong type": {mod: func(s *ispb.ImagingStudy) {
			r, err := fhir.Reference("Endpoint", "e")
			if err != nil {
				t.Fatal(err)
			}
			s.Subject = r
		}, path: "ImagingStudy.subject"},
	} {
		t.Run(name, func(t *testing.T) {
			s := proto.Clone(ok).(*ispb.ImagingStudy)
			tt.mod(s)
			err := c.Check(s)
			if !fhir.IsKind(err, fhir.KindUnprocessable) {
				t.Fatalf("Check = %v, want an unprocessable error", err)
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || !slices.ContainsFunc(fe.Expression, func(e string) bool { return strings.HasPrefix(e, tt.path) }) {
				t.Errorf("Check = %v (expression %v), want it to name %s", err, fe.Expression, tt.path)
			}
			// What Check refuses, Parse refuses from the printed JSON.
			if b, err := c.Marshal(s); err == nil && !tt.printedAway {
				if _, _, err := c.Parse(b); err == nil {
					t.Errorf("Parse accepted %s", b)
				}
			}
		})
	}
}

// CheckPart refuses in an element what Check refuses in the resource that
// holds it: what the audit writer relies on to check a record's entities
// alone.
func TestCodec_CheckPart(t *testing.T) {
	c := newCodec(t)
	ok, _ := mustParse(t, c, benchStudy)
	if err := c.CheckPart(ok.(*ispb.ImagingStudy).Series[0]); err != nil {
		t.Fatalf("CheckPart(a parsed series) = %v", err)
	}
	for name, mod := range map[string]func(*ispb.ImagingStudy_Series){
		"no uid":                    func(s *ispb.ImagingStudy_Series) { s.Uid = nil },
		"code with a leading space": func(s *ispb.ImagingStudy_Series) { s.Modality.Code.Value = " CT" },
		"empty description":         func(s *ispb.ImagingStudy_Series) { s.Description = &dpb.String{} },
		"control character":         func(s *ispb.ImagingStudy_Series) { s.Description = &dpb.String{Value: "a\x01b"} },
		"endpoint of a wrong type": func(s *ispb.ImagingStudy_Series) {
			r, err := fhir.Reference("Patient", "p")
			if err != nil {
				t.Fatal(err)
			}
			s.Endpoint = []*dpb.Reference{r}
		},
	} {
		t.Run(name, func(t *testing.T) {
			study := proto.Clone(ok).(*ispb.ImagingStudy)
			mod(study.Series[0])
			if err := c.Check(study); err == nil {
				t.Fatal("Check accepts the study: not a case for this test")
			}
			if err := c.CheckPart(study.Series[0]); !fhir.IsKind(err, fhir.KindUnprocessable) {
				t.Errorf("CheckPart = %v, want an unprocessable error", err)
			}
		})
	}
}

func TestReference_TypedAsParsed(t *testing.T) {
	parsed, _ := mustParse(t, newCodec(t), benchStudy)
	got, err := fhir.Reference("Patient", "p")
	if err != nil {
		t.Fatal(err)
	}
	if want := parsed.(*ispb.ImagingStudy).Subject; !proto.Equal(got, want) {
		t.Errorf("Reference(Patient, p) = %v, want %v", got, want)
	}
}
