package auth

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	Issuer   string
	Subject  string // the token's sub: a user, or a backend client
	ClientID string // client_id (azp), when the token names one
	Scopes   Scopes
	// Patient is the launch context's patient id (the "patient" claim):
	// patient/ scopes reach only this patient's data.
	Patient string
	// FHIRUser is the fhirUser claim (e.g. Practitioner/123), when present.
	FHIRUser string
	// PurposeOfUse is the purpose of use the token carries (codes of
	// http://terminology.hl7.org/CodeSystem/v3-ActReason, e.g. TREAT), for
	// the audit trail.
	PurposeOfUse []string
	TokenID      string // jti
	Expiry       time.Time
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the request's caller, or nil when authorization is
// off (PRIORFLOW_AUTH=off) or the request came from inside the process.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Narrowing is what a grant demands of the data it reaches.
type Narrowing struct {
	// Patient, when set, limits the grant to that patient's compartment
	// (a patient/ scope under a patient launch context).
	Patient string
	// Query holds search parameters a SMART v2 scope carries
	// (system/ImagingStudy.rs?modality=CT); they are ANDed with the
	// request's own. Nil when none.
	Query url.Values
}

// None reports whether the grant reaches the data unnarrowed.
func (n Narrowing) None() bool { return n.Patient == "" && len(n.Query) == 0 }

// DeniedError says a caller's scopes do not grant an interaction.
type DeniedError struct {
	Type string
	Perm Perm
	Why  string
}

func (e *DeniedError) Error() string {
	if e.Why != "" {
		return e.Why
	}
	return fmt.Sprintf("the access token's scopes do not grant %q on %s", e.Perm.String(), e.Type)
}

// Allow decides whether p may exercise perm on resources of typ, and how
// the data it reaches is narrowed. A nil Principal (authorization off)
// is allowed everything.
//
// When several scopes grant perm, the widest one wins: an unrestricted
// user or system scope over a patient scope, a patient scope over a scope
// with a query. Among scopes with queries the first one is applied, which
// may hide data another would reach but never shows more than one grants.
func (p *Principal) Allow(typ string, perm Perm) (Narrowing, error) {
	if p == nil {
		return Narrowing{}, nil
	}
	var patient, query *Scope
	for i := range p.Scopes {
		s := &p.Scopes[i]
		if !s.covers(typ, perm) {
			continue
		}
		switch {
		case s.Context != ContextPatient && s.Query == nil:
			return Narrowing{}, nil
		case s.Context == ContextPatient && s.Query == nil:
			if patient == nil {
				patient = s
			}
		default:
			if query == nil {
				query = s
			}
		}
	}
	switch {
	case patient != nil:
		if p.Patient == "" {
			return Narrowing{}, &DeniedError{Type: typ, Perm: perm, Why: fmt.Sprintf("scope %s needs a patient launch context, and the token has none", patient)}
		}
		return Narrowing{Patient: p.Patient}, nil
	case query != nil:
		n := Narrowing{Query: query.Query}
		if query.Context == ContextPatient {
			if p.Patient == "" {
				return Narrowing{}, &DeniedError{Type: typ, Perm: perm, Why: fmt.Sprintf("scope %s needs a patient launch context, and the token has none", query)}
			}
			n.Patient = p.Patient
		}
		return n, nil
	}
	return Narrowing{}, &DeniedError{Type: typ, Perm: perm}
}

// Who names the caller for audit records and logs: the client, else the
// subject. It carries no patient data.
func (p *Principal) Who() string {
	if p == nil {
		return ""
	}
	if p.ClientID != "" {
		return p.ClientID
	}
	return p.Subject
}
