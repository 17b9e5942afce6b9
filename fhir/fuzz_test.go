package fhir_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/priorflow/priorflow/fhir"
)

// FuzzCodecParse feeds arbitrary bytes to Codec.Parse: it must never panic,
// must fail only with a *fhir.Error of KindInvalid or KindUnprocessable, and
// what it accepts must print and parse back to the same proto, with index
// values that can be extracted.
func FuzzCodecParse(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `{"resourceType":"Patient"}`, `{"resourceType":5}`, `{"resourceType":"Study"}`,
		`{"resourceType":"ImagingStudy","id":"example","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045"}],"status":"available","subject":{"reference":"Patient/dicom"},"started":"2011-01-01T11:01:20+03:00","numberOfSeries":1,"numberOfInstances":1,"series":[{"uid":"2.16.124.113543.6003.2588828330.45298.17418.2723805630","number":3,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"description":"CT Surview 180","numberOfInstances":1,"bodySite":{"system":"http://snomed.info/sct","code":"67734004","display":"Upper Trunk Structure"},"instance":[{"uid":"2.16.124.113543.6003.189642796.63084.16748.2599092903","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1}]}]}`,
		`{"resourceType":"ImagingStudy","status":"entered-in-error","subject":{"reference":"https://other.example/fhir/Patient/p9/_history/2"},"basedOn":[{"reference":"ServiceRequest/s1"}],"endpoint":[{"reference":"Endpoint/e1"}],"interpreter":[{"reference":"PractitionerRole/r1"}],"reasonCode":[{"coding":[{"system":"s","code":"1"}],"text":"t"}],"started":"2021-02"}`,
		`{"resourceType":"ImagingStudy","status":"available","contained":[{"resourceType":"Patient","id":"c1"}],"subject":{"reference":"#c1"}}`,
		`{"resourceType":"Patient","id":"example","identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"12345"}],"active":true,"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]},"deceasedBoolean":false,"link":[{"other":{"reference":"Patient/pat2"},"type":"seealso"}]}`,
		`{"resourceType":"Endpoint","id":"example-wadors","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"name":"PACS Hospital DICOM WADO-RS endpoint","payloadType":[{"text":"DICOM WADO-RS"}],"payloadMimeType":["application/dicom"],"address":"https://pacs.hospital.org/wado-rs","managingOrganization":{"reference":"Organization/hl7"}}`,
		`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2021-01-01T10:00:00.123456Z"},"length":{"value":1.50,"unit":"h"}}`,
		`{"resourceType":"ImagingStudy","status":"done","subject":{"reference":"Observation/1"},"started":"2021-02-30"}`,
		`{"resourceType":"Patient","gender":"x","birthDate":"2021-13","nickname":1}`,
		`{"resourceType":"Patient","name":[{"family":"Ü'; DROP TABLE x;--\u0000"}]}`,
	} {
		f.Add([]byte(s))
	}
	c, err := fhir.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, typ, err := c.Parse(body)
		if err != nil {
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error %T (%v), want *fhir.Error", err, err)
			}
			if fe.Kind != fhir.KindInvalid && fe.Kind != fhir.KindUnprocessable {
				t.Fatalf("Parse Kind=%v, want invalid or unprocessable (%v)", fe.Kind, err)
			}
			return
		}
		if got := fhir.TypeOf(res); got != typ {
			t.Fatalf("Parse type=%q, but the proto is a %s", typ, got)
		}
		if rt := reg.Type(typ); rt != nil {
			for _, p := range rt.Params {
				p.Values(res)
			}
		}
		b, err := c.Marshal(res)
		if err != nil {
			t.Fatalf("Marshal of a parsed %s: %v", typ, err)
		}
		again, _, err := c.Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%s)): %v\n%s", body, err, b)
		}
		if diff := cmp.Diff(res, again, protocmp.Transform()); diff != "" {
			t.Fatalf("round trip of %s (-want +got):\n%s", body, diff)
		}
	})
}
