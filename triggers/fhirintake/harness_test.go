package fhirintake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/fhirintake"
	"github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/postgres"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// wait bounds every wait for something asynchronous (the relay).
const wait = 15 * time.Second

// harness is a FHIR API with care event intake on its own database, and,
// when started with relay, an embedded JetStream and a running relay.
type harness struct {
	t    *testing.T
	pool *pgxpool.Pool
	url  string
	http *http.Client

	nats     *natstest.Server
	natsAddr string
	stream   njs.Stream
	pub      *countingPublisher
	metrics  *prometheus.Registry
	cursor   uint64 // last stream sequence next returned
}

type option func(*postgres.RelayConfig)

func newHarness(t *testing.T, relay bool, opts ...option) *harness {
	t.Helper()
	h := &harness{t: t, pool: dbtest.NewPool(t)}
	reg, err := fhir.NewRegistry(fhir.Appointment(), fhir.Encounter(), fhir.ServiceRequest(),
		fhir.Patient(), fhir.ImagingStudy(), fhir.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := fhirpg.New(h.pool, reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	h.url = "http://" + ts.Listener.Addr().String() + "/fhir"
	store.SetBaseURL(h.url)
	if err := fhirintake.Register(store, dbtest.Logger()); err != nil {
		t.Fatal(err)
	}
	api, err := rest.New(store, codec, dbtest.Logger(), rest.Config{BaseURL: h.url, MaxBody: 1 << 20, Software: "Priorflow", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/fhir/", http.StripPrefix("/fhir", api.Routes()))
	ts.Start()
	t.Cleanup(ts.Close)
	h.http = ts.Client()
	if relay {
		h.startNATS()
		cfg := postgres.RelayConfig{PollInterval: 200 * time.Millisecond, PublishTimeout: time.Second}
		for _, o := range opts {
			o(&cfg)
		}
		h.startRelay(cfg)
	}
	return h
}

func (h *harness) startNATS() {
	h.nats = natstest.Start(h.t, "")
	h.natsAddr = strings.TrimPrefix(h.nats.URL(), "nats://")
	_, js := h.nats.Connect(h.t)
	ctx := context.Background()
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		h.t.Fatal(err)
	}
	p, err := jetstream.NewPublisher(js)
	if err != nil {
		h.t.Fatal(err)
	}
	h.pub = &countingPublisher{Publisher: p}
	if h.stream, err = js.Stream(ctx, jetstream.StreamName); err != nil {
		h.t.Fatal(err)
	}
}

// startRelay runs a relay until the test ends, and checks that it stops
// cleanly when cancelled.
func (h *harness) startRelay(cfg postgres.RelayConfig) {
	h.t.Helper()
	if cfg.Registerer == nil && h.metrics == nil {
		h.metrics = prometheus.NewRegistry()
		cfg.Registerer = h.metrics
	}
	r, err := postgres.NewRelay(h.pool, h.pub, dbtest.Logger(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("relay: %v", err)
			}
		case <-time.After(wait):
			h.t.Error("relay did not stop")
		}
	})
}

// restartNATS stops the JetStream server and starts it again on the same
// port and store, as an operator's restart would.
func (h *harness) restartNATS(down func()) {
	h.t.Helper()
	h.nats.Shutdown()
	down()
	e, err := natsjs.StartEmbedded(natsjs.EmbeddedConfig{StoreDir: h.nats.StoreDir, Addr: h.natsAddr, MaxMemory: 64 << 20, MaxStore: 1 << 30}, dbtest.Logger())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(e.Shutdown)
	nc, err := nats.Connect(e.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.stream, err = js.Stream(context.Background(), jetstream.StreamName); err != nil {
		h.t.Fatal(err)
	}
}

// on returns h reporting to t (a subtest).
func (h *harness) on(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// countingPublisher is the real publisher, counting outcomes.
type countingPublisher struct {
	*jetstream.Publisher
	stored, duplicates, failures atomic.Int64
}

func (p *countingPublisher) Publish(ctx context.Context, ev *triggers.CareEvent) (bool, error) {
	dup, err := p.Publisher.Publish(ctx, ev)
	switch {
	case err != nil:
		p.failures.Add(1)
	case dup:
		p.duplicates.Add(1)
	default:
		p.stored.Add(1)
	}
	return dup, err
}

// event is a care event as stored in the stream, with its subject.
type event struct {
	triggers.CareEvent
	subject string
}

// next returns the next event in the stream, waiting for it.
func (h *harness) next() event {
	h.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		msg, err := h.stream.GetMsg(context.Background(), h.cursor+1)
		if err == nil {
			h.cursor = msg.Sequence
			var ev event
			if err := json.Unmarshal(msg.Data, &ev.CareEvent); err != nil {
				h.t.Fatal(err)
			}
			ev.subject = msg.Subject
			return ev
		}
		if !errors.Is(err, njs.ErrMsgNotFound) && !isTransient(err) {
			h.t.Fatalf("stream message %d: %v", h.cursor+1, err)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no event after stream sequence %d within %s", h.cursor, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isTransient(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, njs.ErrNoStreamResponse)
}

// streamCount is the number of events the stream holds.
func (h *harness) streamCount() uint64 {
	h.t.Helper()
	info, err := h.stream.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

// outbox counts the outbox rows: pending and blocked.
func (h *harness) outbox() (pending, blocked int) {
	h.t.Helper()
	err := h.pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE blocked_reason IS NULL), count(*) FILTER (WHERE blocked_reason IS NOT NULL)
		FROM event_outbox`).Scan(&pending, &blocked)
	if err != nil {
		h.t.Fatal(err)
	}
	return pending, blocked
}

// eventually waits until cond holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends a FHIR request and returns the status and decoded body.
func (h *harness) do(method, path, body string) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m == nil {
		m = map[string]any{"_raw": string(b)}
	}
	return resp.StatusCode, m
}

// must asserts the status and returns the body.
func (h *harness) must(status int, method, path, body string) map[string]any {
	h.t.Helper()
	got, m := h.do(method, path, body)
	if got != status {
		h.t.Fatalf("%s %s: status %d, want %d; body: %v", method, path, got, status, m)
	}
	return m
}

// ids returns the ids of the match entries of a searchset, in order.
func ids(bundle map[string]any) []string {
	var out []string
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		em := e.(map[string]any)
		if s, _ := em["search"].(map[string]any); s != nil && s["mode"] != "match" {
			continue
		}
		out = append(out, em["resource"].(map[string]any)["id"].(string))
	}
	return out
}
