package fhirintake_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/postgres"
)

const patientP1 = `{"resourceType":"Patient","id":"p1",
	"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.36.146.595.217.0.1","value":"MRN-12345"},
	              {"system":"http://hl7.org/fhir/sid/us-ssn","value":"444222222"}],
	"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25"}`

var p1Identifiers = []triggers.Identifier{
	{System: "urn:oid:1.2.36.146.595.217.0.1", Value: "MRN-12345", Type: "MR"},
	{System: "http://hl7.org/fhir/sid/us-ssn", Value: "444222222"},
}

func appointment(status, start string) string {
	return `{"resourceType":"Appointment","status":"` + status + `","start":"` + start + `","end":"2026-03-01T11:00:00Z",
	  "identifier":[{"system":"urn:oid:1.2.3.9","value":"APT-7"}],
	  "serviceType":[{"coding":[{"system":"urn:local:services","code":"CT-CHEST","display":"CT chest"}]}],
	  "participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"},
	                 {"actor":{"reference":"Location/ct1","display":"CT Room 1"},"status":"accepted"}]}`
}

func withID(body, id string) string {
	return strings.Replace(body, `{"resourceType":"Appointment",`, `{"resourceType":"Appointment","id":"`+id+`",`, 1)
}

func TestIntake_AppointmentLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)

	created := h.must(201, "POST", "/Appointment", appointment("booked", "2026-03-01T10:00:00Z"))
	id := created["id"].(string)
	ev := h.next()
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if got, want := ev.subject, "priorflow.events.appointment-booked"; got != want {
		t.Errorf("subject = %s, want %s", got, want)
	}
	want := triggers.CareEvent{
		SchemaVersion: 1, ID: triggers.EventID("fhir", "Appointment", id, "1", "appointment-booked"),
		Kind: triggers.AppointmentBooked, OccurredAt: ev.OccurredAt, ScheduledStart: &start, Priority: triggers.PriorityRoutine,
		Patient: triggers.Patient{Identifiers: p1Identifiers, Family: "Chalmers", Given: []string{"Peter", "James"},
			BirthDate: "1974-12-25", Sex: "male", FHIRID: "p1"},
		Procedures:   []triggers.Code{{System: "urn:local:services", Code: "CT-CHEST", Display: "CT chest"}},
		Modality:     "CT",
		Location:     "CT Room 1",
		Placer:       "APT-7",
		SourceSystem: "fhir",
		Origin:       triggers.Origin{Reference: "Appointment/" + id + "/_history/1"},
	}
	if diff := cmp.Diff(want, ev.CareEvent); diff != "" {
		t.Errorf("booked event (-want +got):\n%s", diff)
	}
	if ev.OccurredAt.IsZero() {
		t.Error("occurredAt is zero")
	}

	moved := withID(appointment("booked", "2026-03-02T08:30:00Z"), id)
	h.must(200, "PUT", "/Appointment/"+id, moved)
	ev = h.next()
	if ev.Kind != triggers.AppointmentRescheduled || ev.ScheduledStart == nil || !ev.ScheduledStart.Equal(time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)) {
		t.Errorf("after moving the start: %s at %v, want appointment-rescheduled at 2026-03-02T08:30Z", ev.Kind, ev.ScheduledStart)
	}
	if ev.Placer != "APT-7" {
		t.Errorf("rescheduled placer = %q, want the booking's APT-7", ev.Placer)
	}

	h.must(200, "PUT", "/Appointment/"+id, moved) // unchanged: version 3, no event
	h.must(200, "PUT", "/Appointment/"+id, withID(appointment("cancelled", "2026-03-02T08:30:00Z"), id))
	ev = h.next() // the next event is the cancellation: the unchanged PUT made none
	if got, want := ev.Kind, triggers.AppointmentCancelled; got != want {
		t.Errorf("kind = %s, want %s", got, want)
	}
	if got, want := ev.Origin.Reference, "Appointment/"+id+"/_history/4"; got != want {
		t.Errorf("origin = %s, want %s", got, want)
	}
	if got, want := ev.subject, "priorflow.events.appointment-cancelled"; got != want {
		t.Errorf("subject = %s, want %s", got, want)
	}
	h.eventually("outbox emptied", func() bool { p, b := h.outbox(); return p+b == 0 })
	if got := h.streamCount(); got != 3 {
		t.Errorf("%d events in the stream, want 3", got)
	}
}

