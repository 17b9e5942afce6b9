package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/triggers"
)

// merge records an ADT^A40 (HL7 v2.5.1 3.3.40: the prior identifiers of
// MRG-1 merged into the surviving PID-3) in the local Patient resources,
// which are the cross-references the network search reads (search's
// identity: a Patient's identifiers are searched for at every source):
//
//   - Only the survivor has a Patient here: the prior identifiers are added
//     to it with use "old", so priors filed under them elsewhere are found
//     for it, and objects that still carry them are filed under it.
//   - Only the prior patient has one: the surviving identifiers are added
//     to it and its own are marked "old": it is the survivor now.
//   - Both have one: the prior Patient is made inactive and replaced-by the
//     survivor, which replaces it (R4 Patient.link). Identifiers and studies
//     stay where they are: the archive files an object under the Patient
//     its own PatientID names, and one identifier on two Patients would make
//     it refuse them.
//   - Several Patients carry the surviving or the prior identifiers: which
//     to merge is not clear, and nothing changes (logged).
//
// Pending jobs are left as they are: they resolve their patient when they
// run (search's identity), and then see the merged identifiers. Applying
// the same merge again changes nothing.
func (p *Planner) merge(ctx context.Context, tx *postgres.Tx, ev *triggers.CareEvent) (Outcome, error) {
	var out Outcome
	if p.store.Registry().Type("Patient") == nil {
		return out, nil
	}
	surviving, prior := withSystem(ev.Patient.Identifiers), withSystem(ev.PriorIdentifiers)
	if len(surviving) == 0 || len(prior) == 0 {
		// Without a system an identifier names no Patient here.
		out.MergesUnresolved++
		p.log.WarnContext(ctx, "planner: merge names identifiers without a system; no Patient changed", "event", ev.ID)
		return out, nil
	}
	if err := lockIdentifiers(ctx, tx, slices.Concat(surviving, prior)); err != nil {
		return out, err
	}
	survivors, err := p.patientsWith(ctx, tx, surviving)
	if err != nil {
		return out, err
	}
	priors, err := p.patientsWith(ctx, tx, prior)
	if err != nil {
		return out, err
	}
	if len(survivors) > 1 || len(priors) > 1 {
		out.MergesUnresolved++
		// Counts, not identifiers: logs carry no patient data.
		p.log.WarnContext(ctx, "planner: merge is ambiguous, several Patients carry the identifiers; no Patient changed",
			"event", ev.ID, "surviving", len(survivors), "prior", len(priors))
		return out, nil
	}
	var changed []*patientRecord
	switch {
	case len(survivors) == 1 && len(priors) == 1 && survivors[0].id == priors[0].id:
		// Merged already.
	case len(survivors) == 1 && len(priors) == 1:
		s, r := survivors[0], priors[0]
		if s.link("replaces", r.id) {
			changed = append(changed, s)
		}
		linked, deactivated := r.link("replaced-by", s.id), r.deactivate()
		if linked || deactivated {
			changed = append(changed, r)
		}
	case len(survivors) == 1:
		if s := survivors[0]; s.addIdentifiers(prior, "old") {
			changed = append(changed, s)
		}
	case len(priors) == 1:
		r := priors[0]
		old := r.markOld(prior)
		if r.addIdentifiers(surviving, "") || old {
			changed = append(changed, r)
		}
	}
	// In id order, so that two planners never wait on each other's rows.
	// Validation runs before any write, so a refused change writes none.
	slices.SortFunc(changed, func(a, b *patientRecord) int { return strings.Compare(a.id, b.id) })
	var ready []*changedPatient
	for _, d := range changed {
		c, err := p.prepare(d)
		if errors.Is(err, errPatientRefused) {
			out.MergesUnresolved++
			// Not the error: FHIR validation may quote the value.
			p.log.WarnContext(ctx, "planner: the merge makes a Patient FHIR refuses; no Patient changed", "event", ev.ID, "patient", d.id)
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("merge: %w", err)
		}
		ready = append(ready, c)
	}
	for _, c := range ready {
		if err := c.put(ctx, tx); err != nil {
			return out, fmt.Errorf("merge: %w", err)
		}
	}
	if len(changed) > 0 {
		out.Merged++
	}
	return out, nil
}

