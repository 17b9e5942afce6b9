package fhir_test

import (
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
