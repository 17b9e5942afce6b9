package planner

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/fhir/go/jsonformat"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	tpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/task_go_proto"
	vpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
	"google.golang.org/protobuf/proto"
)

// task builds the FHIR Task that mirrors job j, directly as the R4 proto
// (the same message the codec parses from the Task's JSON; see
// TestTask_SameAsParsedJSON), so that planning a burst does not print and
// parse JSON for every job.
func (p *Planner) task(j *Job) (proto.Message, error) {
	status, ok := cpb.TaskStatusCode_Value_value[enumName(taskStatus(j.State))]
	if !ok {
		return nil, fmt.Errorf("task of job %s: unknown status %q", j.ID, j.State)
	}
	priority, ok := cpb.RequestPriorityCode_Value_value[enumName(string(j.Priority))]
	if !ok {
		return nil, fmt.Errorf("task of job %s: unknown priority %q", j.ID, j.Priority)
	}
	crit, err := json.Marshal(j.Criteria)
	if err != nil {
		return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	t := &tpb.Task{
		Id:           &dpb.Id{Value: j.TaskID},
		Identifier:   []*dpb.Identifier{{System: &dpb.Uri{Value: JobIdentifierSystem}, Value: &dpb.String{Value: j.ID}}},
		Status:       &tpb.Task_StatusCode{Value: cpb.TaskStatusCode_Value(status)},
		Intent:       &tpb.Task_IntentCode{Value: vpb.TaskIntentValueSet_PLAN},
		Priority:     &tpb.Task_PriorityCode{Value: cpb.RequestPriorityCode_Value(priority)},
		Code:         concept(coding(TaskCodeSystem, TaskCode, "Prefetch prior imaging studies")),
		Description:  &dpb.String{Value: "Prefetch priors for rule " + j.Rule},
		AuthoredOn:   dateTimeMillis(j.CreatedAt),
		LastModified: dateTimeMillis(j.UpdatedAt),
		Input: []*tpb.Task_Parameter{
			input("rule", j.Rule),
			input("criteria", string(crit)),
			input("lane", string(j.Lane)),
		},
	}
	restriction := &dpb.Period{Start: dateTimeMillis(j.DueAt)}
	if j.NeedBy != nil && j.NeedBy.After(j.DueAt) {
		restriction.End = dateTimeMillis(*j.NeedBy)
	}
	t.Restriction = &tpb.Task_Restriction{Period: restriction}
	switch {
	case j.PatientRef != "":
		if t.ForValue, err = reference(j.PatientRef); err != nil {
			return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
		}
	case len(j.Patient) > 0:
		id := j.Patient[0]
		for _, x := range j.Patient {
			if x.Type == "MR" {
				id = x
				break
			}
		}
		ident := &dpb.Identifier{Value: &dpb.String{Value: id.Value}}
		if id.System != "" {
			ident.System = &dpb.Uri{Value: id.System}
		}
		t.ForValue = &dpb.Reference{Identifier: ident}
	}
	if ref, ok := fhirReference(j.OriginRef); ok {
		refs := make([]*dpb.Reference, 3)
		for i := range refs {
			if refs[i], err = reference(ref); err != nil {
				return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
			}
		}
		t.Focus, t.BasedOn = refs[0], []*dpb.Reference{refs[1]}
		if strings.HasPrefix(ref, "Encounter/") {
			t.Encounter = refs[2]
		}
	}
	return t, nil
}

// enumName is the proto enum name of a FHIR code ("in-progress" →
// "IN_PROGRESS").
func enumName(code string) string {
	return strings.ToUpper(strings.ReplaceAll(code, "-", "_"))
}

func coding(system, code, display string) *dpb.Coding {
	c := &dpb.Coding{System: &dpb.Uri{Value: system}, Code: &dpb.Code{Value: code}}
	if display != "" {
		c.Display = &dpb.String{Value: display}
	}
	return c
}

func concept(c ...*dpb.Coding) *dpb.CodeableConcept { return &dpb.CodeableConcept{Coding: c} }

func input(code, value string) *tpb.Task_Parameter {
	return &tpb.Task_Parameter{
		Type:  concept(coding(TaskCodeSystem, code, "")),
		Value: &tpb.Task_Parameter_ValueX{Choice: &tpb.Task_Parameter_ValueX_StringValue{StringValue: &dpb.String{Value: value}}},
	}
}

// dateTimeMillis is t as the Task's JSON has always printed it:
// UTC, to the millisecond.
func dateTimeMillis(t time.Time) *dpb.DateTime {
	ms := t.UTC().Truncate(time.Millisecond)
	return &dpb.DateTime{ValueUs: ms.UnixMicro(), Timezone: "Z", Precision: dpb.DateTime_MILLISECOND}
}

// reference is a relative reference in the typed form the codec parses it
// into (Patient/1 → patient_id).
func reference(ref string) (*dpb.Reference, error) {
	r := &dpb.Reference{Reference: &dpb.Reference_Uri{Uri: &dpb.String{Value: ref}}}
	if err := jsonformat.NormalizeReference(r); err != nil {
		return nil, fmt.Errorf("reference %s: %w", ref, err)
	}
	return r, nil
}
