package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/jetstream"
	"github.com/priorflow/priorflow/subscriptions/service"

	"github.com/jackc/pgx/v5/pgxpool"
	njs "github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const base = "http://priorflow.test/fhir"

// env is one API process's worth of subscriptions over a test database and
// an embedded JetStream.
type env struct {
	t     testing.TB
	pool  *pgxpool.Pool
	js    njs.JetStream
	fs    *fhirpg.Store
	svc   *service.Service
	cfg   service.Config
	stop  func()
	codec *fhir.Codec
}

func fastDelivery() subscriptions.DeliveryConfig {
	return subscriptions.DeliveryConfig{Poll: 50 * time.Millisecond, Lease: 2 * time.Second,
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RetryWindow: time.Hour}
}

func newEnv(t testing.TB, cfg service.Config) *env {
	t.Helper()
	pool := dbtest.NewPool(t)
	ns := natstest.Start(t, "")
	_, js := ns.Connect(t)
	cfg.BaseURL = base
	if cfg.RelayPoll == 0 {
		cfg.RelayPoll = 100 * time.Millisecond
	}
	e := &env{t: t, pool: pool, js: js, cfg: cfg}
	e.start()
	return e
}

// start starts an API process: a fresh FHIR store and subscriptions service
// over the same database and JetStream.
func (e *env) start() {
	t := e.t
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Subscription())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := fhirpg.New(e.pool, reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(context.Background(), fs, e.js, e.cfg, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	e.fs, e.svc, e.codec = fs, svc, codec
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("service run: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
}

func (e *env) create(body string) (*fhir.Resource, error) {
	e.t.Helper()
	res, _, err := e.codec.Parse([]byte(body))
	if err != nil {
		e.t.Fatalf("parse %s: %v", body, err)
	}
	var r *fhir.Resource
	err = e.fs.InTx(context.Background(), func(tx *fhirpg.Tx) error {
		r, err = tx.Create(context.Background(), res)
		return err
	})
	return r, err
}

func (e *env) mustCreate(body string) *fhir.Resource {
	e.t.Helper()
	r, err := e.create(body)
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	return r
}

func (e *env) study(patient, modality string) *fhir.Resource {
	e.t.Helper()
	return e.mustCreate(fmt.Sprintf(`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/%s"},
		"series":[{"uid":"1.2.3","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":%q}}]}`, patient, modality))
}

func criteriaSub(endpoint, criteria string) string {
	return fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"priors","criteria":%q,
		"channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json","header":["Authorization: Bearer s3cret"]}}`, criteria, endpoint)
}

func topicSub(channel, endpoint, topic, filter, content string) string {
	ep := ""
	if endpoint != "" {
		ep = fmt.Sprintf(`"endpoint":%q,`, endpoint)
	}
	return fmt.Sprintf(`{"resourceType":"Subscription","meta":{"profile":[%q]},"status":"requested","reason":"priors",
		"criteria":%q,"_criteria":{"extension":[{"url":%q,"valueString":%q}]},
		"channel":{"type":%q,%s"payload":"application/fhir+json","_payload":{"extension":[{"url":%q,"valueCode":%q}]},
		"extension":[{"url":%q,"valueUnsignedInt":60}]}}`,
		subscriptions.ProfileSubscription, topic, subscriptions.ExtFilterCriteria, filter, channel, ep,
		subscriptions.ExtPayloadContent, content, subscriptions.ExtHeartbeatPeriod)
}

func (e *env) publishAvailable(ev *subscriptions.StudyAvailable) {
	e.t.Helper()
	pub, err := jetstream.NewPublisher(e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := pub.PublishStudyAvailable(context.Background(), ev); err != nil {
		e.t.Fatal(err)
	}
}

// note is one notification as a receiver saw it.
type note struct {
	Sub        string
	Type       string
	Since      int64
	Numbers    []int64
	Focus      []string
	Resources  int
	Auth       string
	Topic      string
	EmptyPing  bool
	ReceivedAt time.Time
}

func parseNote(t testing.TB, body []byte) note {
	t.Helper()
	var n note
	if len(body) == 0 {
		n.EmptyPing = true
		return n
	}
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Parameter    []struct {
					Name           string `json:"name"`
					ValueCode      string `json:"valueCode"`
					ValueString    string `json:"valueString"`
					ValueCanonical string `json:"valueCanonical"`
					ValueReference struct {
						Reference string `json:"reference"`
					} `json:"valueReference"`
					Part []struct {
						Name           string `json:"name"`
						ValueString    string `json:"valueString"`
						ValueReference struct {
							Reference string `json:"reference"`
						} `json:"valueReference"`
					} `json:"part"`
				} `json:"parameter"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Errorf("notification is not JSON: %v", err)
		return n
	}
	for i, en := range b.Entry {
		if i > 0 {
			n.Resources++
			continue
		}
		for _, p := range en.Resource.Parameter {
			switch p.Name {
			case "subscription":
				n.Sub = p.ValueReference.Reference
			case "type":
				n.Type = p.ValueCode
			case "topic":
				n.Topic = p.ValueCanonical
			case "events-since-subscription-start":
				n.Since, _ = strconv.ParseInt(p.ValueString, 10, 64)
			case "notification-event":
				for _, part := range p.Part {
					switch part.Name {
					case "event-number":
						num, _ := strconv.ParseInt(part.ValueString, 10, 64)
						n.Numbers = append(n.Numbers, num)
					case "focus":
						n.Focus = append(n.Focus, part.ValueReference.Reference)
					}
				}
			}
		}
	}
	return n
}

