package planner

import (
	"testing"
	"time"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

func TestTask_SameAsParsedJSON(t *testing.T) {
	t.Parallel()
	reg, err := fhir.NewRegistry(fhir.Patient(), fhir.Task())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(dbtest.NewPool(t), reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	p := &Planner{store: store}
	at := time.Date(2026, 3, 1, 6, 0, 0, 123456789, time.UTC)
	start := at.Add(26*time.Hour + 7*time.Microsecond)
	since := at.AddDate(-5, 0, 0)
	base := func() *Job {
		return &Job{ID: "pf-1", TaskID: "pf-1", Rule: "priors-before-visits", PatientKey: "urn:oid:1.2.3|MRN-1",
			Patient:  []triggers.Identifier{{System: "urn:oid:9", Value: "X-1"}, {System: "urn:oid:1.2.3", Value: "MRN-1", Type: "MR"}},
			Criteria: rules.Criteria{Lookback: "5y", Since: &since, Modalities: []string{"CT", "PT"}},
			Lane:     rules.LaneRoutine, Priority: triggers.PriorityRoutine, DueAt: start.Add(-12 * time.Hour), NeedBy: &start,
			State: StateRequested, CreatedAt: at, UpdatedAt: at.Add(time.Second), OriginRef: "Appointment/a-1"}
	}
	for name, mod := range map[string]func(*Job){
		"booking with patient reference": func(j *Job) { j.PatientRef = "Patient/p-1" },
		"booking by identifier":          func(*Job) {},
		"identifier without MR":          func(j *Job) { j.Patient = j.Patient[:1]; j.Patient[0].System = "" },
		"no patient":                     func(j *Job) { j.Patient = nil },
		"ED arrival, stat, encounter": func(j *Job) {
			j.Lane, j.Priority, j.NeedBy, j.OriginRef, j.DueAt = rules.LaneStat, triggers.PriorityStat, nil, "Encounter/enc-9", at
		},
		"asap":                   func(j *Job) { j.Priority = triggers.PriorityASAP },
		"urgent":                 func(j *Job) { j.Priority = triggers.PriorityUrgent },
		"hl7v2 origin":           func(j *Job) { j.OriginRef = "hl7v2:MSG-1" },
		"service request origin": func(j *Job) { j.OriginRef = "ServiceRequest/sr-1" },
		"need by before due":     func(j *Job) { early := j.DueAt.Add(-time.Hour); j.NeedBy = &early },
		"cancelled":              func(j *Job) { j.State = StateCancelled },
		"in progress":            func(j *Job) { j.State = StateInProgress },
		"completed":              func(j *Job) { j.State = StateCompleted },
		"failed":                 func(j *Job) { j.State = StateFailed },
	} {
		t.Run(name, func(t *testing.T) {
			j := base()
			mod(j)
			want, err := p.taskFromJSON(j)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.task(j)
			if err != nil {
				t.Fatal(err)
			}
			fhirtest.SameResource(t, codec, "task", want, got)
		})
	}
}
