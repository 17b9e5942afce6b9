package rest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
)

func (h *Handler) read(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	n, err := h.authorize(r.Context(), typ, auth.PermRead)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !fhir.ValidID(id) {
		h.writeError(w, r, fhir.Errorf(fhir.KindNotFound, "%q is not a valid id", id))
		return
	}
	res, err := h.store.Read(r.Context(), typ, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if _, err := h.current(r.Context(), h.store.Search, typ, id, n); err != nil {
		h.writeError(w, r, err)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if v, err := parseETag(inm); err == nil && v == res.Version {
			setVersionHeaders(w, res)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	setVersionHeaders(w, res)
	writeJSON(w, http.StatusOK, h.elements(r, res.Body))
}

func (h *Handler) vread(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	n, err := h.authorize(r.Context(), typ, auth.PermRead)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	vid, err := strconv.Atoi(chi.URLParam(r, "vid"))
	if err != nil || vid < 1 || !fhir.ValidID(id) {
		h.writeError(w, r, fhir.Errorf(fhir.KindNotFound, "no such version"))
		return
	}
	res, err := h.store.VRead(r.Context(), typ, id, vid)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	cur, err := h.current(r.Context(), h.store.Search, typ, id, n)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if cur != nil && cur.Version != res.Version {
		inside, err := h.versionInside(h.reg.Type(typ), n, res)
		switch {
		case err != nil:
			h.writeError(w, r, err)
			return
		case !inside && len(n.Query) > 0:
			h.writeError(w, r, fhir.Errorf(fhir.KindForbidden, "earlier versions of %s/%s cannot be checked against the access token's search restriction; read the current version", typ, id))
			return
		case !inside:
			h.writeError(w, r, errOutside(typ, id+"/_history/"+strconv.Itoa(vid)))
			return
		}
	}
	setVersionHeaders(w, res)
	writeJSON(w, http.StatusOK, res.Body)
}

// parseResource reads and validates the body as a resource of type typ.
func (h *Handler) parseResource(w http.ResponseWriter, r *http.Request, typ string) (proto.Message, error) {
	body, err := h.readBody(w, r)
	if err != nil {
		return nil, err
	}
	res, got, err := h.codec.Parse(body)
	if err != nil {
		return nil, err
	}
	if got != typ {
		return nil, fhir.Errorf(fhir.KindInvalid, "the body is a %s, but the URL names %s", got, typ).At("resourceType")
	}
	return res, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	perms := []auth.Perm{auth.PermCreate}
	if r.Header.Get("If-None-Exist") != "" {
		perms = append(perms, auth.PermSearch)
	}
	if err := h.authorizeWrite(r.Context(), typ, perms...); err != nil {
		h.writeError(w, r, err)
		return
	}
	res, err := h.parseResource(w, r, typ)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var out *fhir.Resource
	created := true
	err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error {
		out, created, err = h.createIn(r.Context(), tx, res, r.Header.Get("If-None-Exist"))
		return err
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !created {
		h.writeResult(w, r, http.StatusOK, out, "a matching resource exists; nothing was created")
		return
	}
	h.writeResult(w, r, http.StatusCreated, out, fmt.Sprintf("created %s/%s", out.Type, out.ID))
}

// createIn creates res, or with a condition (If-None-Exist, FHIR R4 3.1.0.8.1)
// returns the single existing match instead.
func (h *Handler) createIn(ctx context.Context, tx *postgres.Tx, res proto.Message, cond string) (*fhir.Resource, bool, error) {
	typ := fhir.TypeOf(res)
	if cond == "" {
		out, err := tx.Create(ctx, res)
		return out, true, err
	}
	matches, err := h.conditional(ctx, tx, typ, cond)
	if err != nil {
		return nil, false, err
	}
	switch len(matches) {
	case 0:
		out, err := tx.Create(ctx, res)
		return out, true, err
	case 1:
		return matches[0], false, nil
	}
	return nil, false, fhir.Errorf(fhir.KindPrecondition, "the condition %q matches several %s resources", cond, typ)
}

// conditional locks a condition and returns up to two matches of it.
func (h *Handler) conditional(ctx context.Context, tx *postgres.Tx, typ, cond string) ([]*fhir.Resource, error) {
	params, err := url.ParseQuery(cond)
	if err != nil || len(params) == 0 {
		return nil, fhir.Errorf(fhir.KindInvalid, "the condition %q is not a search query", cond)
	}
	q, err := search.Parse(h.reg, h.reg.Type(typ), params, search.Options{BaseURL: h.cfg.BaseURL})
	if err != nil {
		return nil, err
	}
	q.Count, q.Sort, q.Include, q.RevInclude, q.Cursor = 2, nil, nil, nil, nil
	if err := tx.Lock(ctx, typ+"?"+params.Encode()); err != nil {
		return nil, err
	}
	res, err := tx.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	return res.Matches, nil
}

func (h *Handler) ifMatch(r *http.Request) (int, error) {
	v := r.Header.Get("If-Match")
	if v == "" {
		return 0, nil
	}
	return parseETag(v)
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if err := h.authorizeWrite(r.Context(), typ, auth.PermUpdate); err != nil {
		h.writeError(w, r, err)
		return
	}
	res, err := h.parseResource(w, r, typ)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if bid := fhir.ID(res); bid != id {
		h.writeError(w, r, fhir.Errorf(fhir.KindInvalid, "the body's id %q does not match the URL's id %q", bid, id).At(typ+".id"))
		return
	}
	ifMatch, err := h.ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var out *fhir.Resource
	var created bool
	err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error {
		out, created, err = tx.Put(r.Context(), res, ifMatch)
		return err
	})
	h.finishPut(w, r, out, created, err)
}

func (h *Handler) finishPut(w http.ResponseWriter, r *http.Request, out *fhir.Resource, created bool, err error) {
	switch {
	case err != nil:
		h.writeError(w, r, err)
	case created:
		h.writeResult(w, r, http.StatusCreated, out, fmt.Sprintf("created %s/%s", out.Type, out.ID))
	default:
		h.writeResult(w, r, http.StatusOK, out, fmt.Sprintf("updated %s/%s to version %d", out.Type, out.ID, out.Version))
	}
}

// conditionalUpdate is PUT [type]?[search] (FHIR R4 3.1.0.4.3).
func (h *Handler) conditionalUpdate(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	if r.URL.RawQuery == "" {
		h.writeError(w, r, fhir.Errorf(fhir.KindNotAllowed, "PUT needs an id (%s/[id]) or a search condition", typ))
		return
	}
	if err := h.authorizeWrite(r.Context(), typ, auth.PermUpdate, auth.PermSearch); err != nil {
		h.writeError(w, r, err)
		return
	}
	res, err := h.parseResource(w, r, typ)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	cond := withoutFormat(r.URL.Query())
	var out *fhir.Resource
	var created bool
	err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error {
		out, created, err = h.conditionalPut(r.Context(), tx, res, cond.Encode())
		return err
	})
	h.finishPut(w, r, out, created, err)
}

func (h *Handler) conditionalPut(ctx context.Context, tx *postgres.Tx, res proto.Message, cond string) (*fhir.Resource, bool, error) {
	typ := fhir.TypeOf(res)
	matches, err := h.conditional(ctx, tx, typ, cond)
	if err != nil {
		return nil, false, err
	}
	bid := fhir.ID(res)
	switch len(matches) {
	case 0:
		if bid == "" {
			out, err := tx.Create(ctx, res)
			return out, true, err
		}
		return tx.Put(ctx, res, 0)
	case 1:
		if bid != "" && bid != matches[0].ID {
			return nil, false, fhir.Errorf(fhir.KindInvalid, "the body's id %q differs from the match %s/%s", bid, typ, matches[0].ID).At(typ + ".id")
		}
		res = proto.Clone(res)
		fhir.SetID(res, matches[0].ID)
		return tx.Put(ctx, res, 0)
	}
	return nil, false, fhir.Errorf(fhir.KindPrecondition, "the condition %q matches several %s resources", cond, typ)
}

func withoutFormat(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		if k != "_format" && k != "_pretty" {
			out[k] = vs
		}
	}
	return out
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if err := h.authorizeWrite(r.Context(), typ, auth.PermDelete); err != nil {
		h.writeError(w, r, err)
		return
	}
	ifMatch, err := h.ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var out *fhir.Resource
	err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error {
		out, err = tx.Delete(r.Context(), typ, id, ifMatch)
		return err
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(out.Version))
	if prefer(r, "return") == "OperationOutcome" {
		writeJSON(w, http.StatusOK, informationOutcome(fmt.Sprintf("deleted %s/%s", typ, id)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	// Instance history reads one resource; type history lists them all.
	perm := auth.PermRead
	if id == "" {
		perm = auth.PermSearch
	}
	n, err := h.authorize(r.Context(), typ, perm)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if id == "" {
		if err := h.typeHistoryAllowed(typ, n); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	opt := postgres.HistoryOptions{}
	qv := r.URL.Query()
	if c := qv.Get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			h.writeError(w, r, fhir.Errorf(fhir.KindInvalid, "_count must be a positive integer").At("_count"))
			return
		}
		opt.Count = n
	}
	if s := qv.Get("_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			h.writeError(w, r, fhir.Errorf(fhir.KindInvalid, "_since must be an instant such as 2024-01-02T03:04:05Z").At("_since"))
			return
		}
		opt.Since = t
	}
	versions, err := h.store.History(r.Context(), typ, id, opt)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if id != "" {
		if versions, err = h.visibleVersions(r.Context(), typ, id, n, versions); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	self := h.cfg.BaseURL + "/" + typ
	if id != "" {
		self += "/" + id
	}
	b := newBundle("history", self+"/_history"+queryString(r))
	b.Total = &[]int{len(versions)}[0]
	for _, v := range versions {
		e := bundleEntry{FullURL: h.cfg.BaseURL + "/" + v.Type + "/" + v.ID}
		if !v.Deleted {
			e.Resource = v.Body
		}
		method, url := v.Method, v.Type+"/"+v.ID
		if method == "POST" {
			url = v.Type
		}
		status := "200 OK"
		switch method {
		case "POST":
			status = "201 Created"
		case "DELETE":
			status = "204 No Content"
		}
		e.Request = &entryRequest{Method: method, URL: url}
		e.Response = &entryResponse{Status: status, Etag: etag(v.Version), LastModified: v.LastUpdated.UTC().Format(time.RFC3339Nano)}
		b.Entry = append(b.Entry, e)
	}
	writeJSON(w, http.StatusOK, b.encode())
}

func queryString(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}
