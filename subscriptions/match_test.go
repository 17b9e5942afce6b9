package subscriptions_test

import (
	"testing"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/subscriptions"
)

func newMatcher(t *testing.T) *subscriptions.Matcher {
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Subscription())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	m, err := subscriptions.NewMatcher(reg, codec, testBase)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const studyCT = `{"resourceType":"ImagingStudy","id":"s1","status":"available","subject":{"reference":"Patient/p1"},
	"started":"2026-03-04T10:00:00Z",
	"series":[{"uid":"1.2","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`

func TestMatcher_Criteria(t *testing.T) {
	m := newMatcher(t)
	ev := &subscriptions.Event{ID: "e", Kind: subscriptions.KindResourceChanged, Focus: "ImagingStudy/s1", FocusType: "ImagingStudy", Method: "POST", Resource: []byte(studyCT)}
	for _, tc := range []struct {
		criteria string
		want     bool
	}{
		{"ImagingStudy?patient=Patient/p1", true},
		{"ImagingStudy?patient=p1", true},
		{"ImagingStudy?patient=Patient/p2", false},
		{"ImagingStudy?patient=Patient/p2,Patient/p1", true},
		{"ImagingStudy?patient=Patient/p1&modality=CT", true},
		{"ImagingStudy?patient=Patient/p1&modality=MR", false},
		{"ImagingStudy?modality=http://dicom.nema.org/resources/ontology/DCM|CT", true},
		{"ImagingStudy?modality=http://other|CT", false},
		{"ImagingStudy?status=available", true},
		{"ImagingStudy?status:not=available", false},
		{"ImagingStudy?started=ge2026-03-01", true},
		{"ImagingStudy?started=lt2026-03-01", false},
		{"ImagingStudy?_id=s1", true},
		{"ImagingStudy", true},
	} {
		t.Run(tc.criteria, func(t *testing.T) {
			f, err := m.Compile(&subscriptions.Subscription{ID: "x", Criteria: tc.criteria})
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			if got := len(m.Match(ev, []*subscriptions.Filter{f})) == 1; got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMatcher_Parse_Refusals(t *testing.T) {
	m := newMatcher(t)
	for _, tc := range []struct{ name, body string }{
		{"unsupported type", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"Patient?name=x","channel":{"type":"websocket"}}`},
		{"chain", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"ImagingStudy?patient.name=x","channel":{"type":"websocket"}}`},
		{"unknown parameter", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"ImagingStudy?nope=x","channel":{"type":"websocket"}}`},
		{"email channel", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"ImagingStudy?patient=p","channel":{"type":"email","endpoint":"mailto:a@b"}}`},
		{"rest-hook without endpoint", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"ImagingStudy?patient=p","channel":{"type":"rest-hook"}}`},
		{"unknown topic", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"urn:other:topic","channel":{"type":"websocket"}}`},
		{"topic filter on other parameter", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"` + subscriptions.TopicStudyAvailable + `",
			"_criteria":{"extension":[{"url":"` + subscriptions.ExtFilterCriteria + `","valueString":"ImagingStudy?status=available"}]},"channel":{"type":"websocket"}}`},
		{"full resources over websocket", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"` + subscriptions.TopicStudyChanged + `",
			"channel":{"type":"websocket","payload":"application/fhir+json","_payload":{"extension":[{"url":"` + subscriptions.ExtPayloadContent + `","valueCode":"full-resource"}]}}}`},
		{"bad payload content", `{"resourceType":"Subscription","id":"a","status":"requested","criteria":"` + subscriptions.TopicStudyChanged + `",
			"channel":{"type":"websocket","payload":"application/fhir+json","_payload":{"extension":[{"url":"` + subscriptions.ExtPayloadContent + `","valueCode":"everything"}]}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// As a write of a new subscription is checked: decoded, then
			// its topic and criteria compiled.
			s, err := m.Decode([]byte(tc.body))
			if err == nil {
				_, err = m.Compile(s)
			}
			if got, want := fhir.ErrorKind(err), fhir.KindUnprocessable; got != want {
				t.Errorf("kind = %v (%v), want %v", got, err, want)
			}
		})
	}
}

func TestMatcher_StudyAvailable(t *testing.T) {
	m := newMatcher(t)
	ev := (&subscriptions.StudyAvailable{EventID: "e", Study: "ImagingStudy/s1", Patient: "Patient/p1", ModalitiesInStudy: []string{"CT", "SR"}}).Event()
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"", true},
		{"ImagingStudy?patient=Patient/p1", true},
		{"ImagingStudy?patient=p1&modality=SR", true},
		{"ImagingStudy?patient=Patient/p1&modality=MR,DCM|CT", true},
		{"ImagingStudy?modality=http://dicom.nema.org/resources/ontology/DCM|CT", true},
		{"ImagingStudy?modality=MR", false},
		{"ImagingStudy?patient=Patient/p2", false},
		{"ImagingStudy?patient=" + testBase + "/Patient/p1", true},
		{"ImagingStudy?patient=https://other.example/fhir/Patient/p1", false},
		{"ImagingStudy?patient=Patient/p1&patient=Patient/p2", false},
		{"ImagingStudy?modality=CT&modality=SR", true},
		{"ImagingStudy?modality=CT&modality=MR", false},
	} {
		f, err := m.Compile(&subscriptions.Subscription{ID: "x", Topic: subscriptions.TopicStudyAvailable, Criteria: tc.filter})
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		if got := len(m.Match(ev, []*subscriptions.Filter{f})) == 1; got != tc.want {
			t.Errorf("filter %q: match = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestMatcher_StudyAvailable_Refusals(t *testing.T) {
	m := newMatcher(t)
	for _, filter := range []string{
		"ImagingStudy?started=2026",
		"ImagingStudy?patient:missing=true",
		"ImagingStudy?modality:not=CT",
		"ImagingStudy?patient=Device/d1",
		"ImagingStudy?patient=Patient/a_b",
		"Patient?_id=p1",
	} {
		if _, err := m.Compile(&subscriptions.Subscription{ID: "x", Topic: subscriptions.TopicStudyAvailable, Criteria: filter}); err == nil {
			t.Errorf("filter %q compiled, want a refusal", filter)
		} else if !fhir.IsKind(err, fhir.KindUnprocessable) {
			t.Errorf("filter %q: %v, want an unprocessable error", filter, err)
		}
	}
}
