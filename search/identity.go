package search

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/patientid"
)

// identity is the patient a job is about, as known locally.
type identity struct {
	// ids are the event's identifiers plus those of the local Patient
	// (its cross-references to other issuer domains).
	ids []ident
	// ref is the local Patient ("Patient/…"), "" when unknown or
	// ambiguous.
	ref  string
	demo *Demographics
	// birthDate and sex, when known, to re-check identifier matches.
	birthDate, sex string
}

type ident struct{ system, authority, value string }

// resolve reads the local Patient the job names (or the single one its
// identifiers find) and gathers its identifiers and demographics.
func (s *Searcher) resolve(ctx context.Context, job Job) (*identity, error) {
	id := &identity{}
	for _, x := range job.Patient {
		id.add(ident{system: x.System, authority: x.Authority, value: x.Value})
	}
	reg := s.cfg.Store.Registry()
	if reg.Type("Patient") == nil {
		return id, nil
	}
	ref := job.PatientRef
	if ref == "" {
		found := map[string]bool{}
		for _, x := range job.Patient {
			if x.System == "" {
				continue
			}
			rt := reg.Type("Patient")
			res, err := s.cfg.Store.Search(ctx, &search.Query{Type: rt, Count: 3, Clauses: []search.Clause{{
				Param: rt.Param("identifier"), Values: []search.Value{{Token: fhir.Token{System: x.System, Code: x.Value}, SystemSet: true}}}}})
			if err != nil {
				return nil, fmt.Errorf("patient by identifier: %w", err)
			}
			for _, m := range res.Matches {
				found["Patient/"+m.ID] = true
			}
		}
		if len(found) != 1 {
			// None, or several Patients: no cross-references are
			// trusted and nothing is indexed.
			return id, nil
		}
		for r := range found {
			ref = r
		}
	}
	typ, pid, ok := strings.Cut(ref, "/")
	if !ok || typ != "Patient" {
		return nil, fmt.Errorf("patient reference %q: want Patient/<id>", ref)
	}
	res, err := s.cfg.Store.Read(ctx, "Patient", pid)
	if err != nil {
		if fhir.IsKind(err, fhir.KindNotFound) || fhir.IsKind(err, fhir.KindGone) {
			return id, nil
		}
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	var p struct {
		Identifier []struct{ System, Value string }
		Name       []fhir.PatientName
		BirthDate  string
		Gender     string
	}
	if err := json.Unmarshal(res.Body, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	id.ref = ref
	for _, x := range p.Identifier {
		id.add(ident{system: x.System, value: x.Value})
	}
	id.birthDate, id.sex = p.BirthDate, p.Gender
	// A name in ideographs or kana is left out: the names of remote
	// studies are compared in their alphabetic group.
	if n, ok := fhir.ComparedName(p.Name); ok && len(p.BirthDate) == len("2006-01-02") {
		id.demo = &Demographics{Family: n.Family, Given: n.Given, BirthDate: p.BirthDate, Sex: p.Gender}
	}
	return id, nil
}

func (id *identity) add(x ident) {
	if x.value == "" {
		return
	}
	for i, y := range id.ids {
		if y.value == x.value && (y.system == x.system && x.system != "" || y.authority == x.authority && x.authority != "") {
			if id.ids[i].authority == "" {
				id.ids[i].authority = x.authority
			}
			if id.ids[i].system == "" {
				id.ids[i].system = x.system
			}
			return
		}
	}
	id.ids = append(id.ids, x)
}

// IssuerMatches reports whether an identifier with system and assigning
// authority belongs to issuer's domain: the authority (CX-4.1) or system
// equals it, or the system is the one patientid.System gives the issuer
// with the site's table systems (as the archive and HL7 v2 care events
// name it).
func IssuerMatches(issuer, system, authority string, systems map[string]string) bool {
	if issuer == "" {
		return false
	}
	return authority == issuer || system == issuer || system == patientid.System(issuer, systems)
}

// inDomain returns the distinct identifier values in issuer's domain.
func (id *identity) inDomain(issuer string, systems map[string]string) []string {
	var out []string
	for _, x := range id.ids {
		if IssuerMatches(issuer, x.system, x.authority, systems) && !slices.Contains(out, x.value) {
			out = append(out, x.value)
		}
	}
	return out
}

// checkIdentifier re-checks a study found by identifier: the source must
// report the ID asked for, in the source's issuer domain (or no issuer:
// the source's own), and no birth date or sex that contradicts the local
// patient's. It returns why the study is refused, or "".
func (id *identity) checkIdentifier(p PatientIdentity, patientID, issuer string, systems map[string]string) string {
	switch {
	case strings.TrimSpace(p.ID) != patientID:
		return fmt.Sprintf("the source reports another patient ID")
	case p.Issuer != "" && p.Issuer != issuer && !IssuerMatches(issuer, p.Issuer, "", systems):
		return fmt.Sprintf("the source reports the ID under another issuer (%s)", p.Issuer)
	case id.birthDate != "" && p.BirthDate != "" && !sameDate(id.birthDate, p.BirthDate):
		return "the birth date differs from the local patient's"
	case knownSex(id.sex) && knownSex(p.Sex) && id.sex != p.Sex:
		return "the sex differs from the local patient's"
	}
	return ""
}

func sameDate(a, b string) bool {
	n := min(len(a), len(b)) // a year-only date matches its days
	return a[:n] == b[:n]
}

func knownSex(s string) bool { return s == "male" || s == "female" || s == "other" }

// matches is the demographic match: normalized family name, first given
// name, exact birth date, and sex when both are known.
func (d *Demographics) matches(p PatientIdentity) bool {
	if NormalizeName(d.Family) != NormalizeName(p.Family) || p.BirthDate != d.BirthDate {
		return false
	}
	if len(d.Given) > 0 {
		if len(p.Given) == 0 || NormalizeName(d.Given[0]) != NormalizeName(p.Given[0]) {
			return false
		}
	}
	if knownSex(d.Sex) && knownSex(p.Sex) && d.Sex != p.Sex {
		return false
	}
	return true
}

// NormalizeName folds a name for comparison: case and accents removed,
// and everything but letters and digits dropped ("O'Brien-Smith" and
// "OBRIEN SMITH" compare equal).
func NormalizeName(s string) string {
	s = fhir.NormalizeString(s)
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, s)
}
