package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
)

// testObserver is a valid observer (Config.Validate) beyond ASCII.
const testObserver = "Priorflow test ✓"

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// parseJSON is a record as the writer first encoded it: printed as JSON and
// parsed by the codec. The protos the writer builds must equal it.
func parseJSON(codec *fhir.Codec, ae *auditEvent) (proto.Message, error) {
	b, err := json.Marshal(ae)
	if err != nil {
		return nil, err
	}
	msg, _, err := codec.Parse(b)
	return msg, err
}

// direct is a record as encode builds and checks it.
func direct(codec *fhir.Codec, ae *auditEvent) (proto.Message, error) {
	m, err := ae.message()
	if err != nil {
		return nil, err
	}
	if err := codec.Check(m); err != nil {
		return nil, err
	}
	return m, nil
}

// encodeJSON is encode over parseJSON.
func encodeJSON(codec *fhir.Codec, observer string, ev *Event) []proto.Message {
	for _, minimal := range []bool{false, true} {
		var out []proto.Message
		for _, ae := range build(ev, observer, minimal) {
			msg, err := parseJSON(codec, &ae)
			if err != nil {
				out = nil
				break
			}
			out = append(out, msg)
		}
		if out != nil {
			return out
		}
	}
	return []proto.Message{}
}

func newTestRecorder(tb testing.TB) *Recorder {
	tb.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	return &Recorder{
		codec: codec,
		log:   discard,
		cfg:   Config{Observer: testObserver},
		lost:  prometheus.NewCounter(prometheus.CounterOpts{Name: "lost"}),
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// sameRecords checks that ev's records, built directly, are those the
// codec parses from their JSON, down to the JSON the store keeps.
func sameRecords(t *testing.T, codec *fhir.Codec, ev *Event, minimal bool) {
	t.Helper()
	for i, ae := range build(ev, testObserver, minimal) {
		want, err := parseJSON(codec, &ae)
		if err != nil {
			t.Fatalf("record %d (minimal %v): the codec refuses its JSON: %v", i, minimal, err)
		}
		got, err := direct(codec, &ae)
		if err != nil {
			t.Fatalf("record %d (minimal %v): %v", i, minimal, err)
		}
		fhirtest.SameResource(t, codec, fmt.Sprintf("record %d (minimal %v)", i, minimal), want, got)
	}
}

func TestEncode_SameAsParsedJSON(t *testing.T) {
	rec := newTestRecorder(t)
	start := t0.Add(-1500 * time.Millisecond)
	user := func(mod func(p *auth.Principal)) *auth.Principal {
		p := *clinician
		mod(&p)
		return &p
	}
	// This package records FHIR and DICOMweb only: there is no MLLP event.
	events := map[string]Event{
		"read of a version": {Interaction: Read, ResourceType: "ImagingStudy", ResourceID: "s1", VersionID: "2",
			Patients: []string{"Patient/p1"}, Status: 200, Principal: clinician, ClientAddress: "192.0.2.7",
			ServerHost: "fhir.example.org", RequestID: "req-1", Start: start, Recorded: t0},
		"vread":            {Interaction: VRead, ResourceType: "Patient", ResourceID: "p1", VersionID: "3", Patients: []string{"Patient/p1"}, Status: 200, Principal: backend, Recorded: t0},
		"bad version":      {Interaction: Read, ResourceType: "Patient", ResourceID: "p1", VersionID: "no version", Status: 200, Recorded: t0},
		"bad resource":     {Interaction: Read, ResourceType: "Bogus", ResourceID: "bad id!", Status: 404, Recorded: t0},
		"history-instance": {Interaction: HistoryInstance, ResourceType: "Patient", ResourceID: "p1", Patients: []string{"Patient/p1"}, Status: 200, Principal: clinician, Recorded: t0},
		"history-type":     {Interaction: HistoryType, ResourceType: "Patient", Status: 200, Principal: backend, Recorded: t0},
		"search-type": {Interaction: SearchType, ResourceType: "ImagingStudy", Query: "/fhir/ImagingStudy?patient=p1&modality=CT",
			Patients: []string{"Patient/p1", "Patient/p2", "Patient/p1/_history/3", "Group/g1", "https://other.example.org/fhir/Patient/p9",
				"https://other.example.org/fhir/Patient/p8/_history/1", "Patient/has space"},
			Status: 200, Principal: backend, ClientAddress: "2001:db8::1", ServerHost: "fhir.example.org", RequestID: "req-2", Start: start, Recorded: t0},
		"search-system":   {Interaction: SearchSystem, Query: "/fhir?_type=Patient,ImagingStudy", Status: 200, Principal: clinician, Recorded: t0},
		"create":          {Interaction: Create, ResourceType: "Patient", ResourceID: "p3", VersionID: "1", Patients: []string{"Patient/p3"}, Status: 201, Principal: clinician, Recorded: t0},
		"update":          {Interaction: Update, ResourceType: "Patient", ResourceID: "p3", VersionID: "2", Patients: []string{"Patient/p3"}, Status: 200, Principal: clinician, Recorded: t0},
		"patch":           {Interaction: Patch, ResourceType: "Patient", ResourceID: "p3", Status: 200, Principal: backend, Recorded: t0},
		"delete":          {Interaction: Delete, ResourceType: "Patient", ResourceID: "p3", Patients: []string{"Patient/p3"}, Status: 204, Principal: clinician, Recorded: t0},
		"transaction":     {Interaction: Transaction, Patients: []string{"Patient/p1", "Patient/p2"}, Status: 200, Principal: clinician, Recorded: t0},
		"batch":           {Interaction: Batch, Status: 200, Principal: clinician, Recorded: t0},
		"operation":       {Interaction: Operation, ResourceType: "Patient", ResourceID: "p1", Status: 200, Principal: clinician, Recorded: t0},
		"no interaction":  {Status: 200, Recorded: t0},
		"explicit action": {Interaction: Read, Action: ActionExecute, Status: 200, Recorded: t0},
		// jsonformat reads codes case-blind where they are enums.
		"lower-case action":                      {Interaction: Read, Action: "r", Status: 200, Recorded: t0},
		"unknown interaction with invalid UTF-8": {Interaction: "read\xff\xfe", Status: 200, Recorded: t0},

		"qido-rs": {Interaction: QIDORS, Query: "/dicomweb/studies?PatientID=X", Status: 200, Principal: backend, RequestID: "req-3",
			Studies: []Study{{"1.2.3", "Patient/p1"}, {"1.2.4", "Patient/p2"}, {"1.2.5", "Patient/p1"}, {"1.2.6", ""},
				{"1.2.7", "Group/g1"}, {"1.2.8", "https://other.example.org/fhir/Patient/p9"}}, Recorded: t0},
		"qido-rs, studies of unknown patients": {Interaction: QIDORS, Query: "/dicomweb/studies", Patients: []string{"Patient/p1"},
			Studies: []Study{{"1.2.3", ""}, {"1.2.4", ""}}, Status: 200, Principal: clinician, Recorded: t0},
		"qido-rs, none found": {Interaction: QIDORS, Query: "/dicomweb/studies?PatientID=none", Status: 200, Principal: clinician, Recorded: t0},
		"wado-rs":             {Interaction: WADORS, Studies: []Study{{"1.2.3", "Patient/p1"}}, Status: 200, Principal: clinician, Start: start, Recorded: t0},
		"stow-rs":             {Interaction: STOWRS, Studies: []Study{{"1.2.3", "Patient/p1"}, {"1.2.9", ""}}, Status: 200, Principal: backend, Recorded: t0},
		"dicomweb delete":     {Interaction: DICOMDelete, Studies: []Study{{"1.2.3", "Patient/p1"}}, Status: 204, Principal: clinician, Recorded: t0},
		// UIDs are checked by the middleware, not by Record.
		"study UID with invalid UTF-8": {Interaction: WADORS, Studies: []Study{{"1.2.\xff\xfe3", ""}}, Status: 200, Recorded: t0},

		"authorization off":    {Interaction: Read, ResourceType: "Patient", ResourceID: "p1", Patients: []string{"Patient/p1"}, Status: 200, Recorded: t0},
		"rejected token":       {Interaction: SearchType, ResourceType: "Patient", Query: "/fhir/Patient?name=x", Status: 401, ClientAddress: "192.0.2.7", Recorded: t0},
		"empty principal":      {Interaction: Read, Status: 200, Principal: &auth.Principal{}, Recorded: t0},
		"client without id":    {Interaction: Read, Status: 200, Principal: &auth.Principal{Issuer: "https://issuer.example.org", Subject: "svc"}, Recorded: t0},
		"user by subject only": {Interaction: Read, Status: 200, Principal: user(func(p *auth.Principal) { p.FHIRUser = "" }), Recorded: t0},
		"absolute fhirUser": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.FHIRUser = "https://ehr.example.org/fhir/Practitioner/pr1" })},
		"fhirUser of a Person": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.FHIRUser = "Person/x" })},
		"patient as user": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.FHIRUser = "Patient/p1" })},
		"unidentified user": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.FHIRUser, p.Subject = "Person/x", "  " })},
		"issuer with a space": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.Issuer = "https://issuer.example.org/a b" })},
		"no jti": {Interaction: Read, Status: 200, Recorded: t0, Principal: user(func(p *auth.Principal) { p.TokenID = "" })},
		"jti with a space": {Interaction: Read, Status: 200, Recorded: t0,
			Principal: user(func(p *auth.Principal) { p.TokenID = "has space" })},
		"purposes of use": {Interaction: Read, Status: 200, Recorded: t0, Principal: user(func(p *auth.Principal) {
			p.PurposeOfUse = []string{"TREAT", "", " TREAT", "not a\tcode", strings.Repeat("X", 65), "HOPERAT", "two words", "ETREAT\xff"}
		})},
		"no purpose of use": {Interaction: Read, Status: 200, Recorded: t0, Principal: user(func(p *auth.Principal) { p.PurposeOfUse = nil })},

		"addresses blank": {Interaction: Read, Status: 200, ClientAddress: " \t", ServerHost: "\n", Principal: backend, Recorded: t0},
		"addresses odd":   {Interaction: Read, Status: 200, ClientAddress: "192.0.2.7\xff", ServerHost: "fhir.example.org\u2028", Principal: backend, Recorded: t0},

		"not found":             {Interaction: Read, ResourceType: "Patient", ResourceID: "p1", Status: 404, OutcomeDesc: "Patient/p1 is not known", Principal: clinician, Recorded: t0},
		"server error":          {Interaction: SearchType, Query: "/fhir/Patient", Status: 503, OutcomeDesc: "database unavailable", Principal: backend, Recorded: t0},
		"unknown status":        {Interaction: Read, Status: 599, OutcomeDesc: "?", Recorded: t0},
		"no status with detail": {Interaction: Read, OutcomeDesc: "cancelled", Recorded: t0},
		"long description":      {Interaction: Read, Status: 500, OutcomeDesc: strings.Repeat("é", 600), Recorded: t0},
		"blank description":     {Interaction: Read, OutcomeDesc: " \t\n", Recorded: t0},

		"free text with invalid UTF-8 and odd whitespace": {Interaction: SearchType, ResourceType: "Patient", Status: 400,
			Query:       "/fhir/Patient?name=\xff\xfeO'Brien&x=<b>&amp;\u2028\u00a0\t\r\n",
			OutcomeDesc: "bad \xc3\x28 input\xe2\x82 \t\r\n\u2028\u2029\u00a0 <script>&",
			RequestID:   "\u00a0req\xff\xff\t4 ",
			Principal: &auth.Principal{Issuer: "https://issuer.example.org", Subject: "u\xff\xfe", ClientID: "app \xc3\x28 \u2028",
				FHIRUser: "Practitioner/pr1", TokenID: "jti-é", PurposeOfUse: []string{"TREAT"}},
			Recorded: t0},
		"long request id and query": {Interaction: SearchType, Query: "/fhir/Patient?name=" + strings.Repeat("é", 3000),
			RequestID: strings.Repeat("é", 300), Status: 200, Principal: backend, Recorded: t0},

		"before 1970, between microseconds": {Interaction: Read, Status: 200,
			Start: time.Date(1969, 12, 31, 23, 59, 58, 999_999_999, time.UTC), Recorded: time.Date(1969, 12, 31, 23, 59, 59, 999_999_500, time.UTC)},
		"in another zone": {Interaction: Read, Status: 200, Start: start.In(time.FixedZone("", -5*3600)), Recorded: t0.In(time.FixedZone("", 9*3600+1800))},
		"year 0":          {Interaction: Read, Status: 200, Start: time.Date(0, 1, 1, 0, 0, 0, 1000, time.UTC), Recorded: time.Date(1677, 9, 21, 0, 12, 43, 145_224_999, time.UTC)},
		"year 2262":       {Interaction: Read, Status: 200, Start: time.Date(2262, 4, 11, 23, 47, 16, 854_775_807, time.UTC), Recorded: time.Date(2262, 4, 11, 23, 47, 16, 854_775_808, time.UTC)},
		"year 9999":       {Interaction: Read, Status: 200, Recorded: time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)},
	}
	for name, ev := range events {
		t.Run(name, func(t *testing.T) {
			sameRecords(t, rec.codec, &ev, false)
			sameRecords(t, rec.codec, &ev, true)
			want := encodeJSON(rec.codec, testObserver, &ev)
			if diff := cmp.Diff(want, rec.encode(&ev), protocmp.Transform()); diff != "" {
				t.Errorf("encode differs from the parsed JSON (-want +got):\n%s", diff)
			}
		})
	}
	if n := counterValue(t, rec.lost); n != 0 {
		t.Errorf("%v events lost", n)
	}
}