func TestIntake_EncounterArrivalAndTransfer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	enc := `{"resourceType":"Encounter","id":"e1","status":"arrived",
	  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},
	  "identifier":[{"system":"urn:oid:1.2.3.10","value":"V-100"}],"subject":{"reference":"Patient/p1"},
	  "period":{"start":"2026-03-01T02:00:00Z"},
	  "location":[{"location":{"reference":"Location/ed","display":"Emergency"},"status":"active"}]}`
	h.must(201, "PUT", "/Encounter/e1", enc)
	ev := h.next()
	if ev.Kind != triggers.EDArrival || ev.Priority != triggers.PriorityStat || ev.Location != "Emergency" || ev.Placer != "V-100" {
		t.Errorf("arrival = %s/%s at %q placer %q, want ed-arrival/stat at Emergency placer V-100", ev.Kind, ev.Priority, ev.Location, ev.Placer)
	}
	if diff := cmp.Diff(p1Identifiers, ev.Patient.Identifiers); diff != "" {
		t.Errorf("identifiers (-want +got):\n%s", diff)
	}

	moved := strings.Replace(enc, `"status":"arrived"`, `"status":"in-progress"`, 1)
	moved = strings.Replace(moved, `"location":[{"location":{"reference":"Location/ed","display":"Emergency"},"status":"active"}]`,
		`"location":[{"location":{"reference":"Location/ed","display":"Emergency"},"status":"completed"},{"location":{"reference":"Location/ct","display":"CT"},"status":"active"}]`, 1)
	h.must(200, "PUT", "/Encounter/e1", moved)
	ev = h.next()
	if ev.Kind != triggers.Transfer || ev.Location != "CT" || ev.PriorLocation != "Emergency" {
		t.Errorf("move = %s to %q from %q, want transfer to CT from Emergency", ev.Kind, ev.Location, ev.PriorLocation)
	}
	if got, want := ev.subject, "priorflow.events.transfer"; got != want {
		t.Errorf("subject = %s, want %s", got, want)
	}
}

