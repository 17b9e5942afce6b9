package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
)

// credentialParams are query parameters that carry secrets (RFC 6750 §2.3
// access_token, OAuth client credentials): a recorded query never holds
// them.
var credentialParams = map[string]bool{
	"access_token": true, "id_token": true, "refresh_token": true,
	"client_secret": true, "client_assertion": true,
}

// FHIR returns the middleware that records every interaction of the FHIR
// API: wrap the handler mounted at Config.FHIRPath with it, inside the
// authentication middleware (the caller is read from the request context).
//
// The interaction comes from method and path; the patients from the data
// the interaction reached — the response resource or Bundle (JSON up to
// Config.MaxCapture), the request resource of a create, update or
// transaction, the patient parameters of a search, and for a delete the
// resource as stored before. Every request is recorded, refused and failed
// ones included (403, 404 with outcome 4), except the CapabilityStatement
// (/metadata) and paths that are not FHIR interactions (/.well-known, the
// subscription websocket), which reach no resource. Requests about types
// that hold no patient data (Endpoint, Subscription) are recorded without
// a patient entity: BALP records every RESTful access, Read and Query alike,
// with the patient only when there is one.
//
// The response is passed through unchanged: status, headers and body, with
// flushing and hijacking available as before; JSON bodies are copied on the
// side as they are written.
func (rec *Recorder) FHIR() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, ok := classifyFHIR(r.Method, relPath(r, rec.cfg.FHIRPath))
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			start := rec.now()
			ev := rec.baseEvent(r, start)
			ev.Interaction, ev.ResourceType, ev.ResourceID, ev.VersionID = req.interaction, req.typ, req.id, req.vid
			var patients patientSet
			if req.typ == "Patient" && req.id != "" {
				patients.add("Patient/" + req.id)
			}
			if req.interaction == Delete && req.id != "" && req.typ != "Patient" {
				// Afterwards the resource is gone: read who it was about now.
				rec.storedPatients(r.Context(), req.typ, req.id, patients.add)
			}
			var reqBody *capture
			if r.Body != nil && r.Body != http.NoBody && capturable(r.Header.Get("Content-Type"), true) {
				reqBody = &capture{ReadCloser: r.Body, limit: rec.cfg.MaxCapture}
				r.Body = reqBody
			}
			t := &tee{ResponseWriter: w, limit: rec.cfg.MaxCapture, want: true}
			defer func() {
				if p := recover(); p != nil {
					// The handler failed: the access is recorded all the same.
					t.status = http.StatusInternalServerError
					rec.finishFHIR(r, &ev, req, t, reqBody, &patients)
					panic(p)
				}
			}()
			next.ServeHTTP(t, r)
			rec.finishFHIR(r, &ev, req, t, reqBody, &patients)
		})
	}
}

