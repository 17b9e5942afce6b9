package fhir_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/fhir"
)

var benchStudy = []byte(`{"resourceType":"ImagingStudy","id":"x","identifier":[{"use":"official","system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"status":"available","subject":{"reference":"Patient/p"},"started":"2020-01-02T10:00:00+01:00","endpoint":[{"reference":"Endpoint/e"}],"modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"numberOfSeries":1,"numberOfInstances":2,"series":[{"uid":"1.2.3.1","number":1,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"numberOfInstances":2,"instance":[{"uid":"1.2.3.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1},{"uid":"1.2.3.1.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":2}]}]}`)

func BenchmarkCodec_ParseImagingStudy(b *testing.B) {
	c, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, _, err := c.Parse(benchStudy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCodec_MarshalImagingStudy(b *testing.B) {
	c, _ := fhir.NewCodec()
	res, _, err := c.Parse(benchStudy)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Marshal(res); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLargeStudy is an ImagingStudy of the size the bulk-load benchmark
// makes at its upper end: 5 series of 40 instances.
func benchLargeStudy() []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"A1"}],"status":"available","subject":{"reference":"Patient/p"},"started":"2020-01-02T10:00:00+01:00","modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"numberOfSeries":5,"numberOfInstances":200,"series":[`)
	for s := 1; s <= 5; s++ {
		if s > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"uid":"1.2.3.%d","number":%d,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"description":"AX %d","bodySite":{"system":"http://snomed.info/sct","code":"51185008","display":"Chest"},"numberOfInstances":40,"instance":[`, s, s, s)
		for i := 1; i <= 40; i++ {
			if i > 1 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"uid":"1.2.3.%d.%d","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":%d}`, s, i, i)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkCodec_CheckLargeImagingStudy(b *testing.B) {
	c, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	res, _, err := c.Parse(benchLargeStudy())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(res); err != nil {
			b.Fatal(err)
		}
	}
}