// A planned inpatient Encounter is what ADT^A05 is in HL7 v2: a
// pre-admission due by its planned start, moved when the start moves and
// cancelled with the Encounter. A planned outpatient visit is no event.
func TestIntake_EncounterPreAdmission(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	enc := func(status, class, start string) string {
		return `{"resourceType":"Encounter","id":"e2","status":"` + status + `",
		  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + class + `"},
		  "identifier":[{"system":"urn:oid:1.2.3.10","value":"V-200"}],"subject":{"reference":"Patient/p1"},
		  "period":{"start":"` + start + `"}}`
	}
	h.must(201, "PUT", "/Encounter/e3", strings.Replace(enc("planned", "AMB", "2026-03-09T08:00:00Z"), `"e2"`, `"e3"`, 1))
	h.must(201, "PUT", "/Encounter/e2", enc("planned", "IMP", "2026-03-10T07:00:00Z"))
	ev := h.next()
	if want := time.Date(2026, 3, 10, 7, 0, 0, 0, time.UTC); ev.Kind != triggers.PreAdmission || ev.ScheduledStart == nil || !ev.ScheduledStart.Equal(want) || ev.Placer != "V-200" {
		t.Errorf("planned = %s at %v placer %q, want pre-admission at %v placer V-200 (the planned outpatient visit is no event)", ev.Kind, ev.ScheduledStart, ev.Placer, want)
	}
	h.must(200, "PUT", "/Encounter/e2", enc("planned", "IMP", "2026-03-11T07:00:00Z"))
	ev = h.next()
	if want := time.Date(2026, 3, 11, 7, 0, 0, 0, time.UTC); ev.Kind != triggers.PreAdmission || ev.ScheduledStart == nil || !ev.ScheduledStart.Equal(want) {
		t.Errorf("moved = %s at %v, want pre-admission at %v", ev.Kind, ev.ScheduledStart, want)
	}
	h.must(200, "PUT", "/Encounter/e2", enc("cancelled", "IMP", "2026-03-11T07:00:00Z"))
	ev = h.next()
	if ev.Kind != triggers.VisitCancelled || ev.Placer != "V-200" {
		t.Errorf("cancelled = %s placer %q, want visit-cancelled V-200", ev.Kind, ev.Placer)
	}
	h.eventually("outbox emptied", func() bool { p, b := h.outbox(); return p+b == 0 })
	if got := h.streamCount(); got != 3 {
		t.Errorf("%d events in the stream, want 3", got)
	}
}

func TestIntake_ImagingOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	created := h.must(201, "POST", "/ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","priority":"urgent",
	  "identifier":[{"system":"urn:oid:1.2.3.11","value":"ORD-55"}],"subject":{"reference":"Patient/p1"},
	  "category":[{"coding":[{"system":"http://snomed.info/sct","code":"363679005","display":"Imaging"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"30745-4","display":"CT Head"},{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}]},
	  "bodySite":[{"coding":[{"system":"http://snomed.info/sct","code":"69536005","display":"Head"}]}],
	  "occurrenceDateTime":"2026-03-05T14:00:00+01:00"}`)
	ev := h.next()
	if ev.Kind != triggers.OrderPlaced || ev.Modality != "CT" || ev.Priority != triggers.PriorityUrgent || ev.Placer != "ORD-55" {
		t.Errorf("order = %s modality %q priority %s placer %q, want order-placed CT urgent ORD-55", ev.Kind, ev.Modality, ev.Priority, ev.Placer)
	}
	if want := time.Date(2026, 3, 5, 13, 0, 0, 0, time.UTC); ev.ScheduledStart == nil || !ev.ScheduledStart.Equal(want) {
		t.Errorf("scheduledStart = %v, want %v", ev.ScheduledStart, want)
	}
	if diff := cmp.Diff([]triggers.Code{{System: "http://snomed.info/sct", Code: "69536005", Display: "Head"}}, ev.BodySites); diff != "" {
		t.Errorf("body sites (-want +got):\n%s", diff)
	}
	if got, want := ev.ID, triggers.EventID("fhir", "ServiceRequest", created["id"].(string), "1", "order-placed"); got != want {
		t.Errorf("id = %s, want %s", got, want)
	}
}

// An Appointment based on an order takes the order's procedure, modality
// and body site when it names none itself.
func TestIntake_AppointmentBasedOnOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	h.must(201, "PUT", "/ServiceRequest/o1", `{"resourceType":"ServiceRequest","id":"o1","status":"draft","intent":"order","subject":{"reference":"Patient/p1"},
	  "code":{"coding":[{"system":"urn:local:orders","code":"MR0042","display":"MR knee"}]},
	  "bodySite":[{"coding":[{"system":"http://snomed.info/sct","code":"72696002","display":"Knee"}]}]}`)
	h.must(201, "POST", "/Appointment", `{"resourceType":"Appointment","status":"booked","start":"2026-04-01T09:00:00Z","end":"2026-04-01T09:30:00Z","priority":2,
	  "basedOn":[{"reference":"ServiceRequest/o1"}],"participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"}]}`)
	ev := h.next()
	if ev.Kind != triggers.AppointmentBooked || ev.Modality != "MR" || ev.Priority != triggers.PriorityStat {
		t.Errorf("booked = %s modality %q priority %s, want appointment-booked MR stat", ev.Kind, ev.Modality, ev.Priority)
	}
	if len(ev.Procedures) != 1 || ev.Procedures[0].Code != "MR0042" || len(ev.BodySites) != 1 || ev.BodySites[0].Code != "72696002" {
		t.Errorf("procedures %v body sites %v, want the order's", ev.Procedures, ev.BodySites)
	}
}

