package rest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
)

// maxEntries bounds one batch or transaction.
const maxEntries = 10000

// op is one Bundle entry to process.
type op struct {
	index   int
	method  string
	url     string // as sent, relative to the base
	fullURL string
	res     proto.Message
	typ, id string // target (id empty for type-level)
	query   string // condition for conditional PUT / search for GET
	ifMatch int
	ifNone  string // If-None-Exist
	// narrow is what the caller's grant demands of a GET's data.
	narrow auth.Narrowing
	// results
	out     *fhir.Resource
	status  int
	created bool
	body    []byte // for GET entries
	err     error
}

// bundle processes a batch or transaction Bundle (FHIR R4 3.1.0.11).
func (h *Handler) bundle(w http.ResponseWriter, r *http.Request) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, typ, err := h.codec.Parse(body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	b, ok := res.(*bpb.Bundle)
	if !ok {
		h.writeError(w, r, fhir.Errorf(fhir.KindInvalid, "POST to the base takes a Bundle, not a %s", typ).At("resourceType"))
		return
	}
	kind := strings.ToLower(b.GetType().GetValue().String())
	if kind != "transaction" && kind != "batch" {
		h.writeError(w, r, fhir.Errorf(fhir.KindInvalid, "Bundle.type must be transaction or batch, not %s", kind).At("Bundle.type"))
		return
	}
	if len(b.GetEntry()) > maxEntries {
		h.writeError(w, r, fhir.Errorf(fhir.KindTooLarge, "a Bundle may hold at most %d entries", maxEntries))
		return
	}
	ops := make([]*op, len(b.GetEntry()))
	for i, e := range b.GetEntry() {
		o, err := h.entryOp(i, e)
		if err == nil {
			// Every entry is authorized before any runs: a transaction
			// with one denied entry writes nothing.
			if err = h.authorizeOp(r.Context(), o); err != nil {
				err = entryErr(i, err)
			}
		}
		if err != nil && kind == "transaction" {
			h.writeError(w, r, err)
			return
		}
		if o == nil {
			o = &op{index: i}
		}
		o.err = err
		ops[i] = o
	}
	minimal := prefer(r, "return") == "minimal"
	if kind == "transaction" {
		err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error { return h.transaction(r.Context(), tx, ops) })
		if err != nil {
			h.writeError(w, r, err)
			return
		}
	} else {
		for _, o := range ops {
			if o.err == nil {
				o.err = h.store.InTx(r.Context(), func(tx *postgres.Tx) error { return h.execute(r.Context(), tx, o) })
			}
		}
	}
	out := newBundle(kind+"-response", "")
	for _, o := range ops {
		out.Entry = append(out.Entry, h.entryResponse(r, o, minimal))
	}
	writeJSON(w, http.StatusOK, out.encode())
}

func entryErr(i int, err error) error {
	if fe, ok := err.(*fhir.Error); ok {
		c := *fe
		c.Message = fmt.Sprintf("Bundle.entry[%d]: %s", i, fe.Message)
		return &c
	}
	return fmt.Errorf("entry %d: %w", i, err)
}

func (h *Handler) entryOp(i int, e *bpb.Bundle_Entry) (*op, error) {
	req := e.GetRequest()
	if req == nil {
		return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "entry has no request").At(fmt.Sprintf("Bundle.entry[%d].request", i)))
	}
	o := &op{index: i, method: req.GetMethod().GetValue().String(), url: req.GetUrl().GetValue(), fullURL: e.GetFullUrl().GetValue(), ifNone: req.GetIfNoneExist().GetValue()}
	if e.GetResource() != nil {
		o.res, _ = fhir.Unwrap(e.GetResource())
	}
	if m := req.GetIfMatch().GetValue(); m != "" {
		v, err := parseETag(m)
		if err != nil {
			return nil, entryErr(i, err)
		}
		o.ifMatch = v
	}
	u := strings.TrimPrefix(o.url, h.cfg.BaseURL+"/")
	path, query, _ := strings.Cut(u, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	o.typ, o.query = parts[0], query
	if h.reg.Type(o.typ) == nil {
		return nil, entryErr(i, fhir.Errorf(fhir.KindNotFound, "resource type %q is not supported", o.typ))
	}
	if len(parts) > 1 {
		o.id = parts[1]
	}
	if len(parts) > 2 || (o.id != "" && !fhir.ValidID(o.id)) {
		return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "request url %q is not [type] or [type]/[id]", o.url))
	}
	switch o.method {
	case "POST":
		if o.res == nil || o.id != "" {
			return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "POST needs a resource and a url of [type]"))
		}
	case "PUT":
		if o.res == nil || (o.id == "" && o.query == "") {
			return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "PUT needs a resource and a url of [type]/[id] or [type]?[condition]"))
		}
	case "DELETE":
		if o.id == "" {
			return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "DELETE needs a url of [type]/[id]"))
		}
	case "GET":
	default:
		return nil, entryErr(i, fhir.Errorf(fhir.KindNotAllowed, "method %s is not supported in a Bundle", o.method))
	}
	if o.res != nil && fhir.TypeOf(o.res) != o.typ {
		return nil, entryErr(i, fhir.Errorf(fhir.KindInvalid, "the resource is a %s but the url names %s", fhir.TypeOf(o.res), o.typ))
	}
	return o, nil
}

