package triggers

import (
	"strings"
	"testing"
	"time"
)

func TestValidate_Text(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	valid := func() *CareEvent {
		return &CareEvent{
			SchemaVersion: SchemaVersion, ID: "e1", Kind: AppointmentBooked, OccurredAt: start.Add(-time.Hour),
			ScheduledStart: &start, Priority: PriorityRoutine, SourceSystem: "RIS@HÔPITAL",
			Patient:    Patient{Identifiers: []Identifier{{System: "urn:oid:1.2.3", Value: "ÄB1"}}, Family: "MÜLLER", Given: []string{"JOSÉ"}},
			Procedures: []Code{{Code: "CT1", Display: "CT tête"}},
		}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for name, spoil := range map[string]func(*CareEvent){
		"identifier":        func(e *CareEvent) { e.Patient.Identifiers[0].Value = "\xc4B1" },
		"given name":        func(e *CareEvent) { e.Patient.Given[0] = "JOS\xc9" },
		"procedure display": func(e *CareEvent) { e.Procedures[0].Display = "t\xeate" },
		"prior identifier":  func(e *CareEvent) { e.PriorIdentifiers = []Identifier{{Value: "\xff"}} },
		"origin control ID": func(e *CareEvent) { e.Origin.ControlID = "\x80" },
		"source system":     func(e *CareEvent) { e.SourceSystem = "RIS@H\xd4PITAL" },
	} {
		e := valid()
		spoil(e)
		if e.ValidText() {
			t.Errorf("%s: ValidText true for bytes that are not UTF-8", name)
		}
		if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
			t.Errorf("%s: Validate = %v, want a UTF-8 error", name, err)
		}
	}
	// Control characters FHIR strings exclude: PostgreSQL text holds no
	// NUL, and FHIR refuses the others in a Task or a search.
	for name, spoil := range map[string]func(*CareEvent){
		"NUL in an identifier":  func(e *CareEvent) { e.Patient.Identifiers[0].Value = "AB\x001" },
		"SOH in a family name":  func(e *CareEvent) { e.Patient.Family = "M\x01LLER" },
		"ESC in a display":      func(e *CareEvent) { e.Procedures[0].Display = "CT\x1b[0m" },
		"unit separator in ID":  func(e *CareEvent) { e.ID = "e\x1f1" },
		"NUL in a placer order": func(e *CareEvent) { e.Placer = "\x00" },
	} {
		e := valid()
		spoil(e)
		if _, bad := e.InvalidText(); !bad {
			t.Errorf("%s: InvalidText found nothing", name)
		}
		if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "control character") {
			t.Errorf("%s: Validate = %v, want a control character error", name, err)
		}
	}
	// Tab, CR and LF are text (FHIR strings allow them), as is U+FFFD
	// when it was sent.
	e := valid()
	e.Procedures[0].Display = "CT\tchest\r\nwith contrast \ufffd"
	if err := e.Validate(); err != nil {
		t.Errorf("tab, CR, LF, U+FFFD: %v", err)
	}
}
