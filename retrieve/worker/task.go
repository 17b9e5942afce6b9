package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	fsearch "github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/printable"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/triggers/planner"
)

// Codes the worker writes.
const (
	// BusinessStatusSystem codes Task.businessStatus of a prefetch Task:
	// searching, retrieving, completed, failed (and cancelled, which the
	// operator sets).
	BusinessStatusSystem = planner.BusinessStatusSystem
	// OutputImagingStudy types a Task.output that names an ImagingStudy.
	OutputImagingStudy = "imaging-study"
	// TaskReviewQuarantine codes the review Task of quarantined instances.
	TaskReviewQuarantine = "review-quarantine"
	// CareEventSystem identifies a care event (triggers.CareEvent.ID).
	CareEventSystem = "urn:priorflow:care-event"
	// RulePolicyPrefix + rule name is the Provenance.policy of an import.
	RulePolicyPrefix = "urn:priorflow:rule:"
	dcm              = "http://dicom.nema.org/resources/ontology/DCM"
)

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// claim marks the job in progress (a new attempt) if the message's revision
// is still current; false means the job changed or ended meanwhile.
func (w *Worker) claim(ctx context.Context, j *job) (bool, error) {
	now := w.cfg.Now()
	claimed := false
	err := w.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		err := tx.PgxTx().QueryRow(ctx, `UPDATE prefetch_job SET state = 'in-progress', attempts = attempts + 1, updated_at = $3
			WHERE id = $1 AND revision = $2 AND state IN ('requested', 'in-progress') RETURNING attempts`, j.ID, j.Revision, now).Scan(&j.Attempts)
		if err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return fmt.Errorf("claim job %s: %w", j.ID, err)
		}
		claimed = true
		j.State = planner.StateInProgress
		return w.editTask(ctx, tx, j, func(t map[string]any) {
			t["status"] = string(planner.StateInProgress)
			t["businessStatus"] = businessStatus("searching")
			p, _ := t["executionPeriod"].(map[string]any)
			if p == nil {
				t["executionPeriod"] = map[string]any{"start": ts(now)}
			}
			if notes, _ := t["note"].([]any); len(notes) == 0 {
				addNote(t, j.EventAt, "event received: "+j.EventID)
				addNote(t, j.CreatedAt, "planned by rule "+j.Rule+", due "+ts(j.DueAt))
			}
			addNote(t, now, fmt.Sprintf("searching (attempt %d)", j.Attempts))
		})
	})
	return claimed, err
}

// note adds a timeline entry to the job's Task, with a business status and
// output references. A failure is logged: the timeline is informative.
func (w *Worker) note(ctx context.Context, j *job, status, text string, outputs []string) {
	text = printable.Replace(text)
	now := w.cfg.Now()
	err := w.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		// The row lock orders this edit with an operator's (planner.CancelJob
		// takes it too), so neither overwrites the other's Task; a job no
		// longer this attempt's keeps the Task the operator left.
		var state planner.State
		var revision int
		if err := tx.PgxTx().QueryRow(ctx, `SELECT state, revision FROM prefetch_job WHERE id = $1 FOR UPDATE`, j.ID).
			Scan(&state, &revision); err != nil {
			return fmt.Errorf("lock job %s: %w", j.ID, err)
		}
		if state != planner.StateInProgress || revision != j.Revision {
			return nil
		}
		return w.editTask(ctx, tx, j, func(t map[string]any) {
			t["businessStatus"] = businessStatus(status)
			addNote(t, now, text)
			addOutputs(t, outputs)
		})
	})
	if err != nil && ctx.Err() == nil {
		w.log.Warn("worker: task note", "job", j.ID, "err", err)
	}
}

// setError records the reason of a failed attempt on the job row.
func (w *Worker) setError(ctx context.Context, j *job, reason string) {
	reason = printable.Replace(reason)
	if _, err := w.cfg.Store.Pool().Exec(ctx, `UPDATE prefetch_job SET last_error = $2
		WHERE id = $1 AND state = 'in-progress' AND revision = $3`, j.ID, reason, j.Revision); err != nil {
		w.log.Warn("worker: record job error", "job", j.ID, "err", err)
	}
}

