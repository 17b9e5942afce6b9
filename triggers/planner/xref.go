package planner

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
)

// crossReference records on the local Patient the identifiers a care event
// lists for its patient (the PID-3 repetitions of an HL7 v2 message, one
// per assigning authority) that it does not carry yet. Those identifiers
// are the cross-references the network search reaches other domains by,
// and the archive files a prior retrieved from another domain under the
// Patient that carries its PatientID: without them such a prior made a
// second Patient and was quarantined as another patient's.
//
// Only when the event's identifiers name exactly one Patient here: none is
// nothing to add to, and several is a conflict this must not settle (the
// planner logs it, and neither Patient changes). A merge (ADT^A40) is
// merge's.
func (p *Planner) crossReference(ctx context.Context, tx *postgres.Tx, ev *triggers.CareEvent) (Outcome, error) {
	var out Outcome
	ids := withSystem(ev.Patient.Identifiers)
	if err := lockIdentifiers(ctx, tx, ids); err != nil {
		return out, err
	}
	found, err := p.patientsWith(ctx, tx, ids)
	if err != nil {
		return out, err
	}
	switch len(found) {
	case 0:
		return out, nil
	case 1:
		d := found[0]
		// An identifier in a system where the Patient carries another
		// current one (a second MRN of one hospital) is a conflict this
		// must not settle either: a merge (ADT^A40) says which is old.
		var add []triggers.Identifier
		for _, x := range ids {
			if d.conflicts(x) {
				out.CrossReferencesUnresolved++
				p.log.WarnContext(ctx, "planner: the event names an identifier in a system where its Patient carries another; not cross-referenced",
					"event", ev.ID, "patient", d.id)
				continue
			}
			add = append(add, x)
		}
		if !d.addIdentifiers(add, "") {
			break
		}
		c, err := p.prepare(d)
		if errors.Is(err, errPatientRefused) {
			out.CrossReferencesUnresolved++
			p.log.WarnContext(ctx, "planner: the event's identifiers make a Patient FHIR refuses; not cross-referenced", "event", ev.ID, "err", err)
			break
		}
		if err == nil {
			err = c.put(ctx, tx)
		}
		if err != nil {
			return out, fmt.Errorf("cross-reference: %w", err)
		}
		out.CrossReferenced++
	default:
		out.CrossReferencesUnresolved++
		p.log.WarnContext(ctx, "planner: the event's identifiers name several Patients; none is cross-referenced",
			"event", ev.ID, "patients", len(found))
	}
	return out, nil
}

// crossReferences reports whether ev may bring identifiers its Patient
// lacks, or name several Patients: it comes from outside FHIR, is no
// merge, and of its identifiers (two at least) some name a Patient here
// (refs, resolvePatients) but not all the same one. crossReference decides
// under the identifiers' locks.
func crossReferences(ev *triggers.CareEvent, refs map[string]string) bool {
	if ev.Kind == triggers.PatientMerged || ev.Patient.FHIRID != "" {
		return false
	}
	ids := withSystem(ev.Patient.Identifiers)
	if len(ids) < 2 {
		return false
	}
	var named []string
	for _, x := range ids {
		if r := refs[x.System+"|"+x.Value]; r != "" {
			named = append(named, r)
		}
	}
	slices.Sort(named)
	return len(named) > 0 && (len(named) < len(ids) || len(slices.Compact(named)) > 1)
}
