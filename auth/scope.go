package auth

import (
	"fmt"
	"net/url"
	"strings"
)

// Perm is a set of SMART v2 permissions (SMART App Launch 2.0.0, "Scopes
// for requesting FHIR resources"): create, read, update, delete, search.
type Perm uint8

const (
	PermCreate Perm = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch
)

// PermAll is every permission (v2 "cruds", v1 "*").
const PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch

func (p Perm) String() string {
	var b strings.Builder
	for i, c := range "cruds" {
		if p&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Context is the first part of a SMART scope: whose data the grant reaches.
type Context string

const (
	// ContextPatient limits the grant to the patient of the token's
	// launch context (the "patient" claim).
	ContextPatient Context = "patient"
	// ContextUser grants what the signed-in user may see. Priorflow keeps
	// no per-user access lists, so it is not narrowed further here.
	ContextUser Context = "user"
	// ContextSystem is a backend service acting on its own behalf.
	ContextSystem Context = "system"
)

// Scope is one parsed SMART resource scope such as
// system/ImagingStudy.rs or patient/*.read, or a v2 scope with a search
// query, such as system/ImagingStudy.rs?modality=CT.
type Scope struct {
	Context Context
	Type    string // a resource type, or "*"
	Perm    Perm
	// Query restricts the grant to resources matching these search
	// parameters; nil when the scope has none.
	Query url.Values
	raw   string
}

func (s Scope) String() string { return s.raw }

// ParseScope parses one SMART v1 or v2 resource scope. Scopes that are not
// about resources (openid, fhirUser, launch, offline_access …) return ok
// false and no error: they grant no data access.
func ParseScope(raw string) (s Scope, ok bool, err error) {
	ctx, rest, found := strings.Cut(raw, "/")
	if !found {
		return Scope{}, false, nil
	}
	switch Context(ctx) {
	case ContextPatient, ContextUser, ContextSystem:
	default:
		if strings.HasPrefix(raw, "launch/") {
			return Scope{}, false, nil
		}
		return Scope{}, false, fmt.Errorf("scope %q: context must be patient, user or system", raw)
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perms, found := strings.Cut(rest, ".")
	if !found || typ == "" {
		return Scope{}, false, fmt.Errorf("scope %q: want context/Type.permissions", raw)
	}
	if typ != "*" && !validType(typ) {
		return Scope{}, false, fmt.Errorf("scope %q: %q is not a resource type", raw, typ)
	}
	s = Scope{Context: Context(ctx), Type: typ, raw: raw}
	switch perms {
	case "read": // v1
		s.Perm = PermRead | PermSearch
	case "write":
		s.Perm = PermCreate | PermUpdate | PermDelete
	case "*":
		s.Perm = PermAll
	default:
		// v2: a subset of "cruds", in that order.
		last := -1
		for _, c := range perms {
			i := strings.IndexRune("cruds", c)
			if i <= last {
				return Scope{}, false, fmt.Errorf("scope %q: permissions must be letters of cruds in that order", raw)
			}
			last = i
			s.Perm |= 1 << i
		}
		if s.Perm == 0 {
			return Scope{}, false, fmt.Errorf("scope %q: no permissions", raw)
		}
	}
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return Scope{}, false, fmt.Errorf("scope %q: the query is not a search query", raw)
		}
		s.Query = q
	}
	return s, true, nil
}

func validType(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Scopes is the resource scopes of a token.
type Scopes []Scope

// ParseScopes parses a space-separated scope string (the OAuth "scope"
// claim). Non-resource scopes are skipped; a malformed resource scope is
// an error.
func ParseScopes(s string) (Scopes, error) {
	var out Scopes
	for _, f := range strings.Fields(s) {
		sc, ok, err := ParseScope(f)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, sc)
		}
	}
	return out, nil
}

// String joins the scopes as an OAuth scope string.
func (ss Scopes) String() string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.raw
	}
	return strings.Join(parts, " ")
}

// Covers reports whether some scope grants perm on typ, however narrowed.
func (ss Scopes) Covers(typ string, perm Perm) bool {
	for _, s := range ss {
		if s.covers(typ, perm) {
			return true
		}
	}
	return false
}

func (s Scope) covers(typ string, perm Perm) bool {
	return (s.Type == "*" || s.Type == typ) && s.Perm&perm == perm
}

// Within reports whether every grant of s is also granted by limit: a
// token endpoint issues only scopes a client is registered for.
func (s Scope) Within(limit Scopes) bool {
	for _, l := range limit {
		if (l.Type == "*" || l.Type == s.Type) && l.Perm&s.Perm == s.Perm &&
			(l.Context == s.Context || l.Context == ContextSystem && s.Context != ContextSystem) &&
			(l.Query == nil || l.Query.Encode() == s.Query.Encode()) {
			return true
		}
	}
	return false
}