// finishFHIR completes and records the event of a FHIR request.
func (rec *Recorder) finishFHIR(r *http.Request, ev *Event, req fhirRequest, t *tee, reqBody *capture, patients *patientSet) {
	ev.Status = t.statusOr200()
	var reqRes, respRes *resourceFields
	form := ""
	if reqBody != nil && !reqBody.over {
		if isForm(r.Header.Get("Content-Type")) {
			form = reqBody.buf.String()
		} else {
			reqRes, _ = decodeResource(reqBody.buf.Bytes())
		}
	}
	ev.Query = ""
	if req.interaction == SearchType || req.interaction == SearchSystem {
		ev.Query = searchTarget(r, form)
	}
	// A response is read here only when more than its patients is needed
	// from it; otherwise the writer reads it, off the request path.
	deferred, scope := false, scopePatient(ev)
	if t.capturing && !t.over && t.buf.Len() > 0 {
		if ev.Status < 400 && !needsResponse(req.interaction) {
			deferred = rec.deferResponse(ev, t.buf.Bytes(), scope)
		}
		if !deferred {
			respRes, _ = decodeResource(t.buf.Bytes())
		}
	}
	if t.over || (reqBody != nil && reqBody.over) {
		rec.log.WarnContext(r.Context(), "a body was too large to read its patients; recording the access without them",
			"interaction", req.interaction, "type", req.typ, "limit", rec.cfg.MaxCapture)
	}

	switch req.interaction {
	case Transaction, Batch:
		// The request's Bundle.type tells the two apart; the path does not.
		switch bundleType(reqRes) {
		case "transaction":
			ev.Interaction = Transaction
		case "batch":
			ev.Interaction = Batch
		default:
			if bundleType(respRes) == "transaction-response" {
				ev.Interaction = Transaction
			}
		}
	case Create:
		if ev.Status < 300 {
			ev.ResourceType, ev.ResourceID, ev.VersionID = locationRef(t.Header().Get("Location"))
			if ev.ResourceID == "" && respRes != nil && respRes.ResourceType == req.typ {
				ev.ResourceType, ev.ResourceID = respRes.ResourceType, respRes.ID
			}
		}
	case Update:
		if ev.ResourceID == "" && ev.Status < 300 {
			// A conditional update names its resource in the reply only.
			ev.ResourceType, ev.ResourceID, ev.VersionID = locationRef(t.Header().Get("Location"))
			if ev.ResourceID == "" && respRes != nil && respRes.ResourceType == req.typ {
				ev.ResourceType, ev.ResourceID = respRes.ResourceType, respRes.ID
			}
		}
	}
	if ev.VersionID == "" && ev.ResourceID != "" && ev.Status < 300 {
		switch req.interaction {
		case Read, Create, Update:
			ev.VersionID = etagVersion(t.Header().Get("ETag"))
		}
	}
	if ev.Status >= 400 {
		ev.OutcomeDesc = diagnostics(respRes)
		if (ev.Status == http.StatusForbidden || ev.Status == http.StatusUnauthorized) && req.id != "" && len(*patients) == 0 {
			// A refused access to a resource is recorded against the
			// patient it would have reached.
			rec.storedPatients(context.WithoutCancel(r.Context()), req.typ, req.id, patients.add)
		}
	} else {
		patientsIn(respRes, patients.add, 0)
	}
	// A refused write names the patient it was meant for, too.
	patientsIn(reqRes, patients.add, 0)
	if _, raw, ok := strings.Cut(ev.Query, "?"); ok {
		if q, err := url.ParseQuery(raw); err == nil {
			queryPatients(req.typ, q, patients.add)
		}
	}
	if !deferred && len(*patients) == 0 && scope != "" {
		patients.add("Patient/" + scope)
	}
	ev.Patients = *patients
	ev.OutcomeDesc = redact(ev.OutcomeDesc, r.URL.RawQuery, form)
	rec.record(r, *ev)
}

// scopePatient is the patient of a patient-scoped grant, recorded when
// nothing else names one: such a grant reaches only its patient's data.
func scopePatient(ev *Event) string {
	if ev.Principal == nil || !holdsPatientData(ev.ResourceType) {
		return ""
	}
	return ev.Principal.Patient
}

// needsResponse reports whether recording interaction reads more than
// patients from the response (the Bundle type, a created resource's id).
func needsResponse(interaction Interaction) bool {
	switch interaction {
	case Transaction, Batch, Create, Update:
		return true
	}
	return false
}

// holdsPatientData reports whether resources of typ can be about a patient;
// "" (a system-level interaction) might.
func holdsPatientData(typ string) bool {
	switch typ {
	case "Endpoint", "Subscription", "CapabilityStatement", "OperationOutcome":
		return false
	}
	return true
}

// storedPatients adds the patients of a stored resource.
func (rec *Recorder) storedPatients(ctx context.Context, typ, id string, add func(string)) {
	if !fhir.IsResourceType(typ) || !fhir.ValidID(id) || rec.store.Registry().Type(typ) == nil {
		return
	}
	res, err := rec.store.Read(ctx, typ, id)
	if err != nil {
		return // not there (or gone): the delete will fail, and say so
	}
	if rf, ok := decodeResource(res.Body); ok {
		patientsIn(rf, add, 0)
	}
}

