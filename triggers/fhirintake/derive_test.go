package fhirintake

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/triggers"
)

func res(typ, body string) *fhir.Resource {
	if body == "" {
		return &fhir.Resource{Type: typ, ID: "x", Deleted: true}
	}
	return &fhir.Resource{Type: typ, ID: "x", Body: []byte(body)}
}

func kinds(t *testing.T, typ, prev, next string) []triggers.Kind {
	t.Helper()
	var p *fhir.Resource
	if prev != "" {
		p = res(typ, prev)
	}
	ds, err := derive(p, res(typ, next))
	if err != nil {
		t.Fatal(err)
	}
	var out []triggers.Kind
	for _, d := range ds {
		out = append(out, d.ev.Kind)
	}
	return out
}

func TestDerive_Kinds(t *testing.T) {
	const (
		apptBooked   = `{"resourceType":"Appointment","status":"booked","start":"2026-03-01T10:00:00Z"}`
		apptPending  = `{"resourceType":"Appointment","status":"pending","start":"2026-03-01T10:00:00Z"}`
		apptProposed = `{"resourceType":"Appointment","status":"proposed","start":"2026-03-01T10:00:00Z"}`
		apptMoved    = `{"resourceType":"Appointment","status":"booked","start":"2026-03-02T10:00:00Z"}`
		apptSameUTC  = `{"resourceType":"Appointment","status":"booked","start":"2026-03-01T11:00:00+01:00"}`
		apptCancel   = `{"resourceType":"Appointment","status":"cancelled","start":"2026-03-01T10:00:00Z"}`
		apptNoShow   = `{"resourceType":"Appointment","status":"noshow","start":"2026-03-01T10:00:00Z"}`
		apptError    = `{"resourceType":"Appointment","status":"entered-in-error","start":"2026-03-01T10:00:00Z"}`

		edArrived  = `{"resourceType":"Encounter","status":"arrived","class":{"code":"EMER"},"location":[{"location":{"reference":"Location/ed"},"status":"active"}]}`
		edTriaged  = `{"resourceType":"Encounter","status":"triaged","class":{"code":"EMER"},"location":[{"location":{"reference":"Location/ed"},"status":"active"}]}`
		edMoved    = `{"resourceType":"Encounter","status":"in-progress","class":{"code":"EMER"},"location":[{"location":{"reference":"Location/ed"},"status":"completed"},{"location":{"reference":"Location/ct"},"status":"active"}]}`
		edAdmitted = `{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP"},"location":[{"location":{"reference":"Location/ward"},"status":"active"}]}`
		inpatient  = `{"resourceType":"Encounter","status":"in-progress","class":{"code":"ACUTE"}}`
		onLeave    = `{"resourceType":"Encounter","status":"onleave","class":{"code":"IMP"}}`
		backIn     = `{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP"}}`
		planned    = `{"resourceType":"Encounter","status":"planned","class":{"code":"AMB"}}`
		ambArrived = `{"resourceType":"Encounter","status":"arrived","class":{"code":"AMB"}}`
		finished   = `{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"}}`
		encCancel  = `{"resourceType":"Encounter","status":"cancelled","class":{"code":"EMER"}}`

		srDraft    = `{"resourceType":"ServiceRequest","status":"draft","intent":"order"}`
		srActive   = `{"resourceType":"ServiceRequest","status":"active","intent":"order"}`
		srProposal = `{"resourceType":"ServiceRequest","status":"active","intent":"proposal"}`
		srRevoked  = `{"resourceType":"ServiceRequest","status":"revoked","intent":"order"}`
		srError    = `{"resourceType":"ServiceRequest","status":"entered-in-error","intent":"order"}`
		srDone     = `{"resourceType":"ServiceRequest","status":"completed","intent":"order"}`
		deleted    = ""
	)
	cases := []struct {
		name            string
		typ, prev, next string
		want            []triggers.Kind
	}{
		{"booked on create", "Appointment", "", apptBooked, []triggers.Kind{triggers.AppointmentBooked}},
		{"pending on create", "Appointment", "", apptPending, []triggers.Kind{triggers.AppointmentBooked}},
		{"proposed is no booking", "Appointment", "", apptProposed, nil},
		{"proposed to booked", "Appointment", apptProposed, apptBooked, []triggers.Kind{triggers.AppointmentBooked}},
		{"pending to booked is the same booking", "Appointment", apptPending, apptBooked, nil},
		{"unchanged", "Appointment", apptBooked, apptBooked, nil},
		{"start moved", "Appointment", apptBooked, apptMoved, []triggers.Kind{triggers.AppointmentRescheduled}},
		{"same instant in another zone", "Appointment", apptBooked, apptSameUTC, nil},
		{"cancelled", "Appointment", apptBooked, apptCancel, []triggers.Kind{triggers.AppointmentCancelled}},
		{"created cancelled", "Appointment", "", apptCancel, nil},
		{"entered in error", "Appointment", apptBooked, apptError, []triggers.Kind{triggers.AppointmentCancelled}},
		{"deleted while booked", "Appointment", apptBooked, deleted, []triggers.Kind{triggers.AppointmentCancelled}},
		{"no-show", "Appointment", apptBooked, apptNoShow, []triggers.Kind{triggers.AppointmentNoShow}},

		{"ED arrival", "Encounter", "", edArrived, []triggers.Kind{triggers.EDArrival}},
		{"triage is the same arrival", "Encounter", edArrived, edTriaged, nil},
		{"ED move is a transfer", "Encounter", edTriaged, edMoved, []triggers.Kind{triggers.Transfer}},
		{"ED patient admitted", "Encounter", edMoved, edAdmitted, []triggers.Kind{triggers.Admission}},
		{"inpatient on create", "Encounter", "", inpatient, []triggers.Kind{triggers.Admission}},
		{"back from leave", "Encounter", onLeave, backIn, nil},
		{"planned visit", "Encounter", "", planned, nil},
		{"outpatient arrives", "Encounter", planned, ambArrived, []triggers.Kind{triggers.Registration}},
		{"discharge", "Encounter", backIn, finished, []triggers.Kind{triggers.Discharge}},
		{"created finished", "Encounter", "", finished, nil},
		{"visit cancelled", "Encounter", edArrived, encCancel, []triggers.Kind{triggers.VisitCancelled}},

		{"order active on create", "ServiceRequest", "", srActive, []triggers.Kind{triggers.OrderPlaced}},
		{"draft", "ServiceRequest", "", srDraft, nil},
		{"draft to active", "ServiceRequest", srDraft, srActive, []triggers.Kind{triggers.OrderPlaced}},
		{"active unchanged", "ServiceRequest", srActive, srActive, nil},
		{"proposal is no order", "ServiceRequest", "", srProposal, nil},
		{"revoked", "ServiceRequest", srActive, srRevoked, []triggers.Kind{triggers.OrderCancelled}},
		{"entered in error", "ServiceRequest", srActive, srError, []triggers.Kind{triggers.OrderCancelled}},
		{"completed order is not cancelled", "ServiceRequest", srDone, srRevoked, nil},
		{"deleted active order", "ServiceRequest", srActive, deleted, []triggers.Kind{triggers.OrderCancelled}},
	}
	for _, c := range cases {
		t.Run(c.typ+"/"+c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, kinds(t, c.typ, c.prev, c.next)); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDerive_Details(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		typ  string
		body string
		want draft
	}{
		{"imaging order", "ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","priority":"stat",
			"identifier":[{"system":"urn:oid:1.2.3.4","value":"ORD-1"}],"subject":{"reference":"Patient/p1"},
			"code":{"coding":[{"system":"http://loinc.org","code":"24627-2","display":"Chest CT"},{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}]},
			"bodySite":[{"coding":[{"system":"http://snomed.info/sct","code":"51185008","display":"Thorax"}]}],
			"occurrenceDateTime":"2026-03-01T10:00:00+01:00","locationReference":[{"reference":"Location/ct1","display":"CT 1"}]}`,
			draft{patient: &reference{Reference: "Patient/p1"}, ev: triggers.CareEvent{Kind: triggers.OrderPlaced, Priority: triggers.PriorityStat,
				ScheduledStart: &start, Modality: "CT", Location: "CT 1", Placer: "ORD-1",
				Procedures: []triggers.Code{{System: "http://loinc.org", Code: "24627-2", Display: "Chest CT"}, {System: DICOMSystem, Code: "CT"}},
				BodySites:  []triggers.Code{{System: "http://snomed.info/sct", Code: "51185008", Display: "Thorax"}}}}},
		{"appointment", "Appointment", `{"resourceType":"Appointment","status":"booked","priority":1,"start":"2026-03-01T09:00:00Z",
			"identifier":[{"value":"A-1"}],"serviceType":[{"coding":[{"system":"urn:local","code":"MR-KNEE","display":"Knee"}]}],
			"basedOn":[{"reference":"ServiceRequest/o1"}],
			"participant":[{"actor":{"reference":"Location/mr2"},"status":"accepted"},{"actor":{"reference":"Patient/p1"},"status":"accepted"}]}`,
			draft{patient: &reference{Reference: "Patient/p1"}, basedOn: []reference{{Reference: "ServiceRequest/o1"}},
				ev: triggers.CareEvent{Kind: triggers.AppointmentBooked, Priority: triggers.PriorityStat, ScheduledStart: &start,
					Modality: "MR", Location: "mr2", Placer: "A-1", Procedures: []triggers.Code{{System: "urn:local", Code: "MR-KNEE", Display: "Knee"}}}}},
		{"ED arrival is stat", "Encounter", `{"resourceType":"Encounter","status":"arrived","class":{"code":"EMER"},"priority":{"coding":[{"code":"R"}]},
			"subject":{"reference":"Patient/p1"},"location":[{"location":{"reference":"Location/ed","display":"ED"}}]}`,
			draft{patient: &reference{Reference: "Patient/p1"}, ev: triggers.CareEvent{Kind: triggers.EDArrival, Priority: triggers.PriorityStat, Location: "ED"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, err := derive(nil, res(c.typ, c.body))
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 {
				t.Fatalf("%d events, want 1", len(ds))
			}
			if diff := cmp.Diff(c.want, ds[0], cmp.AllowUnexported(draft{})); diff != "" {
				t.Errorf("draft (-want +got):\n%s", diff)
			}
		})
	}
}

func TestModalityOf(t *testing.T) {
	cases := []struct {
		cc   codeableConcept
		want string
	}{
		{codeableConcept{Coding: []coding{{System: "urn:local", Code: "CT0012"}}}, "CT"},
		{codeableConcept{Coding: []coding{{System: "urn:local", Code: "CTHEAD"}}}, ""},
		{codeableConcept{Coding: []coding{{System: "http://loinc.org", Code: "36643-5", Display: "XR Chest 2 Views"}}}, "DX"},
		{codeableConcept{Text: "Mammography screening"}, "MG"},
		{codeableConcept{Text: "Referral to US clinic"}, ""},
		{codeableConcept{Coding: []coding{{System: "urn:local", Code: "PTT"}}}, ""},
		{codeableConcept{Coding: []coding{{System: "urn:local", Code: "MR-1"}, {System: DICOMSystem, Code: "PT"}}}, "PT"},
	}
	for _, c := range cases {
		if got := modalityOf(&c.cc); got != c.want {
			t.Errorf("modalityOf(%+v) = %q, want %q", c.cc, got, c.want)
		}
	}
}

func TestPriorities(t *testing.T) {
	p := func(n int64) *int64 { return &n }
	for _, c := range []struct {
		in   *int64
		want triggers.Priority
	}{{nil, "routine"}, {p(0), "routine"}, {p(1), "stat"}, {p(2), "stat"}, {p(3), "urgent"}, {p(4), "urgent"}, {p(5), "routine"}, {p(9), "routine"}} {
		if got := appointmentPriority(c.in); got != c.want {
			t.Errorf("appointmentPriority(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := encounterPriority(&codeableConcept{Coding: []coding{{System: ActPrioritySystem, Code: "EM"}}}); got != triggers.PriorityStat {
		t.Errorf("EM = %s, want stat", got)
	}
	if got := requestPriority("asap"); got != triggers.PriorityASAP {
		t.Errorf("asap = %s", got)
	}
}
