package planner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
)

// crossReference records on the local Patient what a care event says of
// its patient and the Patient lacks:
//
//   - The identifiers it lists (the PID-3 repetitions of an HL7 v2 message,
//     one per assigning authority). They are the cross-references the
//     network search reaches other domains by, and the archive files a
//     prior retrieved from another domain under the Patient that carries
//     its PatientID: without them such a prior made a second Patient and
//     was quarantined as another patient's.
//   - From an ADT message (the registration system), the name, birth date
//     and sex (PID-5, 7, 8) when they differ: the search checks remote
//     studies against them, so a birth date the registration corrected kept
//     refusing the patient's priors. The name it replaces is kept, as old.
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
	switch {
	case len(found) == 0:
		return out, nil
	case len(found) > 1:
		out.CrossReferencesUnresolved++
		p.log.WarnContext(ctx, "planner: the event's identifiers name several Patients; none is cross-referenced",
			"event", ev.ID, "patients", len(found))
		return out, nil
	}
	d := found[0]
	// An identifier in a system where the Patient carries another current
	// one (a second MRN of one hospital) is a conflict this must not
	// settle either: a merge (ADT^A40) says which is old.
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
	added := d.addIdentifiers(add, "")
	updated := fromRegistration(ev) && d.demographics(ev.Patient)
	if !added && !updated {
		return out, nil
	}
	c, err := p.prepare(d)
	if errors.Is(err, errPatientRefused) {
		out.CrossReferencesUnresolved++
		// Not the error: FHIR validation may quote the value.
		p.log.WarnContext(ctx, "planner: what the event says of its patient makes a Patient FHIR refuses; not recorded", "event", ev.ID, "patient", d.id)
		return out, nil
	}
	if err == nil {
		err = c.put(ctx, tx)
	}
	if err != nil {
		return out, fmt.Errorf("cross-reference: %w", err)
	}
	if added {
		out.CrossReferenced++
	}
	if updated {
		out.DemographicsUpdated++
	}
	return out, nil
}

// fromRegistration reports whether ev comes from the registration system:
// an HL7 v2 ADT message, whose PID is the patient's record of reference.
func fromRegistration(ev *triggers.CareEvent) bool {
	return strings.HasPrefix(ev.Origin.MessageType, "ADT^") && ev.Kind != triggers.PatientMerged
}

// crossReferences reports whether ev may bring what its Patient lacks, or
// name several Patients: it comes from outside FHIR, is no merge, some of
// its identifiers name a Patient here (refs, resolvePatients), and either
// it has two identifiers at least and they do not all name the same one,
// or it comes from the registration system with demographics.
// crossReference decides under the identifiers' locks.
func crossReferences(ev *triggers.CareEvent, refs map[string]string) bool {
	if ev.Kind == triggers.PatientMerged || ev.Patient.FHIRID != "" {
		return false
	}
	ids := withSystem(ev.Patient.Identifiers)
	var named []string
	for _, x := range ids {
		if r := refs[x.System+"|"+x.Value]; r != "" {
			named = append(named, r)
		}
	}
	if len(named) == 0 {
		return false
	}
	pt := ev.Patient
	if fromRegistration(ev) && (pt.Family != "" || pt.BirthDate != "" || pt.Sex != "") {
		return true
	}
	slices.Sort(named)
	return len(ids) >= 2 && (len(named) < len(ids) || len(slices.Compact(named)) > 1)
}

// demographics sets the Patient's name, birth date and sex to those of pt
// where pt has them and they differ; a replaced name is kept with use old.
func (d *patientRecord) demographics(pt triggers.Patient) bool {
	changed := false
	// A less precise date ("1980" for "1980-01-02") or an unknown sex says
	// less than what is there, not something else.
	if current, _ := d.body["birthDate"].(string); pt.BirthDate != "" && !strings.HasPrefix(current, pt.BirthDate) {
		d.body["birthDate"] = pt.BirthDate
		changed = true
	}
	if pt.Sex != "" && pt.Sex != "unknown" && d.body["gender"] != pt.Sex {
		d.body["gender"] = pt.Sex
		changed = true
	}
	if pt.Family == "" {
		return changed
	}
	names, _ := d.body["name"].([]any)
	for _, n := range names {
		m, _ := n.(map[string]any)
		if m == nil || m["use"] == "old" || m["use"] == "maiden" || otherScript(m) {
			continue
		}
		// The name in use: the first that is not old, as the search reads it.
		family, _ := m["family"].(string)
		var given string
		if g, _ := m["given"].([]any); len(g) > 0 {
			given, _ = g[0].(string)
		}
		var want string
		if len(pt.Given) > 0 {
			want = pt.Given[0]
		}
		if fhir.NormalizeString(family) == fhir.NormalizeString(pt.Family) && fhir.NormalizeString(given) == fhir.NormalizeString(want) {
			return changed
		}
		break
	}
	name := map[string]any{"use": "official", "family": pt.Family}
	if len(pt.Given) > 0 {
		given := make([]any, len(pt.Given))
		for i, g := range pt.Given {
			given[i] = g
		}
		name["given"] = given
	}
	kept := []any{name}
	for _, n := range names {
		if m, _ := n.(map[string]any); m != nil {
			if (m["use"] == nil || m["use"] == "official" || m["use"] == "usual") && !otherScript(m) {
				m["use"] = "old"
			}
			kept = append(kept, m)
		}
	}
	d.body["name"] = kept
	return true
}

// otherScript reports whether a HumanName is the ideographic or phonetic
// writing of a name (fhir.OtherScript), which the archive makes from a
// DICOM name's component groups. An HL7 v2 name is compared
// with, and replaces, the alphabetic one only: it says nothing of the
// others.
func otherScript(name map[string]any) bool {
	exts, _ := name["extension"].([]any)
	var xs []fhir.NameExtension
	for _, x := range exts {
		if m, _ := x.(map[string]any); m != nil {
			url, _ := m["url"].(string)
			code, _ := m["valueCode"].(string)
			xs = append(xs, fhir.NameExtension{URL: url, ValueCode: code})
		}
	}
	return fhir.OtherScript(xs)
}