// lockIdentifiers takes the locks the archive takes before it creates a
// Patient for an identifier (the conditional create's), in one order, so
// that no Patient appears between a search for ids and a write.
func lockIdentifiers(ctx context.Context, tx *postgres.Tx, ids []triggers.Identifier) error {
	var locks []string
	for _, x := range ids {
		locks = append(locks, "Patient?"+url.Values{"identifier": {x.System + "|" + x.Value}}.Encode())
	}
	slices.Sort(locks)
	for _, k := range slices.Compact(locks) {
		if err := tx.Lock(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func withSystem(ids []triggers.Identifier) []triggers.Identifier {
	var out []triggers.Identifier
	for _, x := range ids {
		if x.System != "" && x.Value != "" {
			out = append(out, x)
		}
	}
	return out
}

// patientRecord is a Patient resource being changed: its JSON as a map, so
// that whatever else it holds is written back as it was.
type patientRecord struct {
	id      string
	version int
	body    map[string]any
}

// patientsWith returns the Patients, as this transaction sees them, that
// carry any of ids.
func (p *Planner) patientsWith(ctx context.Context, tx *postgres.Tx, ids []triggers.Identifier) ([]*patientRecord, error) {
	reg := p.store.Registry()
	typ := reg.Type("Patient")
	var values []string
	for _, x := range ids {
		values = append(values, escape(x.System)+"|"+escape(x.Value))
	}
	var out []*patientRecord
	for _, chunk := range chunkValues(values, 1000) {
		q, err := search.Parse(reg, typ, url.Values{"identifier": {chunk}, "_count": {"3"}}, search.Options{})
		if err != nil {
			return nil, fmt.Errorf("merge: find patients: %w", err)
		}
		res, err := tx.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("merge: find patients: %w", err)
		}
		for _, m := range res.Matches {
			if slices.ContainsFunc(out, func(d *patientRecord) bool { return d.id == m.ID }) {
				continue
			}
			d := &patientRecord{id: m.ID, version: m.Version}
			if err := json.Unmarshal(m.Body, &d.body); err != nil {
				return nil, fmt.Errorf("merge: Patient/%s: %w", m.ID, err)
			}
			out = append(out, d)
		}
		// Beyond _count there are several already, which is all merge
		// needs to know.
	}
	return out, nil
}

// link adds a Patient.link of typ to Patient/other unless it is there.
func (d *patientRecord) link(typ, other string) bool {
	links, _ := d.body["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		o, _ := m["other"].(map[string]any)
		if m["type"] == typ && o["reference"] == "Patient/"+other {
			return false
		}
	}
	d.body["link"] = append(links, map[string]any{"other": map[string]any{"reference": "Patient/" + other}, "type": typ})
	return true
}

func (d *patientRecord) deactivate() bool {
	if d.body["active"] == false {
		return false
	}
	d.body["active"] = false
	return true
}

// addIdentifiers adds those of ids the Patient does not carry, with use
// (none when empty).
func (d *patientRecord) addIdentifiers(ids []triggers.Identifier, use string) bool {
	list, _ := d.body["identifier"].([]any)
	added := false
	for _, x := range ids {
		if d.carries(list, x) || strings.TrimSpace(x.Value) == "" {
			continue
		}
		id := map[string]any{"system": x.System, "value": x.Value}
		if use != "" {
			id["use"] = use
		}
		if fhirCode.MatchString(x.Type) { // a type FHIR cannot carry is left out, not the identifier
			id["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": x.Type}}}
		}
		list = append(list, id)
		added = true
	}
	d.body["identifier"] = list
	return added
}

// fhirCode is the R4 code datatype's pattern.
var fhirCode = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)

// markOld sets use "old" on the Patient's identifiers among ids.
func (d *patientRecord) markOld(ids []triggers.Identifier) bool {
	list, _ := d.body["identifier"].([]any)
	changed := false
	for _, e := range list {
		m, _ := e.(map[string]any)
		if m == nil || m["use"] == "old" {
			continue
		}
		for _, x := range ids {
			if m["system"] == x.System && m["value"] == x.Value {
				m["use"] = "old"
				changed = true
			}
		}
	}
	return changed
}

// conflicts reports whether the Patient carries, in x's system, a current
// identifier (not use old) other than x.
func (d *patientRecord) conflicts(x triggers.Identifier) bool {
	list, _ := d.body["identifier"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		if m != nil && m["system"] == x.System && m["value"] != x.Value && m["use"] != "old" {
			return true
		}
	}
	return false
}

func (d *patientRecord) carries(list []any, x triggers.Identifier) bool {
	for _, e := range list {
		m, _ := e.(map[string]any)
		if m != nil && m["system"] == x.System && m["value"] == x.Value {
			return true
		}
	}
	return false
}

// errPatientRefused marks a Patient change FHIR validation refuses (an
// identifier of the event that makes no valid FHIR Identifier). Delivering
// the event again cannot mend it, so the change is given up, not the
// event.
var errPatientRefused = errors.New("the changed Patient is not valid FHIR")

// changedPatient is a Patient change ready to be written.
type changedPatient struct {
	id      string
	version int
	res     proto.Message
}

// prepare validates the changed Patient; the error wraps errPatientRefused
// when FHIR refuses it.
func (p *Planner) prepare(d *patientRecord) (*changedPatient, error) {
	// The store sets versionId and lastUpdated; profiles, tags and
	// security labels stay.
	if meta, ok := d.body["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(d.body, "meta")
		}
	}
	b, err := json.Marshal(d.body)
	if err != nil {
		return nil, fmt.Errorf("Patient/%s: %w", d.id, err)
	}
	res, _, err := p.store.Codec().Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: Patient/%s: %w", errPatientRefused, d.id, err)
	}
	return &changedPatient{id: d.id, version: d.version, res: res}, nil
}

// put writes the changed Patient as a new version, if it is still the
// version read (the identifier locks keep the archive from creating a
// Patient, not from updating one: a conflict fails the event, which is
// retried).
func (c *changedPatient) put(ctx context.Context, tx *postgres.Tx) error {
	if _, _, err := tx.Put(ctx, c.res, c.version); err != nil {
		return fmt.Errorf("update Patient/%s: %w", c.id, err)
	}
	return nil
}
