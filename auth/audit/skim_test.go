package audit

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// skimSeeds are bodies of the shapes the audit reads, and odd ones.
var skimSeeds = []string{
	`{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]}`,
	`{"resourceType":"ImagingStudy","id":"s","subject":{"reference":"Patient/p1","display":"x"},"series":[{"uid":"1.2","number":1,"instance":[{"uid":"1.2.3"}]}]}`,
	`{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/p2"}},{"actor":{"reference":"Practitioner/d"}},{}]}`,
	`{"resourceType":"Task","for":{"reference":"Patient/p3"}}`,
	`{"resourceType":"AuditEvent","entity":[{"what":{"reference":"Patient/p4"}},{"what":{}}]}`,
	`{"resourceType":"Provenance","target":[{"reference":"Patient/p5"},{"reference":"ImagingStudy/s"}]}`,
	`{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"self","url":"http://h/fhir/ImagingStudy?patient=p1"}],"entry":[
		{"fullUrl":"http://h/fhir/ImagingStudy/s","resource":{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}},"search":{"mode":"match"}},
		{"resource":{"resourceType":"Patient","id":"p9"},"search":{"mode":"include"}}]}`,
	`{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201","location":"Patient/p7/_history/1"}}]}`,
	`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/p8"}}]}`,
	`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"bad \"x\" \u00e9"}]}`,
	`{"resourceType":"Patient","id":"p\u0031","extension":[{"valueDecimal":-1.5e+3},{"valueBoolean":true},{"valueString":null}]}`,
	// Odd: encoding/json decides these (folded keys, duplicates, nulls,
	// wrong shapes, invalid JSON, trailing data).
	`{"resourcetype":"Patient","id":"p1"}`,
	`{"resourceType":"Patient","id":"p1","id":"p2"}`,
	`{"resourceType":"ImagingStudy","subject":null}`,
	`{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"},"entity":"odd","target":7}`,
	`{"resourceType":"Patient","id":"p1"} x`,
	`{"resourceType":"Patient","id":"p1",}`,
	`[{"resourceType":"Patient"}]`,
	`{"resourceType":"Patient","\u0069d":"p1"}`,
	`{"resourceType":"Patient","ıd":"p1"}`,
	``,
}

// FuzzSkimResource holds skimResource to encoding/json: wherever it is
// sure, it decodes what encoding/json decodes.
func FuzzSkimResource(f *testing.F) {
	for _, s := range skimSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok, sure := skimResource(body)
		if !sure {
			return
		}
		want, wantOK := decodeJSON(body)
		if ok != wantOK {
			t.Fatalf("ok = %v, encoding/json: %v", ok, wantOK)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("skimmed differently from encoding/json (-json +skim):\n%s", diff)
		}
	})
}

func TestSkimResource(t *testing.T) {
	for i, s := range skimSeeds {
		_, _, sure := skimResource([]byte(s))
		// The first eleven are what the server writes and reads: they
		// must take the fast path, or it is no faster.
		if wantSure := i < 11; sure != wantSure {
			t.Errorf("seed %d: sure = %v, want %v: %s", i, sure, wantSure, s)
		}
		got, gotOK := decodeResource([]byte(s))
		want, wantOK := decodeJSON([]byte(s))
		if gotOK != wantOK || !cmp.Equal(want, got) {
			t.Errorf("seed %d: decodeResource differs from encoding/json: %s", i, cmp.Diff(want, got))
		}
	}
}

// benchSearchset is a page of 100 ImagingStudy of 3 series of 30 instances,
// ~350 kB as the paged scan of the search benchmark returns it.
func benchSearchset() []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"http://h/fhir/ImagingStudy?_sort=_lastUpdated"}],"entry":[`)
	for e := range 100 {
		if e > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://h/fhir/ImagingStudy/s%d","resource":{"resourceType":"ImagingStudy","id":"s%d","meta":{"versionId":"1","lastUpdated":"2026-12-06T10:00:00.123456Z"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.%d"}],"status":"available","modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"subject":{"reference":"Patient/p%d"},"started":"2020-01-02T10:00:00+01:00","numberOfSeries":3,"numberOfInstances":90,"series":[`, e, e, e, e/5)
		for s := range 3 {
			if s > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"uid":"1.2.%d.%d","number":%d,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"numberOfInstances":30,"instance":[`, e, s, s+1)
			for i := range 30 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"uid":"1.2.%d.%d.%d","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":%d}`, e, s, i, i+1)
			}
			b.WriteString(`]}`)
		}
		b.WriteString(`]},"search":{"mode":"match"}}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkDecodeResource_Searchset(b *testing.B) {
	body := benchSearchset()
	for _, c := range []struct {
		name   string
		decode func([]byte) (*resourceFields, bool)
	}{{"skim", decodeResource}, {"encoding-json", decodeJSON}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r, _ := c.decode(body)
				if len(r.Entry) != 100 {
					b.Fatal("entries missing")
				}
			}
		})
	}
}