// transaction runs all ops atomically in the order FHIR R4 3.1.0.11.2
// prescribes (DELETE, POST, PUT, GET), after resolving every urn:uuid fullUrl
// to the id it will get, so entries may reference each other in any order.
func (h *Handler) transaction(ctx context.Context, tx *postgres.Tx, ops []*op) error {
	ids := map[string]string{} // fullUrl -> Type/id
	for _, o := range ops {
		switch {
		case o.method == "POST" && o.ifNone != "":
			matches, err := h.conditional(ctx, tx, o.typ, o.ifNone)
			if err != nil {
				return entryErr(o.index, err)
			}
			switch len(matches) {
			case 0:
				o.id = uuid.NewString()
			case 1:
				o.id, o.out, o.status = matches[0].ID, matches[0], http.StatusOK
			default:
				return entryErr(o.index, fhir.Errorf(fhir.KindPrecondition, "If-None-Exist %q matches several resources", o.ifNone))
			}
		case o.method == "POST":
			o.id = uuid.NewString()
		case o.method == "PUT" && o.id == "":
			matches, err := h.conditional(ctx, tx, o.typ, o.query)
			if err != nil {
				return entryErr(o.index, err)
			}
			switch len(matches) {
			case 0:
				if o.id = fhir.ID(o.res); o.id == "" {
					o.id = uuid.NewString()
				}
			case 1:
				o.id = matches[0].ID
			default:
				return entryErr(o.index, fhir.Errorf(fhir.KindPrecondition, "the condition %q matches several resources", o.query))
			}
		}
		if o.fullURL != "" && o.id != "" {
			ids[o.fullURL] = o.typ + "/" + o.id
		}
	}
	for _, o := range ops {
		if o.res != nil {
			o.res = proto.Clone(o.res)
			if err := rewriteRefs(o.res, ids); err != nil {
				return entryErr(o.index, err)
			}
		}
	}
	for _, method := range []string{"DELETE", "POST", "PUT", "GET"} {
		for _, o := range ops {
			if o.method != method || o.out != nil {
				continue
			}
			if err := h.execute(ctx, tx, o); err != nil {
				return entryErr(o.index, err)
			}
		}
	}
	return nil
}

// rewriteRefs replaces references to urn:uuid/urn:oid fullUrls of the Bundle
// with the ids their entries were given. A urn reference that names no entry
// is an error: it could never resolve.
func rewriteRefs(res proto.Message, ids map[string]string) error {
	var bad string
	walkRefs(res.ProtoReflect(), func(ref *dpb.Reference) {
		u := ref.GetUri().GetValue()
		if u == "" {
			return
		}
		if to, ok := ids[u]; ok {
			ref.Reference = &dpb.Reference_Uri{Uri: &dpb.String{Value: to}}
		} else if strings.HasPrefix(u, "urn:uuid:") || strings.HasPrefix(u, "urn:oid:") {
			bad = u
		}
	})
	if bad != "" {
		return fhir.Errorf(fhir.KindInvalid, "reference %q names no entry of the Bundle", bad)
	}
	return nil
}