// What the codec refuses in a record's JSON, the direct build must refuse
// too, so that encode still falls back to the minimal record or counts the
// event lost. The free text of a request (fhirString) may hold control
// characters, which R4 strings and URIs forbid: those records fall back.
// The only codes from a request are the token's purposes of use, which
// validCode filters; an invalid code (a leading space) reaches the builder
// only from a caller of Record, in elements minimal keeps: that event is
// lost, as are those with a control character in the caller's id.
func TestEncode_RefusesWhatParseRefuses(t *testing.T) {
	with := func(mod func(ev *Event)) Event {
		ev := Event{Interaction: SearchType, ResourceType: "Patient", Query: "/fhir/Patient?name=x", Patients: []string{"Patient/p1"},
			Status: 200, Principal: clinician, RequestID: "req-1", Recorded: t0}
		mod(&ev)
		return ev
	}
	principal := func(mod func(p *auth.Principal)) func(ev *Event) {
		return func(ev *Event) {
			p := *clinician
			mod(&p)
			ev.Principal = &p
		}
	}
	for name, tt := range map[string]struct {
		ev   Event
		lost bool
	}{
		"control character in the outcome description": {ev: with(func(ev *Event) { ev.Status, ev.OutcomeDesc = 502, "upstream said \x1b[31mno" })},
		"control character in the query":               {ev: with(func(ev *Event) { ev.Query = "/fhir/Patient?name=\x01" })},
		"control character in the request id":          {ev: with(func(ev *Event) { ev.RequestID = "req\x00" })},
		"control character in the jti":                 {ev: with(principal(func(p *auth.Principal) { p.TokenID = "jti\x7f" }))},
		"control character in the user's name":         {ev: with(principal(func(p *auth.Principal) { p.FHIRUser = "Person/\x02" }))},
		"control character in the client id":           {ev: with(principal(func(p *auth.Principal) { p.ClientID = "app\x01" })), lost: true},
		"code with a leading space":                    {ev: with(func(ev *Event) { ev.Interaction = " read" }), lost: true},
		"unknown action":                               {ev: with(func(ev *Event) { ev.Action = "X" }), lost: true},
		"year 10000":                                   {ev: with(func(ev *Event) { ev.Recorded = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), lost: true},
		"year before 0":                                {ev: with(func(ev *Event) { ev.Recorded = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }), lost: true},
	} {
		t.Run(name, func(t *testing.T) {
			rec := newTestRecorder(t)
			for _, ae := range build(&tt.ev, testObserver, false) {
				if _, err := parseJSON(rec.codec, &ae); err == nil {
					t.Fatal("the codec accepts the JSON: not a case for this test")
				}
				if _, err := direct(rec.codec, &ae); err == nil {
					t.Error("the direct build accepts what the codec refuses")
				}
			}
			if !tt.lost {
				sameRecords(t, rec.codec, &tt.ev, true)
			}
			got := rec.encode(&tt.ev)
			if diff := cmp.Diff(encodeJSON(rec.codec, testObserver, &tt.ev), got, protocmp.Transform()); diff != "" {
				t.Errorf("encode differs from the parsed JSON (-want +got):\n%s", diff)
			}
			if lost := counterValue(t, rec.lost) == 1; lost != tt.lost || lost != (len(got) == 0) {
				t.Errorf("lost %v with %d records, want lost %v", lost, len(got), tt.lost)
			}
		})
	}
}

// encode checks the first record of an event whole and, after it, only the
// entities a record does not share with those before: an entity refused in
// a later record must fail the event as checking every record whole does.
func TestEncode_ChecksEveryRecordsOwnEntities(t *testing.T) {
	for name, studies := range map[string][]Study{
		"second patient's study":                  {{"1.2.3", "Patient/p1"}, {"1.2.\x01", "Patient/p2"}},
		"study of unknown patient after patients": {{"1.2.3", "Patient/p1"}, {"1.2.4", "Patient/p2"}, {"1.2.\x01", ""}},
		"second patient's second study":           {{"1.2.3", "Patient/p1"}, {"1.2.4", "Patient/p2"}, {"1.2.\x00", "Patient/p2"}},
	} {
		t.Run(name, func(t *testing.T) {
			rec := newTestRecorder(t)
			ev := Event{Interaction: QIDORS, Query: "/dicomweb/studies", Studies: studies, Status: 200, Principal: clinician, Recorded: t0}
			records := build(&ev, testObserver, false)
			if len(records) < 2 {
				t.Fatalf("%d records: not a case for this test", len(records))
			}
			if _, err := direct(rec.codec, &records[0]); err != nil {
				t.Fatalf("the first record is refused (%v): not a case for this test", err)
			}
			got := rec.encode(&ev)
			if diff := cmp.Diff(encodeJSON(rec.codec, testObserver, &ev), got, protocmp.Transform()); diff != "" {
				t.Errorf("encode differs from the parsed JSON (-want +got):\n%s", diff)
			}
			if len(got) != 0 || counterValue(t, rec.lost) != 1 {
				t.Errorf("%d records written, lost %v; want the event lost", len(got), counterValue(t, rec.lost))
			}
		})
	}
}

// A record whose base (all but its times, outcome text and entities) was
// checked whole before is checked by those elements alone: one refused
// there must fail the record as a whole check does.
func TestEncode_ChecksWhatDiffersFromACheckedBase(t *testing.T) {
	ok := Event{Interaction: SearchType, ResourceType: "Patient", Query: "/fhir/Patient?name=x", Patients: []string{"Patient/p1"},
		Status: 200, Principal: clinician, RequestID: "req-1", Start: t0.Add(-time.Second), Recorded: t0}
	for name, mod := range map[string]func(ev *Event){
		"control character in the outcome description": func(ev *Event) { ev.OutcomeDesc = "upstream said \x1b[31mno" },
		"control character in the query":               func(ev *Event) { ev.Query = "/fhir/Patient?name=\x01" },
		"control character in the request id":          func(ev *Event) { ev.RequestID = "req\x00" },
		"study UID with a control character":           func(ev *Event) { ev.Studies = []Study{{"1.2.\x01", "Patient/p2"}} },
		"valid, another patient and time":              func(ev *Event) { ev.Patients, ev.Recorded = []string{"Patient/p2"}, t0.Add(time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			rec := newTestRecorder(t)
			if got := rec.encode(&ok); len(got) != 1 {
				t.Fatalf("the first access: %d records", len(got))
			}
			ev := ok
			mod(&ev)
			first, err := build(&ev, testObserver, false)[0].message()
			if err != nil {
				t.Fatal(err)
			}
			if !rec.bases.has(baseKey(first)) {
				t.Fatal("the base of the second access is not known: not a case for this test")
			}
			want, got := encodeJSON(rec.codec, testObserver, &ev), rec.encode(&ev)
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("encode differs from the parsed JSON (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzEncode_SameAsParsedJSON feeds the text a caller controls to both
// encodings: each record must be accepted by both or refused by both, and
// be the same proto when accepted.
func FuzzEncode_SameAsParsedJSON(f *testing.F) {
	f.Add(uint8(0), "viewer", "u-42", "Practitioner/pr1", "jti-2", "TREAT", "/fhir/ImagingStudy?patient=p1", "", "req-1", "1.2.3", "Patient/p1", false)
	f.Add(uint8(5), "app \xc3\x28", "  ", "https://ehr.example.org/fhir/Practitioner/pr1", "has space", " TREAT",
		"/fhir/Patient?name=\xff\xfe", "bad\x01 \u2028", "\u00a0", "1.2.\xff", "https://other.example.org/fhir/Patient/p9/_history/2", true)
	f.Add(uint8(14), "", "", "Person/x", "", "", "", "\t", "\x00", "", "Patient/p1/_history/3", false)
	codec, err := fhir.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	interactions := []Interaction{Read, VRead, HistoryInstance, HistoryType, SearchType, SearchSystem, Create, Update, Patch,
		Delete, Transaction, Batch, Operation, QIDORS, WADORS, STOWRS, DICOMDelete}
	newRecorder := func() *Recorder {
		return &Recorder{codec: codec, log: discard, cfg: Config{Observer: testObserver}, lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "lost"})}
	}
	shared := newRecorder()
	f.Fuzz(func(t *testing.T, kind uint8, clientID, subject, fhirUser, jti, purpose, query, desc, requestID, studyUID, patient string, minimal bool) {
		ev := &Event{
			Interaction: interactions[int(kind)%len(interactions)], ResourceType: "Patient", ResourceID: "p1",
			Query: query, Patients: []string{patient, "Patient/p2"},
			Studies: []Study{{studyUID, patient}, {"1.2.3", "Patient/p2"}, {studyUID, "Patient/p2"}, {studyUID, ""}},
			Status:  200 + 100*int(kind%4), OutcomeDesc: desc, RequestID: requestID, ClientAddress: clientID, ServerHost: subject,
			Principal: &auth.Principal{Issuer: "https://issuer.example.org", ClientID: clientID, Subject: subject,
				FHIRUser: fhirUser, TokenID: jti, PurposeOfUse: []string{purpose}},
			Start: t0, Recorded: t0,
		}
		if kind >= 128 {
			ev.Principal = nil
		}
		records := build(ev, testObserver, minimal)
		for i, ae := range records {
			want, werr := parseJSON(codec, &ae)
			got, gerr := direct(codec, &ae)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("record %d: parsed JSON error %v, direct build error %v", i, werr, gerr)
			}
			if werr == nil && !proto.Equal(want, got) {
				t.Fatalf("record %d differs from the parsed JSON (-want +got):\n%s", i, cmp.Diff(want, got, protocmp.Transform()))
			}
			// encode checks only the entities of records after the first.
			first := records[0]
			first.Entity, ae.Entity = nil, nil
			if !reflect.DeepEqual(first, ae) {
				t.Fatalf("record %d differs from the first in more than its entities", i)
			}
		}
		// A new recorder checks the first record whole; the shared one
		// remembers the bases of earlier inputs, often the same as this one's.
		want := encodeJSON(codec, testObserver, ev)
		for _, rec := range []*Recorder{newRecorder(), shared} {
			if got := rec.encode(ev); !slices.EqualFunc(want, got, proto.Equal) {
				t.Fatalf("encode differs from the parsed JSON (-want +got):\n%s", cmp.Diff(want, got, protocmp.Transform()))
			}
		}
	})
}

// BenchmarkEncode compares building the records of a typical search (a
// patient's three studies, by a clinician) directly with printing and
// parsing their JSON.
func BenchmarkEncode(b *testing.B) {
	rec := newTestRecorder(b)
	ev := &Event{Interaction: QIDORS, Query: "/dicomweb/studies?PatientID=MRN-1&ModalitiesInStudy=CT", Status: 200,
		Principal: clinician, ClientAddress: "192.0.2.7", ServerHost: "pacs.example.org", RequestID: "req-1", Start: t0, Recorded: t0,
		Studies: []Study{{"1.2.840.1.1", "Patient/p1"}, {"1.2.840.1.2", "Patient/p1"}, {"1.2.840.1.3", "Patient/p1"}}}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if len(rec.encode(ev)) != 1 {
				b.Fatal("not one record")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if len(encodeJSON(rec.codec, testObserver, ev)) != 1 {
				b.Fatal("not one record")
			}
		}
	})
}

// The writer takes one CPU while its queue has room and every CPU once the
// queue is half full.
func TestRecorder_Workers(t *testing.T) {
	rec := &Recorder{queue: make(chan Event, 4)}
	for i, want := range []int{1, 1, 0, 0, 0} {
		if got := rec.workers(); got != want {
			t.Errorf("%d of 4 queued: %d workers, want %d", i, got, want)
		}
		if i < 4 {
			rec.queue <- Event{}
		}
	}
}