// receiver is a real HTTP endpoint.
type receiver struct {
	*httptest.Server
	t     testing.TB
	opt   recvOpts
	mu    sync.Mutex
	notes []note
	calls int
	got   chan struct{}
}

// recvOpts shape a receiver: fail decides per request (1-based) whether to
// answer 503, delay slows every answer, slowFirst only the first.
// failStatus, when set, is the raw status line of a failing answer, written
// on the hijacked connection as some endpoints send it: Go's server would
// not let a handler write one with control characters.
type recvOpts struct {
	fail       func(call int) bool
	failStatus string
	delay      time.Duration
	slowFirst  time.Duration
}

func newReceiver(t testing.TB, opt recvOpts) *receiver {
	r := &receiver{t: t, opt: opt, got: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls++
		call := r.calls
		r.mu.Unlock()
		if r.opt.delay > 0 {
			time.Sleep(r.opt.delay)
		}
		if call == 1 && r.opt.slowFirst > 0 {
			time.Sleep(r.opt.slowFirst)
		}
		if r.opt.fail != nil && r.opt.fail(call) {
			if r.opt.failStatus != "" {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer conn.Close()
				_, _ = io.WriteString(conn, r.opt.failStatus+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		n := parseNote(t, body)
		n.Auth = req.Header.Get("Authorization")
		n.ReceivedAt = time.Now()
		r.mu.Lock()
		r.notes = append(r.notes, n)
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) snapshot() []note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]note(nil), r.notes...)
}

// events returns the event numbers received, in order of arrival.
func (r *receiver) events() []int64 {
	var out []int64
	for _, n := range r.snapshot() {
		if n.Type == string(subscriptions.TypeEvent) {
			out = append(out, n.Numbers...)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func splitHostPort(u string) (string, string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", "", err
	}
	return pu.Hostname(), pu.Port(), nil
}

func (e *env) state(id string) *subscriptions.State {
	e.t.Helper()
	st, err := e.svc.Store().State(context.Background(), id)
	if err != nil {
		e.t.Fatalf("state of %s: %v", id, err)
	}
	return st
}

func (e *env) getEvents(id, query string) note {
	e.t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/fhir/Subscription/"+id+"/$events?"+query, nil)
	e.svc.EventsHandler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		e.t.Fatalf("$events: %d %s", rec.Code, rec.Body)
	}
	return parseNote(e.t, rec.Body.Bytes())
}

// receivedBy returns the event numbers the receiver got for one
// subscription, in order of arrival.
func (e *env) receivedBy(r *receiver, id string) []int64 {
	var out []int64
	for _, n := range r.snapshot() {
		if n.Sub == base+"/Subscription/"+id && n.Type == string(subscriptions.TypeEvent) {
			out = append(out, n.Numbers...)
		}
	}
	return out
}