// DICOMweb returns the middleware that records every request to the
// DICOMweb API: wrap the handler mounted at Config.DICOMwebPath with it,
// inside the authentication middleware. lookup finds the patients of
// studies (StudyPatientLookup); it may be nil, and then records name no
// patient.
//
// The study comes from the path (/studies/{uid}…); for QIDO-RS without one
// and for STOW-RS the studies are read from the JSON response (every QIDO
// result carries its StudyInstanceUID, every stored instance its
// RetrieveURL). Patients are looked up off the request path, by the writer
// — except for a DELETE, whose study is looked up before it is gone.
// Retrieved DICOM, multipart and rendered bodies are passed through, never
// read.
func (rec *Recorder) DICOMweb(lookup StudyPatients) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			interaction, study, ok := classifyDICOMweb(r.Method, relPath(r, rec.cfg.DICOMwebPath))
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			ev := rec.baseEvent(r, rec.now())
			ev.Interaction = interaction
			if interaction == QIDORS {
				ev.Query = searchTarget(r, "")
			}
			if study != "" {
				s := Study{InstanceUID: study}
				if interaction == DICOMDelete && lookup != nil {
					if found, err := lookup(r.Context(), []string{study}); err == nil {
						s.Patient = patientRef(found[study])
						if s.Patient != "" {
							rec.gone.remember(study, s.Patient, rec.now())
						}
					} else {
						rec.log.WarnContext(r.Context(), "looking up the patient of a study to delete failed", "interaction", interaction, errAttr(err))
					}
				}
				ev.Studies = []Study{s}
			}
			want := (interaction == QIDORS && study == "") || interaction == STOWRS
			t := &tee{ResponseWriter: w, limit: rec.cfg.MaxCapture, want: want}
			finish := func() {
				ev.Status = t.statusOr200()
				if t.capturing && !t.over && ev.Status < 300 {
					seen := map[string]bool{}
					add := func(uid string) {
						if validUID(uid) && !seen[uid] && uid != study {
							seen[uid] = true
							ev.Studies = append(ev.Studies, Study{InstanceUID: uid})
						}
					}
					if interaction == QIDORS {
						qidoStudies(t.buf.Bytes(), add)
					} else {
						stowStudies(t.buf.Bytes(), add)
					}
				}
				if ev.Status >= 400 && t.capturing && !t.over {
					ev.OutcomeDesc = redact(dicomwebReason(t.buf.Bytes()), r.URL.RawQuery, "")
				}
				if lookup != nil && interaction != DICOMDelete {
					ev.lookup = lookup
				}
				rec.record(r, ev)
			}
			defer func() {
				if p := recover(); p != nil {
					t.status = http.StatusInternalServerError
					finish()
					panic(p)
				}
			}()
			next.ServeHTTP(t, r)
			finish()
		})
	}
}

// dicomwebReason is the reason of a DICOMweb error body
// ({"error": …, "reason": …}).
func dicomwebReason(body []byte) string {
	var e struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Reason
}

// Rejected records a request that the authentication layer refused before
// it reached the FHIR or DICOMweb middleware (401 for a missing or invalid
// token, 400 for a malformed Authorization header). Call it from the auth
// middleware's error writer. Requests outside the two APIs, and the
// CapabilityStatement, are not recorded. The caller is unknown; the patient
// only when the request names one in its path or query.
func (rec *Recorder) Rejected(r *http.Request, status int) {
	p := r.URL.Path
	var ev Event
	switch {
	case under(p, rec.cfg.FHIRPath):
		req, ok := classifyFHIR(r.Method, relPath(r, rec.cfg.FHIRPath))
		if !ok {
			return
		}
		ev = rec.baseEvent(r, rec.now())
		ev.Interaction, ev.ResourceType, ev.ResourceID, ev.VersionID = req.interaction, req.typ, req.id, req.vid
		var patients patientSet
		if req.typ == "Patient" && req.id != "" {
			patients.add("Patient/" + req.id)
		}
		if req.interaction == SearchType || req.interaction == SearchSystem {
			ev.Query = searchTarget(r, "")
			queryPatients(req.typ, r.URL.Query(), patients.add)
		}
		ev.Patients = patients
	case under(p, rec.cfg.DICOMwebPath):
		interaction, study, ok := classifyDICOMweb(r.Method, relPath(r, rec.cfg.DICOMwebPath))
		if !ok {
			return
		}
		ev = rec.baseEvent(r, rec.now())
		ev.Interaction = interaction
		if interaction == QIDORS {
			ev.Query = searchTarget(r, "")
		}
		if study != "" {
			ev.Studies = []Study{{InstanceUID: study}}
		}
	default:
		return
	}
	ev.Principal = nil // whatever the context says, no token was accepted
	ev.Status = status
	rec.record(r, ev)
}

func under(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// baseEvent fills what every event of r carries.
func (rec *Recorder) baseEvent(r *http.Request, start time.Time) Event {
	ev := Event{
		Principal:     auth.FromContext(r.Context()),
		ClientAddress: clientIP(r.RemoteAddr),
		ServerHost:    hostOnly(r.Host),
		RequestID:     r.Header.Get("X-Request-Id"),
		Start:         start,
	}
	return ev
}

// record hands ev to the queue. The request may be over, and its context
// cancelled, once the response is sent; the record is kept all the same.
func (rec *Recorder) record(r *http.Request, ev Event) {
	ev.Recorded = rec.now()
	_ = rec.Record(context.WithoutCancel(r.Context()), ev)
}

// searchTarget is a search's path and query — the URL's, and the form
// body's of a POST — without credentials: the "raw search request" of
// BALP's query entity.
func searchTarget(r *http.Request, form string) string {
	var q []string
	for _, part := range []string{r.URL.RawQuery, form} {
		if part = sanitizeQuery(part); part != "" {
			q = append(q, part)
		}
	}
	if len(q) == 0 {
		return r.URL.EscapedPath()
	}
	return r.URL.EscapedPath() + "?" + strings.Join(q, "&")
}

// sanitizeQuery drops credential parameters from a raw query string,
// keeping the rest byte for byte.
func sanitizeQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if credentialParams[strings.ToLower(strings.TrimSpace(k))] {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "&")
}