func walkRefs(m protoreflect.Message, fn func(*dpb.Reference)) {
	if ref, ok := m.Interface().(*dpb.Reference); ok {
		fn(ref)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkRefs(l.Get(i).Message(), fn)
			}
		case fd.IsMap():
		default:
			walkRefs(v.Message(), fn)
		}
		return true
	})
}

// execute performs one entry inside tx.
func (h *Handler) execute(ctx context.Context, tx *postgres.Tx, o *op) error {
	var err error
	switch o.method {
	case "POST":
		if o.id == "" { // batch: resolve the condition now
			var created bool
			o.out, created, err = h.createIn(ctx, tx, o.res, o.ifNone)
			o.status = map[bool]int{true: http.StatusCreated, false: http.StatusOK}[created]
			return err
		}
		o.out, err = tx.CreateAs(ctx, o.res, o.id)
		o.status = http.StatusCreated
	case "PUT":
		if o.id == "" {
			o.out, o.created, err = h.conditionalPut(ctx, tx, o.res, o.query)
		} else {
			if bid := fhir.ID(o.res); bid != "" && bid != o.id && o.query == "" {
				return fhir.Errorf(fhir.KindInvalid, "the resource id %q does not match the url %s", bid, o.url)
			}
			fhir.SetID(o.res, o.id)
			o.out, o.created, err = tx.Put(ctx, o.res, o.ifMatch)
		}
		o.status = map[bool]int{true: http.StatusCreated, false: http.StatusOK}[o.created]
	case "DELETE":
		o.out, err = tx.Delete(ctx, o.typ, o.id, o.ifMatch)
		o.status = http.StatusNoContent
	case "GET":
		err = h.get(ctx, tx, o)
	}
	return err
}

func (h *Handler) get(ctx context.Context, tx *postgres.Tx, o *op) error {
	if o.id != "" {
		res, err := tx.Read(ctx, o.typ, o.id)
		if err != nil {
			return err
		}
		if _, err := h.current(ctx, tx.Search, o.typ, o.id, o.narrow); err != nil {
			return err
		}
		o.out, o.status, o.body = res, http.StatusOK, res.Body
		return nil
	}
	params, err := url.ParseQuery(o.query)
	if err != nil {
		return fhir.Errorf(fhir.KindInvalid, "the query of %q cannot be read", o.url)
	}
	q, err := search.Parse(h.reg, h.reg.Type(o.typ), params, search.Options{BaseURL: h.cfg.BaseURL})
	if err != nil {
		return err
	}
	res, omitted, err := h.runSearch(ctx, tx.Search, q, o.narrow)
	if err != nil {
		return err
	}
	b := newBundle("searchset", h.cfg.BaseURL+"/"+o.url)
	if res.Total >= 0 {
		b.Total = &res.Total
	}
	for _, m := range append(res.Matches, res.Included...) {
		b.Entry = append(b.Entry, bundleEntry{FullURL: h.cfg.BaseURL + "/" + m.Type + "/" + m.ID, Resource: m.Body})
	}
	if len(omitted) > 0 {
		b.Entry = append(b.Entry, omittedEntry(omitted))
	}
	o.status, o.body = http.StatusOK, b.encode()
	return nil
}

func (h *Handler) entryResponse(r *http.Request, o *op, minimal bool) bundleEntry {
	if o.err != nil {
		return bundleEntry{Response: &entryResponse{
			Status:  fmt.Sprintf("%d %s", StatusOf(o.err), http.StatusText(StatusOf(o.err))),
			Outcome: outcomeFor(o.err),
		}}
	}
	e := bundleEntry{Response: &entryResponse{Status: fmt.Sprintf("%d %s", o.status, http.StatusText(o.status))}}
	if o.out != nil {
		e.FullURL = h.cfg.BaseURL + "/" + o.out.Type + "/" + o.out.ID
		e.Response.Etag = etag(o.out.Version)
		e.Response.LastModified = o.out.LastUpdated.UTC().Format(time.RFC3339Nano)
		if o.method != "GET" && o.method != "DELETE" {
			e.Response.Location = fmt.Sprintf("%s/%s/_history/%d", o.out.Type, o.out.ID, o.out.Version)
		}
		if !minimal && !o.out.Deleted && o.method != "GET" {
			e.Resource = o.out.Body
		}
	}
	if o.body != nil {
		e.Resource = o.body
	}
	if o.method == "DELETE" {
		e.FullURL = ""
	}
	return e
}
