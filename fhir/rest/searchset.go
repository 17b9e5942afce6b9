package rest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

// Bundle JSON is assembled here rather than through the protos: entries are
// the stored JSON, copied through untouched, which keeps a search page to a
// few microseconds of encoding.
type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         bundleMeta    `json:"meta"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []bundleLink  `json:"link,omitempty"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

type bundleMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *entrySearch    `json:"search,omitempty"`
	Request  *entryRequest   `json:"request,omitempty"`
	Response *entryResponse  `json:"response,omitempty"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// encode prints the Bundle. Entry resources are stored JSON that this
// server printed itself, so they are copied in as they are: encoding/json
// would re-validate every byte of every resource (a third of a search's CPU
// at 100 entries a page).
func (b *bundle) encode() []byte {
	entries := b.Entry
	b.Entry = nil
	head := mustJSON(b)
	b.Entry = entries
	size := len(head) + 16
	for _, e := range entries {
		size += len(e.Resource) + 256
	}
	out := make([]byte, 0, size)
	out = append(out, head[:len(head)-1]...)
	if len(entries) > 0 {
		out = append(out, `,"entry":[`...)
		for i, e := range entries {
			if i > 0 {
				out = append(out, ',')
			}
			res := e.Resource
			e.Resource = nil
			eb := mustJSON(e)
			if len(res) == 0 {
				out = append(out, eb...)
				continue
			}
			out = append(out, `{"resource":`...)
			out = append(out, res...)
			if len(eb) > 2 { // more than "{}"
				out = append(out, ',')
				out = append(out, eb[1:]...)
			} else {
				out = append(out, '}')
			}
		}
		out = append(out, ']')
	}
	return append(out, '}')
}

func newBundle(typ, self string) *bundle {
	b := &bundle{ResourceType: "Bundle", ID: uuid.NewString(), Type: typ,
		Meta: bundleMeta{LastUpdated: time.Now().UTC().Format(time.RFC3339Nano)}}
	if self != "" {
		b.Link = []bundleLink{{Relation: "self", URL: self}}
	}
	return b
}

// searchParams returns the search parameters of a GET query or a POST
// _search form (FHIR R4 3.1.1.1: both carry the same parameters).
func searchParams(r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		return r.URL.Query(), nil
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, fhir.Errorf(fhir.KindUnsupportedMedia, "POST _search takes application/x-www-form-urlencoded, not %q", ct)
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "the search form cannot be read: %v", err)
	}
	return r.Form, nil
}

func (h *Handler) searchType(w http.ResponseWriter, r *http.Request) {
	typ := h.reg.Type(chi.URLParam(r, "type"))
	n, err := h.authorize(r.Context(), typ.Name, auth.PermSearch)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	params, err := searchParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	lenient := prefer(r, "handling") == "lenient"
	q, err := search.Parse(h.reg, typ, params, search.Options{Lenient: lenient, BaseURL: h.cfg.BaseURL})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, omitted, err := h.runSearch(r.Context(), h.store.Search, q, n)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	used := url.Values{}
	for k, v := range params {
		if k != "_cursor" && k != "_format" && !contains(q.Ignored, k) {
			used[k] = v
		}
	}
	link := func(c *search.Cursor) string {
		v := url.Values{}
		for k, vs := range used {
			v[k] = vs
		}
		if c != nil {
			v.Set("_cursor", search.EncodeCursor(c))
		}
		return h.cfg.BaseURL + "/" + typ.Name + "?" + encodeSorted(v)
	}
	b := newBundle("searchset", link(q.Cursor))
	if res.Total >= 0 {
		b.Total = &res.Total
	}
	if res.Next != nil {
		b.Link = append(b.Link, bundleLink{Relation: "next", URL: link(res.Next)})
	}
	if res.Prev != nil {
		b.Link = append(b.Link, bundleLink{Relation: "previous", URL: link(res.Prev)})
	}
	for _, m := range res.Matches {
		b.Entry = append(b.Entry, bundleEntry{FullURL: h.cfg.BaseURL + "/" + m.Type + "/" + m.ID,
			Resource: summaryOf(q.Summary, h.elementsOf(q.Elements, m.Body)), Search: &entrySearch{Mode: "match"}})
	}
	for _, m := range res.Included {
		b.Entry = append(b.Entry, bundleEntry{FullURL: h.cfg.BaseURL + "/" + m.Type + "/" + m.ID,
			Resource: m.Body, Search: &entrySearch{Mode: "include"}})
	}
	if len(q.Ignored) > 0 {
		sort.Strings(q.Ignored)
		b.Entry = append(b.Entry, bundleEntry{
			Resource: warningOutcome("parameters not supported and ignored: "+strings.Join(q.Ignored, ", "), q.Ignored),
			Search:   &entrySearch{Mode: "outcome"}})
	}
	if len(omitted) > 0 {
		b.Entry = append(b.Entry, omittedEntry(omitted))
	}
	writeJSON(w, http.StatusOK, b.encode())
}

// encodeSorted is url.Values.Encode, which already sorts by key.
func encodeSorted(v url.Values) string { return v.Encode() }

// elements applies _elements to a read.
func (h *Handler) elements(r *http.Request, body []byte) []byte {
	els := r.URL.Query().Get("_elements")
	if els == "" {
		return body
	}
	return h.elementsOf(strings.Split(els, ","), body)
}

// elementsOf keeps only the named top-level elements, plus the mandatory
// ones, and marks the result SUBSETTED (FHIR R4 3.1.1.5.9).
func (h *Handler) elementsOf(els []string, body []byte) []byte {
	if len(els) == 0 {
		return body
	}
	keep := map[string]bool{"resourceType": true, "id": true, "meta": true}
	for _, e := range els {
		keep[strings.TrimSpace(e)] = true
	}
	return subset(body, func(k string) bool { return keep[k] })
}

// summaryOf applies _summary=data: everything but the narrative
// (FHIR R4 3.1.1.5.8).
func summaryOf(summary string, body []byte) []byte {
	if summary != "data" {
		return body
	}
	return subset(body, func(k string) bool { return k != "text" })
}

// subset keeps the top-level elements keep accepts and tags the resource
// SUBSETTED.
func subset(body []byte, keep func(string) bool) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return body
	}
	for k := range obj {
		if k != "resourceType" && k != "id" && k != "meta" && !keep(k) {
			delete(obj, k)
		}
	}
	var meta map[string]json.RawMessage
	_ = json.Unmarshal(obj["meta"], &meta)
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	var tags []json.RawMessage
	_ = json.Unmarshal(meta["tag"], &tags)
	tags = append(tags, json.RawMessage(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}`))
	meta["tag"] = mustJSON(tags)
	obj["meta"] = mustJSON(meta)
	return mustJSON(obj)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
