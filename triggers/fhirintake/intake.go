// Package fhirintake turns FHIR writes into care events: a create, update or
// delete of an Appointment, Encounter or ServiceRequest that means something
// happened to a patient (see derive.go for the table) becomes a
// triggers.CareEvent, written to the outbox (triggers/postgres) inside the
// transaction that writes the resource. The event exists exactly when the
// resource version committed, and the outbox relay publishes it.
//
// An event whose patient cannot be identified (no Patient reference, a
// Patient that does not exist or has no identifier) does not fail the
// clinical write: it is written to the outbox blocked, with the reason, and
// logged without patient data, for an integration engineer to see. A
// Patient written later in the same transaction (a transaction Bundle)
// completes and unblocks it.
package fhirintake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/postgres"
)

// SourceSystem is the CareEvent.SourceSystem of FHIR intake.
const SourceSystem = "fhir"

// Types are the resource types whose writes are care events; the registry
// must hold them (fhir.Appointment, fhir.Encounter, fhir.ServiceRequest).
var Types = []string{"Appointment", "Encounter", "ServiceRequest"}

// maxOrders bounds the basedOn orders read to complete one event.
const maxOrders = 5

type intake struct {
	log *slog.Logger
	// base is the store's FHIR base (Store.BaseURL): a reference written
	// as an absolute URL under it names a resource here, as the store's
	// index reads it.
	base string
}

// Register installs the intake's write hooks on store: writes of Types
// derive care events into the outbox; Patient writes complete the events
// of their own transaction. Call it while wiring, before serving, and after
// store.SetBaseURL: references are read against the store's base.
func Register(store *fhirpg.Store, log *slog.Logger) error {
	if store == nil || log == nil {
		return errors.New("fhir intake: store and logger are required")
	}
	for _, typ := range append(slices.Clone(Types), "Patient") {
		if store.Registry().Type(typ) == nil {
			return fmt.Errorf("fhir intake: the registry has no %s type", typ)
		}
	}
	in := &intake{log: log, base: store.BaseURL()}
	for _, typ := range Types {
		store.OnWrite(typ, in.onWrite)
	}
	store.OnWrite("Patient", in.onPatientWrite)
	return nil
}

// onWrite derives the events of one write and enqueues them.
func (in *intake) onWrite(ctx context.Context, tx *fhirpg.Tx, prev, next *fhir.Resource) error {
	drafts, err := derive(prev, next)
	if err != nil || len(drafts) == 0 {
		return err
	}
	version := strconv.Itoa(next.Version)
	entries := make([]postgres.OutboxEntry, 0, len(drafts))
	for _, d := range drafts {
		ev := d.ev
		ev.SchemaVersion = triggers.SchemaVersion
		ev.ID = triggers.EventID(SourceSystem, next.Type, next.ID, version, string(ev.Kind))
		ev.OccurredAt = next.LastUpdated.UTC()
		ev.SourceSystem = SourceSystem
		ev.Origin = triggers.Origin{Reference: next.Type + "/" + next.ID + "/_history/" + version}
		if err := completeFromOrders(ctx, tx, in.base, &ev, d.basedOn); err != nil {
			return err
		}
		ref, blocked, err := resolvePatient(ctx, tx, in.base, d.patient, &ev.Patient)
		if err != nil {
			return err
		}
		if blocked != "" {
			in.logBlocked(&ev, blocked)
		}
		entries = append(entries, postgres.OutboxEntry{Event: &ev, PatientRef: ref, Blocked: blocked})
	}
	return postgres.Enqueue(ctx, tx.PgxTx(), entries...)
}

// onPatientWrite completes the events this transaction enqueued for the
// patient before the Patient itself was written.
func (in *intake) onPatientWrite(ctx context.Context, tx *fhirpg.Tx, _, next *fhir.Resource) error {
	if next.Deleted {
		return nil
	}
	ref := "Patient/" + next.ID
	entries, err := postgres.EnqueuedInTx(ctx, tx.PgxTx(), ref)
	if err != nil || len(entries) == 0 {
		return err
	}
	resolved, err := patientFrom(next)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := resolved
		if len(p.Identifiers) == 0 {
			// Keep what a logical reference gave, if anything.
			p.Identifiers = e.Event.Patient.Identifiers
		}
		e.Event.Patient = p
		e.Blocked = ""
		if len(p.Identifiers) == 0 {
			e.Blocked = ref + " has no identifier"
			in.logBlocked(e.Event, e.Blocked)
		}
		if err := postgres.Update(ctx, tx.PgxTx(), e); err != nil {
			return err
		}
	}
	return nil
}

func (in *intake) logBlocked(ev *triggers.CareEvent, reason string) {
	in.log.Warn("care event blocked in the outbox: its patient cannot be identified",
		"event", ev.ID, "kind", ev.Kind, "origin", ev.Origin.Reference, "reason", reason)
}