// redact removes the values of credential parameters from text taken
// from a response (an error that quotes the request back).
func redact(text string, queries ...string) string {
	if text == "" {
		return ""
	}
	for _, raw := range queries {
		for _, p := range strings.Split(raw, "&") {
			k, v, _ := strings.Cut(p, "=")
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
			if !credentialParams[strings.ToLower(strings.TrimSpace(k))] {
				continue
			}
			for _, form := range []string{v, unescaped(v)} {
				if len(form) >= 4 {
					text = strings.ReplaceAll(text, form, "[redacted]")
				}
			}
		}
	}
	return text
}

func unescaped(v string) string {
	if u, err := url.QueryUnescape(v); err == nil {
		return u
	}
	return v
}

// relPath is the request path below the API's mount point. A handler behind
// http.StripPrefix already sees it so.
func relPath(r *http.Request, prefix string) string {
	p := r.URL.Path
	if under(p, prefix) {
		p = p[len(prefix):]
	}
	return p
}

// fhirRequest is a classified FHIR request.
type fhirRequest struct {
	interaction  Interaction
	typ, id, vid string
}

// classifyFHIR finds the interaction of a request to the FHIR API (FHIR R4
// http.html, "Service Base URL" and the interaction URLs). ok is false for
// requests that are not audited.
func classifyFHIR(method, rel string) (fhirRequest, bool) {
	if method == http.MethodOptions {
		return fhirRequest{}, false // a CORS preflight reaches no data
	}
	rel = strings.Trim(rel, "/")
	if rel == "" {
		switch method {
		case http.MethodPost:
			return fhirRequest{interaction: Batch}, true // refined from the Bundle
		case http.MethodGet, http.MethodHead:
			return fhirRequest{interaction: SearchSystem}, true
		}
		return fhirRequest{interaction: Operation}, true
	}
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			segs[i] = u
		}
	}
	first := segs[0]
	switch {
	case first == "metadata":
		return fhirRequest{}, false
	case strings.HasPrefix(first, "$"):
		return fhirRequest{interaction: Operation}, true
	case first[0] < 'A' || first[0] > 'Z':
		return fhirRequest{}, false // .well-known, subscription-ws: not resources
	}
	req := fhirRequest{typ: first}
	byMethod := func(read, write Interaction) Interaction {
		switch method {
		case http.MethodGet, http.MethodHead:
			return read
		case http.MethodPut:
			return Update
		case http.MethodPatch:
			return Patch
		case http.MethodDelete:
			return Delete
		}
		return write
	}
	switch len(segs) {
	case 1:
		req.interaction = byMethod(SearchType, Create)
	case 2:
		switch s := segs[1]; {
		case s == "_search":
			req.interaction = SearchType
		case s == "_history":
			req.interaction = HistoryType
		case strings.HasPrefix(s, "$"):
			req.interaction = Operation
		default:
			req.id = s
			req.interaction = byMethod(Read, Create)
		}
	case 3:
		req.id = segs[1]
		switch s := segs[2]; {
		case s == "_history":
			req.interaction = HistoryInstance
		case first == "Subscription" && (s == "$status" || s == "$events"):
			// Subscriptions R4 Backport: reading a subscription's state.
			req.interaction = Read
		default:
			req.interaction = Operation
		}
	case 4:
		req.id = segs[1]
		if segs[2] == "_history" {
			req.interaction, req.vid = VRead, segs[3]
		} else {
			req.interaction = Operation
		}
	default:
		req.id = segs[1]
		req.interaction = Operation
	}
	return req, true
}