// finish ends a job completed or failed, with its Task.
func (w *Worker) finish(ctx context.Context, j *job, state planner.State, reason string, outputs []string) verdict {
	// Reasons quote errors, which may quote what a remote source sent:
	// PostgreSQL refuses a NUL and FHIR other control characters, and a
	// job whose end cannot be written would be tried again for ever.
	reason = printable.Replace(reason)
	now := w.cfg.Now()
	changed := false
	err := w.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		tag, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, last_error = $3, updated_at = $4
			WHERE id = $1 AND state = 'in-progress' AND revision = $5`, j.ID, state, reason, now, j.Revision)
		if err != nil {
			return fmt.Errorf("finish job %s: %w", j.ID, err)
		}
		if tag.RowsAffected() == 0 {
			// Cancelled meanwhile (a new revision): the Task stays cancelled.
			changed = true
			return nil
		}
		return w.editTask(ctx, tx, j, func(t map[string]any) {
			t["status"] = string(state)
			t["businessStatus"] = businessStatus(string(state))
			p, _ := t["executionPeriod"].(map[string]any)
			if p == nil {
				p = map[string]any{}
			}
			p["end"] = ts(now)
			t["executionPeriod"] = p
			addOutputs(t, outputs)
			if reason != "" {
				t["statusReason"] = map[string]any{"text": printable.Truncate(reason, 2000)}
				addNote(t, now, string(state)+": "+printable.Truncate(reason, 2000))
			} else {
				addNote(t, now, string(state))
			}
		})
	})
	if err != nil {
		if ctx.Err() != nil {
			return verdict{handBack: true}
		}
		w.log.Error("worker: finish job", "job", j.ID, "err", err)
		return verdict{retryIn: 5 * time.Second}
	}
	if changed {
		return w.abandon(j, "finishing as "+string(state))
	}
	w.cfg.Metrics.jobs.WithLabelValues(string(state)).Inc()
	w.log.Info("worker: job finished", "job", j.ID, "state", state, "reason", reason, "studies", len(outputs))
	return verdict{}
}

// editTask reads the job's Task, applies fn and writes it back.
func (w *Worker) editTask(ctx context.Context, tx *postgres.Tx, j *job, fn func(map[string]any)) error {
	cur, err := tx.Read(ctx, "Task", j.TaskID)
	if err != nil {
		return fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	t := map[string]any{}
	if err := json.Unmarshal(cur.Body, &t); err != nil {
		return fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	fn(t)
	t["lastModified"] = ts(w.cfg.Now())
	delete(t, "meta")
	return w.put(ctx, tx, t)
}

func (w *Worker) parse(v map[string]any) (protoMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	msg, _, err := w.cfg.Store.Codec().Parse(b)
	return msg, err
}

func (w *Worker) put(ctx context.Context, tx *postgres.Tx, v map[string]any) error {
	msg, err := w.parse(v)
	if err != nil {
		return fmt.Errorf("%s/%v: %w", v["resourceType"], v["id"], err)
	}
	if _, _, err := tx.Put(ctx, msg, 0); err != nil {
		return fmt.Errorf("%s/%v: %w", v["resourceType"], v["id"], err)
	}
	return nil
}

func (w *Worker) create(ctx context.Context, tx *postgres.Tx, v map[string]any) (string, error) {
	msg, err := w.parse(v)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", v["resourceType"], err)
	}
	r, err := tx.Create(ctx, msg)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", v["resourceType"], err)
	}
	return r.ID, nil
}

func businessStatus(code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": BusinessStatusSystem, "code": code}}, "text": code}
}

func addNote(t map[string]any, at time.Time, text string) {
	notes, _ := t["note"].([]any)
	t["note"] = append(notes, map[string]any{"time": ts(at), "text": text})
}

func addOutputs(t map[string]any, refs []string) {
	outs, _ := t["output"].([]any)
	have := map[string]bool{}
	for _, o := range outs {
		m, _ := o.(map[string]any)
		vr, _ := m["valueReference"].(map[string]any)
		if r, _ := vr["reference"].(string); r != "" {
			have[r] = true
		}
	}
	for _, r := range sortedUnique(append([]string(nil), refs...)) {
		if have[r] {
			continue
		}
		outs = append(outs, map[string]any{
			"type":           map[string]any{"coding": []any{map[string]any{"system": planner.TaskCodeSystem, "code": OutputImagingStudy}}},
			"valueReference": map[string]any{"reference": r},
		})
	}
	if len(outs) > 0 {
		t["output"] = outs
	}
}

// complete makes a retrieved study local in the FHIR view: its
// ImagingStudy loses the remote tag and points at the local Endpoint, gets
// a Provenance and an import AuditEvent, and imaging.study.available goes
// out. It returns the ImagingStudy reference.
func (w *Worker) complete(ctx context.Context, j *job, st retrieve.Study, out *retrieve.Outcome) (string, error) {
	isID, err := w.cfg.Archive.StudyFHIRID(ctx, st.StudyInstanceUID)
	if errors.Is(err, archive.ErrNotFound) {
		return "", fmt.Errorf("no instance of study %s could be stored", st.StudyInstanceUID)
	}
	if err != nil {
		return "", err
	}
	ref := "ImagingStudy/" + isID
	now := w.cfg.Now()
	var patient string
	var modalities []string
	err = w.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		cur, err := tx.Read(ctx, "ImagingStudy", isID)
		if err != nil {
			return err
		}
		is := map[string]any{}
		if err := json.Unmarshal(cur.Body, &is); err != nil {
			return err
		}
		subj, _ := is["subject"].(map[string]any)
		patient, _ = subj["reference"].(string)
		mods, _ := is["modality"].([]any)
		for _, m := range mods {
			if c, _ := m.(map[string]any)["code"].(string); c != "" {
				modalities = append(modalities, c)
			}
		}
		untagged := removeRemoteTag(is)
		eps, _ := is["endpoint"].([]any)
		local := len(eps) == 1 && eps[0].(map[string]any)["reference"] == "Endpoint/"+archive.LocalEndpointID
		if untagged || !local {
			is["endpoint"] = []any{map[string]any{"reference": "Endpoint/" + archive.LocalEndpointID}}
			if err := w.put(ctx, tx, is); err != nil {
				return err
			}
		}
		if !untagged && out.Stored == 0 {
			return nil // recorded by an earlier attempt
		}
		reg := w.cfg.Store.Registry()
		if reg.Type("Provenance") != nil {
			if _, err := w.create(ctx, tx, provenance(j, st, ref, now)); err != nil {
				return err
			}
		}
		if reg.Type("AuditEvent") != nil {
			if _, err := w.create(ctx, tx, importAudit(j, st, ref, patient, out, now)); err != nil {
				return err
			}
		} else {
			w.log.Info("study imported", "job", j.ID, "study", st.StudyInstanceUID, "source", st.Source, "instances", out.Stored)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("complete study %s: %w", st.StudyInstanceUID, err)
	}
	w.cfg.Metrics.loaded.Observe(now.Sub(j.EventAt).Seconds())
	ev := &subscriptions.StudyAvailable{SchemaVersion: 1, EventID: "study-available/" + j.ID + "/" + st.StudyInstanceUID, Study: ref,
		Patient: patient, ModalitiesInStudy: modalities, TriggerEventID: j.EventID, OccurredAt: now.UTC()}
	if err := w.cfg.Publisher.PublishStudyAvailable(ctx, ev); err != nil {
		// The study is local and indexed; subscribers still see the
		// ImagingStudy change. Not worth failing the job for.
		w.log.Warn("worker: publish study available", "job", j.ID, "study", ref, "err", err)
	}
	return ref, nil
}

// removeRemoteTag drops meta.tag urn:priorflow:tag|remote (which the
// archive's reindex keeps) and reports whether it was there.
func removeRemoteTag(is map[string]any) bool {
	meta, _ := is["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	var keep []any
	found := false
	for _, t := range tags {
		m, _ := t.(map[string]any)
		if m["system"] == search.TagSystem && m["code"] == search.TagRemote {
			found = true
			continue
		}
		keep = append(keep, t)
	}
	delete(is, "meta")
	if len(keep) > 0 {
		is["meta"] = map[string]any{"tag": keep}
	}
	return found
}

// provenance records where an imported study came from (FHIR R4
// provenance.html): the source's Endpoint, the rule as policy, the care
// event and the job's Task as entities.
func provenance(j *job, st retrieve.Study, ref string, now time.Time) map[string]any {
	return map[string]any{
		"resourceType": "Provenance",
		"target":       []any{map[string]any{"reference": ref}},
		"recorded":     now.UTC().Format(time.RFC3339Nano),
		"policy":       []any{RulePolicyPrefix + j.Rule},
		"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
			"code": "CREATE", "display": "create"}}},
		"reason": []any{map[string]any{"text": "prefetch of prior imaging for rule " + j.Rule}},
		"agent": []any{
			map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}}},
				"who": map[string]any{"display": "Priorflow prefetcher"}},
			map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "custodian"}}},
				"who": map[string]any{"identifier": map[string]any{"system": search.SourceSystem, "value": st.Source}, "display": st.Source}},
		},
		"entity": []any{
			map[string]any{"role": "source", "what": map[string]any{"reference": "Endpoint/" + search.EndpointID(st.Source), "display": st.Source}},
			map[string]any{"role": "source", "what": map[string]any{"identifier": map[string]any{"system": CareEventSystem, "value": j.EventID}, "display": "triggering care event"}},
			map[string]any{"role": "source", "what": map[string]any{"reference": "Task/" + j.TaskID}},
		},
	}
}

// importAudit is the AuditEvent of an import (DICOM PS3.15 A.5.3.7
// "Import", DCM 110107, in the IHE BALP style of the search's records).
func importAudit(j *job, st retrieve.Study, ref, patient string, out *retrieve.Outcome, now time.Time) map[string]any {
	entities := []any{map[string]any{
		"what": map[string]any{"reference": ref},
		"type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
		"role": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"},
		"detail": []any{
			map[string]any{"type": "StudyInstanceUID", "valueString": st.StudyInstanceUID},
			map[string]any{"type": "job", "valueString": j.ID},
			map[string]any{"type": "rule", "valueString": j.Rule},
			map[string]any{"type": "instances", "valueString": strconv.Itoa(out.Stored)},
			map[string]any{"type": "bytes", "valueString": strconv.FormatInt(out.Bytes, 10)},
		},
	}}
	if patient != "" {
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": patient},
			"type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
			"role": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
		})
	}
	return map[string]any{
		"resourceType": "AuditEvent",
		"type":         map[string]any{"system": dcm, "code": "110107", "display": "Import"},
		"subtype":      []any{map[string]any{"system": "urn:priorflow:audit", "code": "prefetch-import", "display": "Prefetch of a prior study"}},
		"action":       "C",
		"recorded":     now.UTC().Format(time.RFC3339Nano),
		"outcome":      "0",
		"agent": []any{
			map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110153", "display": "Source Role ID"}}},
				"who": map[string]any{"identifier": map[string]any{"system": search.SourceSystem, "value": st.Source}, "display": st.Source}, "requestor": false},
			map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110152", "display": "Destination Role ID"}}},
				"who": map[string]any{"display": "Priorflow prefetcher"}, "requestor": true},
		},
		"source": map[string]any{"observer": map[string]any{"display": "Priorflow"},
			"type": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}}},
		"entity": entities,
	}
}

// reviewQuarantine raises one review-quarantine Task per job and study,
// naming each refused instance and why.
func (w *Worker) reviewQuarantine(ctx context.Context, j *job, st retrieve.Study, qs []retrieve.Quarantined) error {
	reg := w.cfg.Store.Registry()
	rt := reg.Type("Task")
	key := j.ID + "/" + st.StudyInstanceUID + "/quarantine"
	return w.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		if err := tx.Lock(ctx, "Task?identifier="+url.QueryEscape(search.ReviewSystem+"|"+key)); err != nil {
			return err
		}
		found, err := tx.Search(ctx, &fsearch.Query{Type: rt, Count: 1, Clauses: []fsearch.Clause{{
			Param: rt.Param("identifier"), Values: []fsearch.Value{{Token: fhir.Token{System: search.ReviewSystem, Code: key}, SystemSet: true}}}}})
		if err != nil {
			return err
		}
		if len(found.Matches) > 0 {
			return nil
		}
		var inputs []any
		for _, q := range qs {
			v := fmt.Sprintf("SOP Instance %s: %s", q.SOPInstanceUID, q.Reason)
			if q.BlobKey != "" {
				v += " (kept at " + q.BlobKey + ")"
			}
			inputs = append(inputs, map[string]any{
				"type":        map[string]any{"coding": []any{map[string]any{"system": search.TaskSystem, "code": "quarantined-instance"}}},
				"valueString": v,
			})
		}
		t := map[string]any{
			"resourceType": "Task",
			"identifier":   []any{map[string]any{"system": search.ReviewSystem, "value": key}},
			"status":       "requested",
			"intent":       "order",
			"priority":     "urgent",
			"code": map[string]any{"coding": []any{map[string]any{"system": search.TaskSystem, "code": TaskReviewQuarantine,
				"display": "Review instances quarantined on import"}}},
			"description": fmt.Sprintf("Source %s sent %d instances with study %s that do not carry the selected patient or study; they were not indexed.",
				st.Source, len(qs), st.StudyInstanceUID),
			"authoredOn": ts(w.cfg.Now()),
			"partOf":     []any{map[string]any{"reference": "Task/" + j.TaskID}},
			"input":      inputs,
		}
		if j.PatientRef != "" {
			t["for"] = map[string]any{"reference": j.PatientRef}
		}
		_, err = w.create(ctx, tx, t)
		return err
	})
}

type protoMessage = proto.Message
