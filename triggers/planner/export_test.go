package planner

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// SetCrashBeforeAck makes the planner skip (and nak) the ack of a batch
// while f returns true, as if it had died after planning and publishing.
func (p *Planner) SetCrashBeforeAck(f func() bool) { p.testCrashBeforeAck = f }

// taskFromJSON is the Task of job j as first written: JSON parsed by the
// codec. TestTask_SameAsParsedJSON holds task to it.
func (p *Planner) taskFromJSON(j *Job) (proto.Message, error) {
	type coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	type concept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	type identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value"`
	}
	type reference struct {
		Reference  string      `json:"reference,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	type period struct {
		Start string `json:"start,omitempty"`
		End   string `json:"end,omitempty"`
	}
	type input struct {
		Type        concept `json:"type"`
		ValueString string  `json:"valueString"`
	}
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	crit, err := json.Marshal(j.Criteria)
	if err != nil {
		return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	t := map[string]any{
		"resourceType": "Task",
		"id":           j.TaskID,
		"identifier":   []identifier{{System: JobIdentifierSystem, Value: j.ID}},
		"status":       taskStatus(j.State),
		"intent":       "plan",
		"priority":     string(j.Priority),
		"code":         concept{Coding: []coding{{System: TaskCodeSystem, Code: TaskCode, Display: "Prefetch prior imaging studies"}}},
		"description":  "Prefetch priors for rule " + j.Rule,
		"authoredOn":   ts(j.CreatedAt),
		"lastModified": ts(j.UpdatedAt),
		"input": []input{
			{Type: concept{Coding: []coding{{System: TaskCodeSystem, Code: "rule"}}}, ValueString: j.Rule},
			{Type: concept{Coding: []coding{{System: TaskCodeSystem, Code: "criteria"}}}, ValueString: string(crit)},
			{Type: concept{Coding: []coding{{System: TaskCodeSystem, Code: "lane"}}}, ValueString: string(j.Lane)},
		},
	}
	restriction := period{Start: ts(j.DueAt)}
	if j.NeedBy != nil && j.NeedBy.After(j.DueAt) {
		restriction.End = ts(*j.NeedBy)
	}
	t["restriction"] = map[string]any{"period": restriction}
	switch {
	case j.PatientRef != "":
		t["for"] = reference{Reference: j.PatientRef}
	case len(j.Patient) > 0:
		id := j.Patient[0]
		for _, x := range j.Patient {
			if x.Type == "MR" {
				id = x
				break
			}
		}
		t["for"] = reference{Identifier: &identifier{System: id.System, Value: id.Value}}
	}
	if ref, ok := fhirReference(j.OriginRef); ok {
		t["focus"] = reference{Reference: ref}
		t["basedOn"] = []reference{{Reference: ref}}
		if strings.HasPrefix(ref, "Encounter/") {
			t["encounter"] = reference{Reference: ref}
		}
	}
	body, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	res, _, err := p.store.Codec().Parse(body)
	if err != nil {
		return nil, fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	return res, nil
}