// resolvePatient fills p from the patient ref names, read in tx so that a
// Patient created earlier in the same transaction is found. It returns the
// local reference ("Patient/id") when ref is one, and why the event must be
// blocked when the patient has no identifier.
func resolvePatient(ctx context.Context, tx *fhirpg.Tx, base string, ref *reference, p *triggers.Patient) (local, blocked string, err error) {
	*p = triggers.Patient{}
	if ref == nil {
		return "", "the resource names no patient", nil
	}
	if t := refType(ref); t != "" && t != "Patient" {
		return "", "the subject is a " + t + ", not a Patient", nil
	}
	var logical []triggers.Identifier
	if ref.Identifier != nil && ref.Identifier.Value != "" {
		logical = append(logical, eventIdentifier(*ref.Identifier))
	}
	typ, id, ok := localRef(ref.Reference, base)
	switch {
	case !ok:
		blocked = "the patient reference is not to a resource on this server"
	case typ != "Patient":
		blocked = "the subject is a " + typ + ", not a Patient"
	default:
		local = "Patient/" + id
		res, err := tx.Read(ctx, "Patient", id)
		switch {
		case fhir.IsKind(err, fhir.KindNotFound):
			blocked = local + " does not exist"
		case fhir.IsKind(err, fhir.KindGone):
			blocked = local + " is deleted"
		case err != nil:
			return "", "", fmt.Errorf("resolve %s: %w", local, err)
		default:
			if *p, err = patientFrom(res); err != nil {
				return "", "", err
			}
			if len(p.Identifiers) == 0 {
				blocked = local + " has no identifier"
			}
		}
	}
	if len(p.Identifiers) == 0 && len(logical) > 0 {
		p.Identifiers, blocked = logical, ""
	}
	return local, blocked, nil
}

// patientFrom maps a stored Patient to the event's patient: every
// identifier with a value, the official (else usual, else first) name,
// birth date, gender and id.
func patientFrom(res *fhir.Resource) (triggers.Patient, error) {
	pt, err := decode[patient](res.Body)
	if err != nil {
		return triggers.Patient{}, fmt.Errorf("read Patient/%s: %w", res.ID, err)
	}
	p := triggers.Patient{BirthDate: pt.BirthDate, Sex: pt.Gender, FHIRID: res.ID}
	for _, id := range pt.Identifier {
		if id.Value != "" {
			p.Identifiers = append(p.Identifiers, eventIdentifier(id))
		}
	}
	if n := pickName(pt.Name); n != nil {
		p.Family, p.Given = n.Family, n.Given
	}
	return p, nil
}

func pickName(names []humanName) *humanName {
	for _, use := range []string{"official", "usual"} {
		for i := range names {
			if names[i].Use == use {
				return &names[i]
			}
		}
	}
	if len(names) > 0 {
		return &names[0]
	}
	return nil
}

// eventIdentifier maps a FHIR Identifier: system and value, the first code
// of its type (v2 table 0203: MR, PI ...), and its assigner as authority.
func eventIdentifier(id identifier) triggers.Identifier {
	out := triggers.Identifier{System: id.System, Value: id.Value}
	if id.Type != nil {
		for _, c := range id.Type.Coding {
			if c.Code != "" {
				out.Type = c.Code
				break
			}
		}
	}
	if a := id.Assigner; a != nil {
		if a.Identifier != nil && a.Identifier.Value != "" {
			out.Authority = a.Identifier.Value
		} else {
			out.Authority = a.Display
		}
	}
	return out
}

// completeFromOrders fills what ev lacks (procedures, modality, body sites)
// from the ServiceRequests it is based on, as tx sees them. An order that
// is not there is skipped: it only adds detail.
func completeFromOrders(ctx context.Context, tx *fhirpg.Tx, base string, ev *triggers.CareEvent, basedOn []reference) error {
	needProcedures := len(ev.Procedures) == 0
	needSites := len(ev.BodySites) == 0
	n := 0
	for _, r := range basedOn {
		if ev.Modality != "" && !needProcedures && !needSites {
			return nil
		}
		typ, id, ok := localRef(r.Reference, base)
		if !ok || typ != "ServiceRequest" {
			continue
		}
		if n++; n > maxOrders {
			return nil
		}
		res, err := tx.Read(ctx, typ, id)
		if fhir.IsKind(err, fhir.KindNotFound) || fhir.IsKind(err, fhir.KindGone) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read order %s/%s: %w", typ, id, err)
		}
		sr, err := decode[serviceRequest](res.Body)
		if err != nil {
			return fmt.Errorf("read order %s/%s: %w", typ, id, err)
		}
		if needProcedures {
			ev.Procedures = append(ev.Procedures, codes(sr.Code)...)
		}
		if needSites {
			ev.BodySites = append(ev.BodySites, codes(ptrs(sr.BodySite)...)...)
		}
		if ev.Modality == "" {
			ev.Modality = modalityOf(sr.Code)
		}
	}
	return nil
}
