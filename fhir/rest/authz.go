package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

// SMART on FHIR scope enforcement (SMART App Launch 2.0.0, "Scopes and
// Launch Context"). Each interaction needs a permission on its type: read,
// vread and instance history r; search and type history s; create c;
// update u; delete d; conditional forms s besides. A grant narrowed to a
// patient or by a search query confines what reads reach; writes need an
// unnarrowed grant.

// realm names the protection space in WWW-Authenticate (RFC 6750 3).
const realm = "priorflow"

// searchFunc runs a search: the store's own, or one inside a transaction,
// so that narrowing checks see what the transaction sees.
type searchFunc func(context.Context, *search.Query) (*search.Result, error)

// authenticated refuses requests that carry no authenticated caller. The
// middleware that validates access tokens puts the Principal in the
// context; without one, nothing but the CapabilityStatement is served.
func (h *Handler) authenticated(next http.Handler) http.Handler {
	if !h.cfg.Auth {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.FromContext(r.Context()) == nil {
			h.writeError(w, r, fhir.Errorf(fhir.KindUnauthorized, "this request needs an access token (Authorization: Bearer)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorize decides whether the caller may exercise perm on typ, and how
// what it reaches is narrowed. With authorization off it allows everything.
func (h *Handler) authorize(ctx context.Context, typ string, perm auth.Perm) (auth.Narrowing, error) {
	if !h.cfg.Auth {
		return auth.Narrowing{}, nil
	}
	p := auth.FromContext(ctx)
	if p == nil {
		return auth.Narrowing{}, fhir.Errorf(fhir.KindUnauthorized, "this request needs an access token (Authorization: Bearer)")
	}
	n, err := p.Allow(typ, perm)
	var denied *auth.DeniedError
	if errors.As(err, &denied) {
		return auth.Narrowing{}, &fhir.Error{Kind: fhir.KindForbidden, Message: denied.Error(), Err: err}
	}
	if err != nil {
		return auth.Narrowing{}, fmt.Errorf("authorize %s on %s: %w", perm, typ, err)
	}
	return n, nil
}

// authorizeWrite checks a create, update or delete of typ that needs all of
// perms. Types the server alone writes (AuditEvent) refuse every write,
// whatever the scopes. A narrowed grant is refused: whether a written
// resource stays inside a patient compartment or a scope's query cannot be
// told before it is written without re-implementing the search index, so
// writes need a system/ or user/ scope without a query.
func (h *Handler) authorizeWrite(ctx context.Context, typ string, perms ...auth.Perm) error {
	if rt := h.reg.Type(typ); rt != nil && rt.ReadOnly {
		return fhir.Errorf(fhir.KindNotAllowed, "%s resources are written by the server itself and cannot be created, updated or deleted through the API", typ)
	}
	for _, perm := range perms {
		n, err := h.authorize(ctx, typ, perm)
		if err != nil {
			return err
		}
		if !n.None() {
			return fhir.Errorf(fhir.KindForbidden, "the access token grants %q on %s only within a patient compartment or a search restriction; writes need a system/ or user/ scope without a query", perm.String(), typ)
		}
	}
	return nil
}

// confine returns the search clauses that keep resources of rt inside n:
// the patient's compartment and the scope's own query. None means n does
// not narrow rt (it reaches all of it, or rt is not patient data).
func (h *Handler) confine(rt *fhir.ResourceType, n auth.Narrowing) ([]search.Clause, error) {
	if n.None() {
		return nil, nil
	}
	var out []search.Clause
	if n.Patient != "" {
		// The id goes into a search value: a comma would turn it into
		// an OR of several patients.
		if !fhir.ValidID(n.Patient) {
			return nil, fhir.Errorf(fhir.KindForbidden, "the access token's patient %q is not a valid FHIR id", n.Patient)
		}
		var v url.Values
		switch {
		case rt.Name == "Patient":
			v = url.Values{"_id": {n.Patient}}
		case rt.Param("patient") != nil:
			v = url.Values{"patient": {"Patient/" + n.Patient}}
		}
		if v != nil {
			q, err := search.Parse(h.reg, rt, v, search.Options{BaseURL: h.cfg.BaseURL})
			if err != nil {
				return nil, fmt.Errorf("patient compartment of %s: %w", rt.Name, err)
			}
			out = append(out, q.Clauses...)
		}
	}
	if len(n.Query) > 0 {
		q, err := search.Parse(h.reg, rt, n.Query, search.Options{BaseURL: h.cfg.BaseURL})
		if err != nil {
			return nil, &fhir.Error{Kind: fhir.KindForbidden, Err: err,
				Message: fmt.Sprintf("the access token's search restriction %q cannot be applied to %s", n.Query.Encode(), rt.Name)}
		}
		// Only search parameters restrict; anything else in a scope's
		// query (paging, includes) would change the response, not the data.
		if len(q.Include) > 0 || len(q.RevInclude) > 0 || len(q.Sort) > 0 || q.Summary != "" || q.Total != "" ||
			len(q.Elements) > 0 || q.Cursor != nil || q.Count != search.DefaultCount {
			return nil, fhir.Errorf(fhir.KindForbidden, "the access token's search restriction %q holds more than search parameters", n.Query.Encode())
		}
		out = append(out, q.Clauses...)
	}
	return out, nil
}

// narrow applies the caller's grant to a search it may run: the grant's
// clauses are ANDed with the request's. A chained parameter reads the
// resources it chains through, so it needs an unnarrowed search grant on
// their type: a chain is one inner clause, and a compartment cannot be
// ANDed into it.
func (h *Handler) narrow(ctx context.Context, q *search.Query, n auth.Narrowing) error {
	if !h.cfg.Auth {
		return nil
	}
	for i := range q.Clauses {
		for c := &q.Clauses[i]; c.Chain != nil; c = c.Chain {
			cn, err := h.authorize(ctx, c.TargetType, auth.PermSearch)
			if err == nil {
				var clauses []search.Clause
				if clauses, err = h.confine(h.reg.Type(c.TargetType), cn); err == nil && len(clauses) > 0 {
					err = fhir.Errorf(fhir.KindForbidden, "the grant is narrowed")
				}
			}
			if fhir.IsKind(err, fhir.KindForbidden) {
				return &fhir.Error{Kind: fhir.KindForbidden, Err: err, Message: fmt.Sprintf(
					"a chained search through %s needs a scope that grants \"s\" on %s without a patient or search restriction", c.TargetType, c.TargetType)}
			}
			if err != nil {
				return err
			}
		}
	}
	clauses, err := h.confine(q.Type, n)
	if err != nil {
		return err
	}
	q.Clauses = append(q.Clauses, clauses...)
	return nil
}

// errOutside is the answer for a resource the caller's grant does not reach.
func errOutside(typ, id string) error {
	return fhir.Errorf(fhir.KindForbidden, "%s/%s is outside the access token's patient compartment/scope", typ, id)
}

// current checks that the current version of typ/id lies inside n by
// running the narrowed search for its id, and returns that version; nil
// when n does not narrow typ.
func (h *Handler) current(ctx context.Context, run searchFunc, typ, id string, n auth.Narrowing) (*fhir.Resource, error) {
	rt := h.reg.Type(typ)
	clauses, err := h.confine(rt, n)
	if err != nil || len(clauses) == 0 {
		return nil, err
	}
	q := &search.Query{Type: rt, Count: 1, Total: "none",
		Clauses: append(clauses, search.Clause{Param: fhir.ParamID, Values: []search.Value{{Token: fhir.Token{Code: id}}}})}
	res, err := run(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(res.Matches) == 0 {
		return nil, errOutside(typ, id)
	}
	return res.Matches[0], nil
}

// versionInside reports whether an earlier version of a resource whose
// current version is inside n was inside too. The search index holds
// current versions only, so this evaluates the patient compartment on the
// version itself, the way the index would have; a scope's query cannot be
// evaluated that way, and earlier versions are then out of reach.
func (h *Handler) versionInside(rt *fhir.ResourceType, n auth.Narrowing, v *fhir.Resource) (bool, error) {
	if len(n.Query) > 0 {
		return false, nil
	}
	if v.Deleted || n.Patient == "" {
		return true, nil // a deletion carries no data
	}
	if rt.Name == "Patient" {
		return v.ID == n.Patient, nil
	}
	p := rt.Param("patient")
	if p == nil {
		return true, nil
	}
	msg, _, err := h.codec.Parse(v.Body)
	if err != nil {
		return false, fmt.Errorf("version %d of %s/%s: %w", v.Version, v.Type, v.ID, err)
	}
	for _, val := range p.Values(msg) {
		if r := val.Ref.Local(h.cfg.BaseURL); r.URL == "" && r.Type == "Patient" && r.ID == n.Patient {
			return true, nil
		}
	}
	return false, nil
}

// runSearch runs a parsed search for the caller: narrowed to its grant,
// and with the included resources it may not read left out. omitted
// counts those by type.
func (h *Handler) runSearch(ctx context.Context, run searchFunc, q *search.Query, n auth.Narrowing) (*search.Result, map[string]int, error) {
	if err := h.narrow(ctx, q, n); err != nil {
		return nil, nil, err
	}
	res, err := run(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	var omitted map[string]int
	if h.cfg.Auth && len(res.Included) > 0 {
		if res.Included, omitted, err = h.readable(ctx, run, res.Included); err != nil {
			return nil, nil, err
		}
	}
	return res, omitted, nil
}

// readable keeps the included resources the caller may read: those of a
// type it has an unnarrowed read grant on, and, under a narrowed grant,
// those the narrowed search finds.
func (h *Handler) readable(ctx context.Context, run searchFunc, included []*fhir.Resource) ([]*fhir.Resource, map[string]int, error) {
	byType := map[string][]string{}
	for _, r := range included {
		byType[r.Type] = append(byType[r.Type], r.ID)
	}
	keep := map[string]bool{} // Type/id
	for typ, ids := range byType {
		rt := h.reg.Type(typ)
		if rt == nil {
			continue
		}
		n, err := h.authorize(ctx, typ, auth.PermRead)
		if fhir.IsKind(err, fhir.KindForbidden) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		clauses, err := h.confine(rt, n)
		if fhir.IsKind(err, fhir.KindForbidden) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if len(clauses) == 0 {
			for _, id := range ids {
				keep[typ+"/"+id] = true
			}
			continue
		}
		idc := search.Clause{Param: fhir.ParamID}
		for _, id := range ids {
			idc.Values = append(idc.Values, search.Value{Token: fhir.Token{Code: id}})
		}
		res, err := run(ctx, &search.Query{Type: rt, Count: len(ids), Total: "none", Clauses: append(clauses, idc)})
		if err != nil {
			return nil, nil, err
		}
		for _, m := range res.Matches {
			keep[typ+"/"+m.ID] = true
		}
	}
	var out []*fhir.Resource
	var omitted map[string]int
	for _, r := range included {
		if keep[r.Type+"/"+r.ID] {
			out = append(out, r)
			continue
		}
		if omitted == nil {
			omitted = map[string]int{}
		}
		omitted[r.Type]++
	}
	return out, omitted, nil
}

// omittedEntry is the searchset entry that says which included resources
// were left out and why (FHIR R4 3.1.1.5.7: a search may carry an
// OperationOutcome entry, search.mode outcome).
func omittedEntry(omitted map[string]int) bundleEntry {
	total := 0
	var parts []string
	for typ, n := range omitted {
		total += n
		parts = append(parts, fmt.Sprintf("%d %s", n, typ))
	}
	sort.Strings(parts)
	what := "resources were"
	if total == 1 {
		what = "resource was"
	}
	msg := fmt.Sprintf("%d included %s left out (%s): the access token's scopes do not grant reading them", total, what, strings.Join(parts, ", "))
	return bundleEntry{
		Resource: mustJSON(operationOutcome{ResourceType: "OperationOutcome", Issue: []issue{{Severity: "warning", Code: "suppressed", Diagnostics: msg}}}),
		Search:   &entrySearch{Mode: "outcome"},
	}
}

// typeHistoryAllowed refuses the history of a whole type under a grant that
// narrows it: history is not a search, and a page of the newest versions of
// every resource cannot be confined without hiding what the grant reaches.
func (h *Handler) typeHistoryAllowed(typ string, n auth.Narrowing) error {
	clauses, err := h.confine(h.reg.Type(typ), n)
	if err != nil {
		return err
	}
	if len(clauses) > 0 {
		return fhir.Errorf(fhir.KindForbidden, "the history of all %s resources needs a scope without a patient or search restriction; read the history of one resource instead", typ)
	}
	return nil
}

// opPerms lists the permissions a Bundle entry needs (SMART v2): the
// conditional forms search besides.
func opPerms(o *op) []auth.Perm {
	switch o.method {
	case "GET":
		if o.id != "" {
			return []auth.Perm{auth.PermRead}
		}
		return []auth.Perm{auth.PermSearch}
	case "POST":
		if o.ifNone != "" {
			return []auth.Perm{auth.PermCreate, auth.PermSearch}
		}
		return []auth.Perm{auth.PermCreate}
	case "PUT":
		if o.id == "" {
			return []auth.Perm{auth.PermUpdate, auth.PermSearch}
		}
		return []auth.Perm{auth.PermUpdate}
	case "DELETE":
		return []auth.Perm{auth.PermDelete}
	}
	return nil
}

// authorizeOp checks a Bundle entry with the rules of the interaction it
// stands for, before anything runs; a GET keeps its narrowing for when it
// runs.
func (h *Handler) authorizeOp(ctx context.Context, o *op) error {
	perms := opPerms(o)
	switch {
	case len(perms) == 0:
		return fhir.Errorf(fhir.KindNotAllowed, "method %s is not supported in a Bundle", o.method)
	case o.method != "GET":
		return h.authorizeWrite(ctx, o.typ, perms...)
	}
	n, err := h.authorize(ctx, o.typ, perms[0])
	o.narrow = n
	return err
}

// visibleVersions confines an instance history to n: the current version
// must be inside, and earlier versions are kept as far as versionInside
// vouches for them. Under a scope's search restriction that leaves the
// current version alone.
func (h *Handler) visibleVersions(ctx context.Context, typ, id string, n auth.Narrowing, versions []*fhir.Resource) ([]*fhir.Resource, error) {
	cur, err := h.current(ctx, h.store.Search, typ, id, n)
	if err != nil || cur == nil {
		return versions, err
	}
	rt := h.reg.Type(typ)
	var out []*fhir.Resource
	for _, v := range versions {
		inside := v.Version == cur.Version
		if !inside {
			if inside, err = h.versionInside(rt, n, v); err != nil {
				return nil, err
			}
		}
		if inside {
			out = append(out, v)
		}
	}
	return out, nil
}