// A transaction Bundle may list the Appointment before the Patient it
// references: the event still carries the Patient, and there is one event.
func TestIntake_TransactionBundle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:7f2c1a40-0000-4000-8000-000000000002","resource":{"resourceType":"Appointment","status":"booked","start":"2026-03-01T10:00:00Z","end":"2026-03-01T10:30:00Z",
	     "participant":[{"actor":{"reference":"urn:uuid:7f2c1a40-0000-4000-8000-000000000001"},"status":"accepted"}]},
	   "request":{"method":"POST","url":"Appointment"}},
	  {"fullUrl":"urn:uuid:7f2c1a40-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"MRN-9"},{"system":"urn:oid:4.5.6","value":"X-9"}]},
	   "request":{"method":"POST","url":"Patient"}}]}`
	resp := h.must(200, "POST", "", bundle)
	entries := resp["entry"].([]any)
	patientLoc := entries[1].(map[string]any)["response"].(map[string]any)["location"].(string) // Patient/<id>/_history/1
	patientID := strings.Split(patientLoc, "/")[1]

	ev := h.next()
	if ev.Kind != triggers.AppointmentBooked || ev.Patient.FHIRID != patientID {
		t.Errorf("event %s for patient %q, want appointment-booked for %s", ev.Kind, ev.Patient.FHIRID, patientID)
	}
	if diff := cmp.Diff([]triggers.Identifier{{System: "urn:oid:1.2.3", Value: "MRN-9"}, {System: "urn:oid:4.5.6", Value: "X-9"}}, ev.Patient.Identifiers); diff != "" {
		t.Errorf("identifiers (-want +got):\n%s", diff)
	}
	h.eventually("outbox emptied", func() bool { p, b := h.outbox(); return p+b == 0 })
	if got := h.streamCount(); got != 1 {
		t.Errorf("%d events, want exactly 1", got)
	}
}

// A write whose patient cannot be identified is not refused: its event
// waits in the outbox, blocked, and is never published.
func TestIntake_UnidentifiedPatientIsBlocked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/anon", `{"resourceType":"Patient","id":"anon","gender":"unknown"}`)
	h.must(201, "POST", "/Appointment", strings.ReplaceAll(appointment("booked", "2026-03-01T10:00:00Z"), "Patient/p1", "Patient/nobody"))
	h.must(201, "POST", "/Encounter", `{"resourceType":"Encounter","status":"arrived","class":{"code":"EMER"},"subject":{"reference":"Patient/anon"}}`)
	// A logical reference with an identifier is enough.
	h.must(201, "POST", "/ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order",
	  "subject":{"type":"Patient","identifier":{"system":"urn:oid:1.2.3","value":"MRN-L"}}}`)

	ev := h.next()
	if ev.Kind != triggers.OrderPlaced || len(ev.Patient.Identifiers) != 1 || ev.Patient.Identifiers[0].Value != "MRN-L" {
		t.Errorf("first published = %s with %v, want order-placed for MRN-L", ev.Kind, ev.Patient.Identifiers)
	}
	var reasons []string
	rows, err := h.pool.Query(context.Background(), `SELECT blocked_reason FROM event_outbox WHERE blocked_reason IS NOT NULL ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, r)
	}
	if diff := cmp.Diff([]string{"Patient/nobody does not exist", "Patient/anon has no identifier"}, reasons); diff != "" {
		t.Errorf("blocked reasons (-want +got):\n%s", diff)
	}
	h.eventually("depth gauge", func() bool {
		return gauge(t, h, "pending") == 0 && gauge(t, h, "blocked") == 2
	})
	if got := h.streamCount(); got != 1 {
		t.Errorf("%d events published, want 1", got)
	}
}

// A patient named by this server's absolute URL is the local patient; the
// same Type/id on another server is not, and its event waits, blocked, for
// an integration engineer instead of going to this server's p1.
func TestIntake_AbsolutePatientReference(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	h.must(201, "POST", "/Appointment", strings.ReplaceAll(appointment("booked", "2026-03-01T10:00:00Z"), `"Patient/p1"`, `"`+h.url+`/Patient/p1"`))
	ev := h.next()
	if ev.Kind != triggers.AppointmentBooked || ev.Patient.FHIRID != "p1" || !cmp.Equal(ev.Patient.Identifiers, p1Identifiers) {
		t.Errorf("published %s for %q %v, want appointment-booked for p1", ev.Kind, ev.Patient.FHIRID, ev.Patient.Identifiers)
	}
	h.must(201, "POST", "/Appointment", strings.ReplaceAll(appointment("booked", "2026-03-02T10:00:00Z"), `"Patient/p1"`, `"https://other.example/fhir/Patient/p1"`))
	var reason string
	h.eventually("blocked", func() bool {
		err := h.pool.QueryRow(context.Background(), `SELECT blocked_reason FROM event_outbox WHERE blocked_reason IS NOT NULL`).Scan(&reason)
		return err == nil
	})
	if reason != "the patient reference is not to a resource on this server" {
		t.Errorf("blocked reason %q", reason)
	}
	if got := h.streamCount(); got != 1 {
		t.Errorf("%d events published, want 1", got)
	}
}

func gauge(t *testing.T, h *harness, state string) float64 {
	t.Helper()
	mfs, err := h.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "priorflow_event_outbox_rows" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// While NATS is down the outbox keeps the events; when it is back the relay
// publishes each exactly once, in order.
func TestRelay_KeepsEventsWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.must(201, "PUT", "/Patient/p1", patientP1)
	var ids []string
	h.restartNATS(func() {
		for i := range 3 {
			created := h.must(201, "POST", "/Appointment", appointment("booked", "2026-03-0"+strconv.Itoa(i+1)+"T10:00:00Z"))
			ids = append(ids, triggers.EventID("fhir", "Appointment", created["id"].(string), "1", "appointment-booked"))
		}
		h.eventually("a failed publish", func() bool { return h.pub.failures.Load() > 0 })
		if pending, _ := h.outbox(); pending != 3 {
			t.Errorf("%d rows pending while NATS is down, want 3", pending)
		}
	})
	var got []string
	for range 3 {
		got = append(got, h.next().ID)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
	h.eventually("outbox emptied", func() bool { p, _ := h.outbox(); return p == 0 })
	if n := h.streamCount(); n != 3 {
		t.Errorf("%d events in the stream, want 3", n)
	}
}

// Several replicas may run a relay; one publishes, in order, and no event
// is published twice.
func TestRelay_SeveralReplicas(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.startRelay(postgres.RelayConfig{PollInterval: 200 * time.Millisecond, PublishTimeout: time.Second})
	h.must(201, "PUT", "/Patient/p1", patientP1)
	var ids []string
	for i := range 4 {
		created := h.must(201, "POST", "/Appointment", appointment("booked", "2026-03-0"+strconv.Itoa(i+1)+"T10:00:00Z"))
		ids = append(ids, triggers.EventID("fhir", "Appointment", created["id"].(string), "1", "appointment-booked"))
	}
	var got []string
	for range 4 {
		got = append(got, h.next().ID)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
	// The stream hands a message to consumers before the publisher has
	// its acknowledgement: the count of the last one may still be on its way.
	for deadline := time.Now().Add(10 * time.Second); h.pub.stored.Load()+h.pub.duplicates.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if s, d := h.pub.stored.Load(), h.pub.duplicates.Load(); s != 4 || d != 0 {
		t.Errorf("publisher stored %d and saw %d duplicates, want 4 and 0", s, d)
	}
}