// classifyDICOMweb finds the service of a DICOMweb request (PS3.18 10.4–
// 10.6): a GET of a search resource (/studies, /series, /instances, also
// below a study or series) is QIDO-RS; any other GET (a study, series,
// instance, its metadata, rendered, thumbnail, frames or bulkdata) is
// WADO-RS; POST is STOW-RS; DELETE deletes. study is the StudyInstanceUID of
// the path when it has a valid one.
func classifyDICOMweb(method, rel string) (interaction Interaction, study string, ok bool) {
	segs := strings.Split(strings.Trim(rel, "/"), "/")
	if len(segs) >= 2 && segs[0] == "studies" && validUID(segs[1]) {
		study = segs[1]
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		switch segs[len(segs)-1] {
		case "studies", "series", "instances":
			return QIDORS, study, true
		}
		return WADORS, study, true
	case http.MethodPost:
		return STOWRS, study, true
	case http.MethodDelete:
		return DICOMDelete, study, true
	}
	return "", "", false
}

// locationRef splits a Location (…/Type/id/_history/n) into its parts.
func locationRef(loc string) (typ, id, vid string) {
	if loc == "" {
		return "", "", ""
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.Path
	}
	segs := strings.Split(strings.Trim(loc, "/"), "/")
	n := len(segs)
	if n >= 4 && segs[n-2] == "_history" {
		vid = segs[n-1]
		segs, n = segs[:n-2], n-2
	}
	if n < 2 || !fhir.IsResourceType(segs[n-2]) || !fhir.ValidID(segs[n-1]) {
		return "", "", ""
	}
	return segs[n-2], segs[n-1], vid
}

// etagVersion reads the version of a W/"n" ETag.
func etagVersion(etag string) string {
	v := strings.Trim(strings.TrimPrefix(strings.TrimSpace(etag), "W/"), `"`)
	if v == "" || !fhir.ValidID(v) {
		return ""
	}
	return v
}

// capturable reports whether a body of this Content-Type is read for
// patients: JSON (FHIR, DICOM JSON, OperationOutcome), and for requests a
// form-encoded search.
func capturable(contentType string, request bool) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if request && mt == "application/x-www-form-urlencoded" {
		return true
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func isForm(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-www-form-urlencoded"
}

func clientIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

func hostOnly(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}

// capture copies what the handler reads of a request body, up to limit.
type capture struct {
	io.ReadCloser
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 && !c.over {
		if c.buf.Len()+n > c.limit {
			c.over = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p[:n])
		}
	}
	return n, err
}

// tee passes a response through and keeps its status, and a copy of a JSON
// body up to limit when want is set. It decides at the first WriteHeader or
// Write, from the Content-Type then set, and never changes what is sent.
type tee struct {
	http.ResponseWriter
	want      bool
	limit     int
	status    int
	capturing bool
	over      bool
	buf       bytes.Buffer
}

func (t *tee) statusOr200() int {
	if t.status == 0 {
		return http.StatusOK
	}
	return t.status
}

func (t *tee) begin(status int) {
	if t.status != 0 {
		return
	}
	t.status = status
	h := t.ResponseWriter.Header()
	t.capturing = t.want && capturable(h.Get("Content-Type"), false) && h.Get("Content-Encoding") == ""
}

func (t *tee) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		t.begin(status)
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *tee) Write(p []byte) (int, error) {
	t.begin(http.StatusOK)
	t.keep(p)
	return t.ResponseWriter.Write(p)
}

func (t *tee) keep(p []byte) {
	if !t.capturing || t.over {
		return
	}
	if t.buf.Len()+len(p) > t.limit {
		t.over = true
		t.buf = bytes.Buffer{}
		return
	}
	t.buf.Write(p)
}

// ReadFrom keeps io.Copy into the response as fast as it was (sendfile for
// WADO-RS files) when the body is not being copied.
func (t *tee) ReadFrom(r io.Reader) (int64, error) {
	t.begin(http.StatusOK)
	if rf, ok := t.ResponseWriter.(io.ReaderFrom); ok && !t.capturing {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{t}, r)
}

// writerOnly hides ReadFrom, so that io.Copy does not call it back.
type writerOnly struct{ io.Writer }

// Flush passes a flush through (streamed WADO-RS responses).
func (t *tee) Flush() {
	t.begin(http.StatusOK)
	_ = http.NewResponseController(t.ResponseWriter).Flush()
}

// Hijack passes a hijack through (websocket upgrades).
func (t *tee) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err == nil {
		t.begin(http.StatusSwitchingProtocols)
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's own writer
// (deadlines, full duplex).
func (t *tee) Unwrap() http.ResponseWriter { return t.ResponseWriter }

var _ interface {
	http.Flusher
	http.Hijacker
	io.ReaderFrom
} = (*tee)(nil)
