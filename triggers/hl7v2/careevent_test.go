package hl7v2

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/triggers"
)

// ghhPatient is the patient of the GHH samples: PID-3 repeats an MR number
// with an HCD authority (not an OID, so the namespace names it) and an SSN
// whose USSSA authority has a well-known system; PID-5's legal name (XPN-7
// = L) is the second repetition.
var ghhPatient = triggers.Patient{
	Identifiers: []triggers.Identifier{
		{System: "urn:priorflow:issuer:test1", Value: "PATID1234", Authority: "test1", Type: "MR"},
		{System: "http://hl7.org/fhir/sid/us-ssn", Value: "123456789", Authority: "USSSA", Type: "SS"},
	},
	Family: "Josh", Given: []string{"stanley"}, BirthDate: "1988-08-18", Sex: "male",
}

func TestToCareEvent_SampleFiles(t *testing.T) {
	colonBiopsy := []triggers.Code{{System: "http://snomed.info/sct", Code: "76164006", Display: "Biopsy of colon (procedure)"}}
	ctHead := []triggers.Code{{System: "http://loinc.org", Code: "24725-4", Display: "CT Head"}}
	const ghhWard = "HUH AE OMU / OMU B / Bed 03 / HOMERTON UNIVER"
	tests := []struct {
		file       string
		kind       triggers.Kind
		patient    *triggers.Patient // nil: ghhPatient
		prior      []triggers.Identifier
		occurred   string // RFC 3339
		start      string // RFC 3339, "" for none
		priority   triggers.Priority
		procedures []triggers.Code
		modality   string
		location   string
		prevLoc    string
		placer     string
		source     string
	}{
		{file: "ADT-A01-01.hl7", kind: triggers.Admission, occurred: "2029-08-01T07:06:24+01:15", priority: triggers.PriorityRoutine,
			location: ghhWard, placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A02-01.hl7", kind: triggers.Transfer, occurred: "2029-08-01T07:06:24+01:15", priority: triggers.PriorityRoutine,
			location: ghhWard, prevLoc: "4 East, room 136, bed B 4E / 136 / B / CommunityHospital", placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A03-01.hl7", kind: triggers.Discharge, occurred: "2029-08-01T07:06:24+01:15", priority: triggers.PriorityRoutine,
			location: ghhWard, placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A04-01.hl7", kind: triggers.Registration, occurred: "2029-08-01T07:06:24+01:15", start: "2015-02-08T11:34:19+01:10",
			priority: triggers.PriorityRoutine, location: ghhWard, placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A08-01.hl7", kind: triggers.PatientUpdated, occurred: "2029-08-01T07:06:24+01:15", priority: triggers.PriorityRoutine,
			location: ghhWard, placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A11-01.hl7", kind: triggers.VisitCancelled, occurred: "2029-08-01T07:06:24+01:15", start: "2015-02-08T11:34:19+01:10",
			priority: triggers.PriorityRoutine, location: ghhWard, placer: "40007716", source: "ADTApp@GHHSFacility"},
		{file: "ADT-A40-01.hl7", kind: triggers.PatientMerged,
			patient: &triggers.Patient{
				Identifiers: []triggers.Identifier{{System: "urn:priorflow:issuer:BCBS", Value: "12345", Authority: "BCBS", Type: "MR"}},
				Family:      "Test", Given: []string{"Test", "A"}, BirthDate: "2018-02-05", Sex: "female",
			},
			prior:    []triggers.Identifier{{System: "urn:priorflow:issuer:BCBS", Value: "56789", Authority: "BCBS", Type: "MR"}},
			occurred: "2019-04-23T15:01:37+02:15", priority: triggers.PriorityRoutine, source: "Ntierprise@Ntierprise Clinic"},
		{file: "OMG-O19-01.hl7", kind: triggers.OrderPlaced, occurred: "2021-10-20T11:26:00+02:15", priority: triggers.PriorityRoutine,
			procedures: []triggers.Code{{System: "http://loinc.org", Code: "57698-3", Display: "Lipid panel with direct LDL - Serum or Plasma"}},
			location:   "LABUnit01 / Room01 / GHH", source: "ORDApp@GHHSFacility"},
		// ORC-7.4 of this sample is a bare date: UTC midnight, the default zone.
		{file: "ORM-O01-01.hl7", kind: triggers.OrderPlaced, occurred: "2021-10-20T11:26:00+02:15", start: "2002-03-15T00:00:00Z",
			priority: triggers.PriorityRoutine, procedures: ctHead, modality: "CT", location: "RADUnit01 / Room01 / GHH",
			placer: "1101", source: "ORDApp@GHHSFacility"},
		{file: "ORM-O01-02.hl7", kind: triggers.OrderPlaced, occurred: "2021-10-20T11:26:00+02:15", start: "2021-10-20T11:26:00+02:15",
			priority: triggers.PriorityRoutine, procedures: ctHead, modality: "CT", location: "RADUnit01 / Room01 / GHH",
			placer: "1101", source: "ORDApp@GHHSFacility"},
		{file: "SIU-S12-01.hl7", kind: triggers.AppointmentBooked, occurred: "2021-09-14T11:20:00+02:15", start: "2021-09-24T09:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: colonBiopsy, location: "055 / Room01 / GH Clinic", placer: "36996", source: "SCHApp@GHHSFacility"},
		// No AIS-4: TQ1-7 wins over the older SCH-11.4.
		{file: "SIU-S12-02.hl7", kind: triggers.AppointmentBooked, occurred: "2021-08-10T11:30:00+02:15", start: "2021-08-18T11:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: []triggers.Code{
				{System: "http://loinc.org", Code: "58410-2", Display: "CBC Panel-Blood by Automated Count"},
				{System: "http://loinc.org", Code: "42272-5", Display: "XR Chest PA and Lateral"},
			}, modality: "DX", location: "LabUnit101 / Lab Room 01 / GHH Hospital", placer: "36996", source: "SCHApp@GHHSFacility"},
		{file: "SIU-S13-01.hl7", kind: triggers.AppointmentRescheduled, occurred: "2021-09-20T11:26:00+02:15", start: "2021-09-24T09:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: colonBiopsy, location: "055 / Room01 / GH Clinic", placer: "36996", source: "SCHApp@GHHSFacility"},
		{file: "SIU-S14-01.hl7", kind: triggers.AppointmentRescheduled, occurred: "2021-09-20T11:26:00+02:15", start: "2021-09-24T09:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: colonBiopsy, location: "055 / Room02 / GH Clinic", placer: "36996", source: "SCHApp@GHHSFacility"},
		{file: "SIU-S15-01.hl7", kind: triggers.AppointmentCancelled, occurred: "2021-09-23T11:26:00+02:15", start: "2021-09-24T09:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: colonBiopsy, location: "055 / Room01 / GH Clinic", placer: "36996", source: "SCHApp@GHHSFacility"},
		{file: "SIU-S26-01.hl7", kind: triggers.AppointmentNoShow, occurred: "2021-09-24T10:00:00+02:15", start: "2021-09-24T09:30:00+02:15",
			priority: triggers.PriorityASAP, procedures: colonBiopsy, location: "055 / Room01 / GH Clinic", placer: "36996", source: "SCHApp@GHHSFacility"},
	}
	files, err := filepath.Glob("testdata/*.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(files), len(tests); got != want {
		t.Fatalf("testdata has %d .hl7 files, table covers %d: add the new ones", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m := mustParse(t, data)
			ev, err := ToCareEvent(m, MapOptions{})
			if err != nil {
				t.Fatalf("ToCareEvent: %v", err)
			}
			if got, want := ev.Kind, tt.kind; got != want {
				t.Errorf("Kind = %q, want %q", got, want)
			}
			want := ghhPatient
			if tt.patient != nil {
				want = *tt.patient
			}
			if d := diff(want, ev.Patient); d != "" {
				t.Errorf("Patient: %s", d)
			}
			if d := diff(tt.prior, ev.PriorIdentifiers); d != "" {
				t.Errorf("PriorIdentifiers: %s", d)
			}
			if got, want := ev.OccurredAt.Format(time.RFC3339), tt.occurred; got != want {
				t.Errorf("OccurredAt = %s, want %s", got, want)
			}
			if got, want := formatStart(ev.ScheduledStart), tt.start; got != want {
				t.Errorf("ScheduledStart = %q, want %q", got, want)
			}
			if got, want := ev.Priority, tt.priority; got != want {
				t.Errorf("Priority = %q, want %q", got, want)
			}
			if d := diff(tt.procedures, ev.Procedures); d != "" {
				t.Errorf("Procedures: %s", d)
			}
			if got, want := ev.Modality, tt.modality; got != want {
				t.Errorf("Modality = %q, want %q", got, want)
			}
			if got, want := ev.Location, tt.location; got != want {
				t.Errorf("Location = %q, want %q", got, want)
			}
			if got, want := ev.PriorLocation, tt.prevLoc; got != want {
				t.Errorf("PriorLocation = %q, want %q", got, want)
			}
			if got, want := ev.Placer, tt.placer; got != want {
				t.Errorf("Placer = %q, want %q", got, want)
			}
			if got, want := ev.SourceSystem, tt.source; got != want {
				t.Errorf("SourceSystem = %q, want %q", got, want)
			}
			msh := m.AllSegments()[0]
			if got, want := ev.ID, triggers.EventID(msh.Raw(3), msh.Raw(4), m.ControlID()); got != want {
				t.Errorf("ID = %q, want %q", got, want)
			}
			mt := m.MessageType()
			wantOrigin := triggers.Origin{Reference: "hl7v2:" + ev.ID, MessageType: mt.Code + "^" + mt.TriggerEvent + "^" + mt.Structure, ControlID: m.ControlID()}
			if d := diff(wantOrigin, ev.Origin); d != "" {
				t.Errorf("Origin: %s", d)
			}
		})
	}
}

func formatStart(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

// The messages below follow habits of real senders rather than the letter
// of v2.8.
func TestToCareEvent_VendorHabits(t *testing.T) {
	eastern := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name  string
		msg   []byte
		opts  MapOptions
		check func(t *testing.T, ev *triggers.CareEvent)
	}{
		{
			name: "v2.3 order without TQ1 takes start and priority from ORC-7",
			msg: wire(
				"MSH|^~\\&|RIS|MERCY|PF|PF|20240305120000||ORM^O01|R1|P|2.3",
				"PID|1||123456^^^MERCY^MR||DOE^JANE||19700512|F",
				"PV1|1|O|RAD^^^MERCY",
				"ORC|NW|A123^EPIC|F456^RIS||||^^^20240305143000^^S",
				"OBR|1|A123^EPIC|F456^RIS|CT1234^CT ABDOMEN W CONTRAST^L|||||||||||||||||||CT",
			),
			opts: MapOptions{TimeZone: eastern},
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if got, want := formatStart(ev.ScheduledStart), "2024-03-05T14:30:00-05:00"; got != want {
					t.Errorf("ScheduledStart = %s, want %s (sender's zone)", got, want)
				}
				if got, want := ev.OccurredAt.Format(time.RFC3339), "2024-03-05T12:00:00-05:00"; got != want {
					t.Errorf("OccurredAt = %s, want %s", got, want)
				}
				if ev.Priority != triggers.PriorityStat || ev.Modality != "CT" || ev.Placer != "A123" || ev.Location != "RAD / MERCY" {
					t.Errorf("priority %q modality %q placer %q location %q, want stat CT A123 \"RAD / MERCY\"",
						ev.Priority, ev.Modality, ev.Placer, ev.Location)
				}
				want := []triggers.Code{{System: "urn:priorflow:codesystem:L", Code: "CT1234", Display: "CT ABDOMEN W CONTRAST"}}
				if d := diff(want, ev.Procedures); d != "" {
					t.Errorf("Procedures: %s", d)
				}
				if ev.Patient.BirthDate != "1970-05-12" || ev.Patient.Sex != "female" {
					t.Errorf("birth date %q sex %q", ev.Patient.BirthDate, ev.Patient.Sex)
				}
			},
		},
		{
			name: "two orders placed in one message, beside a status request: one event with both procedures",
			msg: wire(
				"MSH|^~\\&|RIS|MERCY|PF|PF|20240305120000||ORM^O01|R2|P|2.3",
				"PID|1||123456^^^MERCY^MR||DOE^JANE||19700512|F",
				"ORC|NW|A1", "OBR|1|A1||CT1^CT CHEST^L",
				"ORC|NW|A2", "OBR|2|A2||CT2^CT HEAD^L",
				"ORC|SR|A3",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if ev.Kind != triggers.OrderPlaced || ev.Placer != "A1" || len(ev.Procedures) != 2 {
					t.Errorf("kind %s placer %q procedures %v, want order-placed, A1, both", ev.Kind, ev.Placer, ev.Procedures)
				}
			},
		},
		{
			name: "v2.3 SIU with SCH-11 timing only",
			msg: wire(
				"MSH|^~\\&|SCHED|CLINIC|PF|PF|20240401080000-0500||SIU^S12|S1|P|2.3",
				"SCH|PL77|FL88|||||||30|min|^^30^20240410091500-0500^20240410094500-0500^S",
				"PID|1||555^^^CLINIC^MR||ROE^RICHARD",
				"RGS|1",
				"AIS|1||MRKNEE^MRI KNEE LEFT^LOCAL",
				"AIL|1||MRI1^^^CLINIC",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if got, want := formatStart(ev.ScheduledStart), "2024-04-10T09:15:00-05:00"; got != want {
					t.Errorf("ScheduledStart = %s, want %s", got, want)
				}
				if ev.Priority != triggers.PriorityStat || ev.Modality != "MR" || ev.Placer != "FL88" || ev.Location != "MRI1 / CLINIC" {
					t.Errorf("priority %q modality %q placer %q location %q", ev.Priority, ev.Modality, ev.Placer, ev.Location)
				}
			},
		},
		{
			name: "unusual delimiters",
			msg: wire(
				"MSH#$*!@#LAB#NORTH#PF#PF#20240101120000+0100##ADT$A04#D1#P#2.4",
				"EVN#A04#20240101115900+0100",
				"PID#1##111$$$NORTH@1.2.3.4@ISO$MR*222$$$NORTH$PI##O!T!BRIEN$SEAN##19601231#M",
				"PV1#1#E#ED$$$NORTH",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				want := []triggers.Identifier{
					{System: "urn:oid:1.2.3.4", Value: "111", Authority: "NORTH", Type: "MR"},
					{System: "urn:priorflow:issuer:NORTH", Value: "222", Authority: "NORTH", Type: "PI"},
				}
				if d := diff(want, ev.Patient.Identifiers); d != "" {
					t.Errorf("Identifiers: %s", d)
				}
				if ev.Patient.Family != "O@BRIEN" {
					t.Errorf("Family = %q, want the escaped subcomponent separator decoded", ev.Patient.Family)
				}
				if ev.Kind != triggers.EDArrival || ev.Priority != triggers.PriorityStat {
					t.Errorf("kind %q priority %q, want an ED arrival, stat", ev.Kind, ev.Priority)
				}
			},
		},
		{
			name: "CRLF, Z-segments and an escaped name",
			msg: []byte(strings.Join([]string{
				"MSH|^~\\&|EPIC|UH|PF|PF|20240202101010+0000||ADT^A01^ADT_A01|Z1|P|2.5.1",
				"EVN|A01|20240202101000+0000",
				"PID|1||987^^^UH&2.16.840.1.113883.3.1&ISO^MR||SMITH\\T\\JONES^ANNA^^^^^L||19851103",
				"ZPI|1|custom|stuff",
				"PV1|1|I|4W^401^B^UH||||||||||||||||V100",
				"ZPV|whatever",
			}, "\r\n") + "\r\n"),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if ev.Patient.Family != "SMITH&JONES" || len(ev.Patient.Given) != 1 || ev.Patient.Given[0] != "ANNA" {
					t.Errorf("name %q %q", ev.Patient.Family, ev.Patient.Given)
				}
				if ev.Kind != triggers.Admission || ev.Location != "4W / 401 / B / UH" || ev.Placer != "V100" {
					t.Errorf("kind %q location %q placer %q", ev.Kind, ev.Location, ev.Placer)
				}
				if got, want := ev.Patient.Identifiers[0].System, "urn:oid:2.16.840.1.113883.3.1"; got != want {
					t.Errorf("System = %q, want %q", got, want)
				}
			},
		},
		{
			name: "missing PV1 and PID-3 without authority",
			msg: wire(
				"MSH|^~\\&|REG|SOUTH|PF|PF|202403011200||ADT^A08|U1|P|2.3",
				"EVN|A08|202403011159",
				"PID|1||778899||DOE^JOHN||1950",
			),
			opts: MapOptions{FacilitySystems: map[string]string{"SOUTH": "urn:oid:1.2.3.99"}},
			check: func(t *testing.T, ev *triggers.CareEvent) {
				want := []triggers.Identifier{{System: "urn:oid:1.2.3.99", Value: "778899"}}
				if d := diff(want, ev.Patient.Identifiers); d != "" {
					t.Errorf("Identifiers: %s", d)
				}
				if ev.Kind != triggers.PatientUpdated || ev.Location != "" || ev.Placer != "" || ev.Patient.BirthDate != "1950" {
					t.Errorf("kind %q location %q placer %q birth date %q", ev.Kind, ev.Location, ev.Placer, ev.Patient.BirthDate)
				}
			},
		},
		{
			name: "PID-3 without authority and no facility system",
			msg: wire(
				"MSH|^~\\&|REG|SOUTH|PF|PF|202403011200||ADT^A08|U2|P|2.3",
				"PID|1||778899||DOE^JOHN",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				want := []triggers.Identifier{{Value: "778899"}}
				if d := diff(want, ev.Patient.Identifiers); d != "" {
					t.Errorf("Identifiers: %s", d)
				}
			},
		},
		{
			name: "S14 without a start is a booking change",
			msg: wire(
				"MSH|^~\\&|SCHED|CLINIC|PF|PF|20240401080000||SIU^S14|S2|P|2.5",
				"SCH||FL88",
				"PID|1||555^^^CLINIC^MR",
				"AIL|1||ROOM2^^^CLINIC",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if ev.Kind != triggers.AppointmentBooked || ev.ScheduledStart != nil {
					t.Errorf("kind %q start %v, want booked without a start", ev.Kind, ev.ScheduledStart)
				}
			},
		},
		{
			name: "OMI cancel with IPC modality and OBR-15 body site",
			msg: wire(
				"MSH|^~\\&|EHR|UH|PF|PF|20240505101010+0200||OMI^O23^OMI_O23|O1|P|2.5.1",
				"PID|1||42^^^UH^MR",
				"ORC|CA|P900^EHR|||||||||||||||||||",
				"TQ1|1||||||20240506080000+0200||R",
				"OBR|1|P900^EHR||73721^MRI JOINT LOWER EXTREMITY^C4|||||||||||^^^T-15750&Knee joint&SCT",
				"IPC|ACC1|RP1|1.2.3.4.5|SPS1|MR",
			),
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if ev.Kind != triggers.OrderCancelled || ev.Modality != "MR" || ev.Placer != "P900" || ev.Priority != triggers.PriorityRoutine {
					t.Errorf("kind %q modality %q placer %q priority %q", ev.Kind, ev.Modality, ev.Placer, ev.Priority)
				}
				if got, want := formatStart(ev.ScheduledStart), "2024-05-06T08:00:00+02:00"; got != want {
					t.Errorf("ScheduledStart = %s, want %s", got, want)
				}
				wantProc := []triggers.Code{{System: "http://www.ama-assn.org/go/cpt", Code: "73721", Display: "MRI JOINT LOWER EXTREMITY"}}
				if d := diff(wantProc, ev.Procedures); d != "" {
					t.Errorf("Procedures: %s", d)
				}
				wantSite := []triggers.Code{{System: "http://snomed.info/sct", Code: "T-15750", Display: "Knee joint"}}
				if d := diff(wantSite, ev.BodySites); d != "" {
					t.Errorf("BodySites: %s", d)
				}
			},
		},
		{
			name: "local procedure codes through the prefix map, longest first",
			msg: wire(
				"MSH|^~\\&|RIS|MERCY|PF|PF|20240305120000||ORM^O01|R2|P|2.4",
				"PID|1||123456^^^MERCY^MR",
				"ORC|XO|A124",
				"OBR|1|A124||RAD-MR-123^Knee left^L|A",
			),
			opts: MapOptions{ModalityPrefixes: map[string]string{"rad": "DX", "RAD-MR": "MR"}},
			check: func(t *testing.T, ev *triggers.CareEvent) {
				if ev.Kind != triggers.OrderPlaced || ev.Modality != "MR" || ev.Priority != triggers.PriorityASAP {
					t.Errorf("kind %q modality %q priority %q, want order-placed MR asap (OBR-5)", ev.Kind, ev.Modality, ev.Priority)
				}
			},
		},
		{
			name: "authority systems: URI, configured namespace",
			msg: wire(
				"MSH|^~\\&|REG|SOUTH|PF|PF|202403011200||ADT^A04|U3|P|2.5",
				"PID|1||1^^^A&https://ids.example.org/mrn&URI^MR~2^^^CITY^MR",
				"PV1|1|O",
			),
			opts: MapOptions{AuthoritySystems: map[string]string{"CITY": "urn:oid:1.2.840.5"}},
			check: func(t *testing.T, ev *triggers.CareEvent) {
				want := []triggers.Identifier{
					{System: "https://ids.example.org/mrn", Value: "1", Authority: "A", Type: "MR"},
					{System: "urn:oid:1.2.840.5", Value: "2", Authority: "CITY", Type: "MR"},
				}
				if d := diff(want, ev.Patient.Identifiers); d != "" {
					t.Errorf("Identifiers: %s", d)
				}
				if ev.Kind != triggers.Registration {
					t.Errorf("Kind = %q, want registration", ev.Kind)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := ToCareEvent(mustParse(t, tt.msg), tt.opts)
			if err != nil {
				t.Fatalf("ToCareEvent: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

// The ADT triggers beyond the shared samples: a pre-admission is due by the
// expected admit time, its cancellations cancel, and the master patient
// index's person updates update the Patient.
func TestToCareEvent_MoreADTTriggers(t *testing.T) {
	const (
		msh = "MSH|^~\\&|ADT|MERCY|PF|PF|20240305120000-0500||"
		pid = "PID|1||123456^^^MERCY^MR||DOE^JANE||19700512|F"
		pv1 = "PV1|1|I|4W^401^1^MERCY||||||||||||||||V778"
		pv2 = "PV2||||||||20240312070000-0500"
	)
	tests := []struct {
		trigger string
		segs    []string
		kind    triggers.Kind
		start   string // ScheduledStart, "" for none
	}{
		{"A05", []string{pid, pv1, pv2}, triggers.PreAdmission, "2024-03-12T07:00:00-05:00"},
		{"A14", []string{pid, pv1, pv2}, triggers.PreAdmission, "2024-03-12T07:00:00-05:00"},
		{"A06", []string{pid, pv1}, triggers.Admission, ""},
		{"A27", []string{pid, pv1}, triggers.VisitCancelled, ""},
		{"A38", []string{pid, pv1, pv2}, triggers.VisitCancelled, "2024-03-12T07:00:00-05:00"},
		{"A28", []string{pid}, triggers.PatientUpdated, ""},
		{"A31", []string{pid, "PV1|1|N"}, triggers.PatientUpdated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.trigger, func(t *testing.T) {
			msg := wire(append([]string{msh + "ADT^" + tt.trigger + "|C" + tt.trigger + "|P|2.5.1", "EVN|" + tt.trigger + "|20240305115900-0500"}, tt.segs...)...)
			m, err := Parse(msg)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			ev, err := ToCareEvent(m, MapOptions{})
			if err != nil {
				t.Fatalf("ToCareEvent: %v", err)
			}
			if ev.Kind != tt.kind || formatStart(ev.ScheduledStart) != tt.start {
				t.Errorf("kind %s start %q, want %s %q", ev.Kind, formatStart(ev.ScheduledStart), tt.kind, tt.start)
			}
			if pv1Sent := len(tt.segs) > 1 && tt.segs[1] == pv1; pv1Sent && ev.Placer != "V778" {
				t.Errorf("placer %q, want the visit number V778 (PV1-19), which pairs a pre-admission with its admission and cancellation", ev.Placer)
			}
			if ev.Patient.Family != "DOE" || len(ev.Patient.Identifiers) != 1 {
				t.Errorf("patient %+v", ev.Patient)
			}
		})
	}
}

// A Japanese ADT sends the name in kanji and kana (XPN-8 I and P) beside,
// or instead of, the alphabetic one: only an alphabetic name is the event's,
// as that is the one a Patient's alphabetic name is compared with.
func TestToCareEvent_NameRepresentations(t *testing.T) {
	tests := []struct {
		pid5, family string
		given        []string
	}{
		{"山田^太郎^^^^^L^I~ﾔﾏﾀﾞ^ﾀﾛｳ^^^^^L^P~YAMADA^TAROU^^^^^L^A", "YAMADA", []string{"TAROU"}},
		{"山田^太郎^^^^^L^I~ﾔﾏﾀﾞ^ﾀﾛｳ^^^^^L^P", "", nil},
		{"DOE^JANE^^^^^M~ROE^JANE^^^^^L", "ROE", []string{"JANE"}},
		{"DOE^JANE", "DOE", []string{"JANE"}},
	}
	for _, tt := range tests {
		m, err := Parse(wire("MSH|^~\\&|ADT|MERCY|PF|PF|20240305120000||ADT^A08|N1|P|2.5.1|||||||UNICODE UTF-8", "PID|1||123^^^MERCY^MR||"+tt.pid5))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		ev, err := ToCareEvent(m, MapOptions{})
		if err != nil {
			t.Fatalf("ToCareEvent: %v", err)
		}
		if ev.Patient.Family != tt.family || !slices.Equal(ev.Patient.Given, tt.given) {
			t.Errorf("PID-5 %s: name %q %q, want %q %q", tt.pid5, ev.Patient.Family, ev.Patient.Given, tt.family, tt.given)
		}
	}
}

func TestToCareEvent_Errors(t *testing.T) {
	const msh = "MSH|^~\\&|APP|FAC|PF|PF|20240101120000||"
	tests := []struct {
		name     string
		msg      []byte
		sentinel error
		code     AckCode
		errCode  ErrorCode
		location string // ERR-2 as sent, "" for none
	}{
		{"unsupported message type", wire(msh+"MDM^T02|E1|P|2.5", "PID|1||1^^^A^MR"),
			ErrUnsupportedMessageType, ApplicationReject, UnsupportedMessageType, "MSH^1^9^^1"},
		{"unsupported trigger: a corrected identifier, which is no cross-reference", wire(msh+"ADT^A47|E2|P|2.5", "PID|1||1^^^A^MR", "MRG|2^^^A^MR"),
			ErrUnsupportedEvent, ApplicationReject, UnsupportedEventCode, "MSH^1^9^^2"},
		{"unsupported order control", wire(msh+"ORM^O01|E3|P|2.3", "PID|1||1^^^A^MR", "ORC|RE|P1"),
			ErrUnsupportedEvent, ApplicationReject, UnsupportedEventCode, "ORC^1^1"},
		{"no PID-3", wire(msh+"ADT^A01|E4|P|2.5", "PID|1||||DOE^JOHN"),
			ErrMissingField, ApplicationError, RequiredFieldMissing, "PID^1^3"},
		{"no PID", wire(msh+"ADT^A01|E5|P|2.5", "PV1|1|I"),
			ErrMissingField, ApplicationError, RequiredFieldMissing, "PID"},
		{"no control ID", wire(msh+"ADT^A01||P|2.5", "PID|1||1^^^A^MR"),
			ErrMissingField, ApplicationError, RequiredFieldMissing, "MSH^1^10"},
		{"merge without MRG", wire(msh+"ADT^A40|E6|P|2.5", "PID|1||1^^^A^MR"),
			ErrMissingField, ApplicationError, RequiredFieldMissing, "MRG^1^1"},
		// Each pair is a merge; a second one was acknowledged and lost.
		{"two merges in one A40", wire(msh+"ADT^A40|E13|P|2.5", "PID|1||1^^^A^MR", "MRG|2^^^A^MR", "PID|2||3^^^A^MR", "MRG|4^^^A^MR"),
			ErrSeveralMerges, ApplicationError, ApplicationInternalError, "MRG^2"},
		// One order cancelled, another placed: one of the two was lost.
		{"placed and cancelled orders in one message", wire(msh+"ORM^O01|E14|P|2.3", "PID|1||1^^^A^MR",
			"ORC|CA|P1", "OBR|1|P1||CT1^CT", "ORC|NW|P2", "OBR|2|P2||CT2^CT"),
			ErrMixedOrders, ApplicationError, ApplicationInternalError, "ORC^2^1"},
		{"order without ORC", wire(msh+"ORM^O01|E7|P|2.3", "PID|1||1^^^A^MR", "OBR|1|P1||CT1^CT"),
			ErrMissingField, ApplicationError, RequiredFieldMissing, "ORC"},
		{"bad birth date", wire(msh+"ADT^A01|E8|P|2.5", "PID|1||1^^^A^MR||DOE^JOHN||19880230"),
			ErrBadTime, ApplicationError, DataTypeError, "PID^1^7"},
		{"bad TQ1 start", wire(msh+"SIU^S12|E9|P|2.5", "SCH||F1", "TQ1|||||||2024-05-01", "PID|1||1^^^A^MR"),
			ErrBadTime, ApplicationError, DataTypeError, "TQ1^1^7"},
		{"placeholder EVN-2", wire(msh+"ADT^A01|E11|P|2.5", "EVN|A01|0000", "PID|1||1^^^A^MR", "PV1|1|I"),
			ErrBadTime, ApplicationError, DataTypeError, "EVN^1^2"},
		{"placeholder MSH-7 (Go's zero time)", wire("MSH|^~\\&|APP|FAC|PF|PF|0001||ADT^A01|E12|P|2.5", "PID|1||1^^^A^MR", "PV1|1|I"),
			ErrBadTime, ApplicationError, DataTypeError, "MSH^1^7"},
		{"bad second AIS start", wire(msh+"SIU^S12|E10|P|2.5", "SCH||F1", "PID|1||1^^^A^MR", "AIS|1||X", "AIS|2||Y|tomorrow"),
			ErrBadTime, ApplicationError, DataTypeError, "AIS^2^4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ToCareEvent(mustParse(t, tt.msg), MapOptions{})
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %v, want one wrapping %v", err, tt.sentinel)
			}
			var merr *MappingError
			if !errors.As(err, &merr) {
				t.Fatalf("error %T, want *MappingError", err)
			}
			for _, v := range []string{"19880230", "2024-05-01", "tomorrow", "DOE"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error text %q quotes message content %q", err, v)
				}
			}
			ack := mustParse(t, mustAck(t, tt.msg, merr.AckSpec()))
			if got, want := mustGet(t, ack, "MSA-1"), string(tt.code); got != want {
				t.Errorf("MSA-1 = %q, want %q", got, want)
			}
			if got, want := mustGet(t, ack, "ERR-3-1"), strconv.Itoa(int(tt.errCode)); got != want {
				t.Errorf("ERR-3-1 = %q, want %q", got, want)
			}
			if got, want := ack.Segment("ERR").Raw(2), tt.location; got != want {
				t.Errorf("ERR-2 = %q, want %q", got, want)
			}
			if mustGet(t, ack, "ERR-8") == "" {
				t.Error("ERR-8 carries no reason")
			}
		})
	}
}

func mustAck(t *testing.T, msg []byte, spec AckSpec) []byte {
	t.Helper()
	ack, err := NewAck(msg, spec)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Encode()
}
