package hl7v2_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/hl7v2"
	"github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/mllp"
	"github.com/priorflow/priorflow/triggers/postgres"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// stack is the whole intake path on real peers: an MLLP server on a
// loopback port, the intake, PostgreSQL and an embedded JetStream server.
type stack struct {
	addr  string
	nats  *natstest.Server
	js    njs.JetStream
	store *postgres.RawStore
	logs  *syncBuffer
}

func startStack(tb testing.TB, timeout time.Duration) *stack {
	tb.Helper()
	return startStackWithPool(tb, timeout, dbtest.NewPool(tb))
}

func startStackWithPool(tb testing.TB, timeout time.Duration, pool *pgxpool.Pool) *stack {
	tb.Helper()
	return startStackConfig(tb, pool, hl7v2.IntakeConfig{Timeout: timeout})
}

// startStackConfig starts the stack with the intake configured by cfg.
func startStackConfig(tb testing.TB, pool *pgxpool.Pool, cfg hl7v2.IntakeConfig) *stack {
	tb.Helper()
	ctx := context.Background()
	store, err := postgres.NewRawStore(pool)
	if err != nil {
		tb.Fatal(err)
	}
	ns := natstest.Start(tb, "")
	_, js := ns.Connect(tb)
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		tb.Fatal(err)
	}
	pub, err := jetstream.NewPublisher(js)
	if err != nil {
		tb.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = prometheus.NewRegistry()
	in, err := hl7v2.NewIntake(store, pub, logger, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := mllp.NewServer(in, logger, mllp.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("mllp shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, mllp.ErrServerClosed) {
			tb.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	return &stack{addr: ln.Addr().String(), nats: ns, js: js, store: store, logs: logs}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sample reads a testdata message and gives it its own control ID: the
// samples reuse MSG00001 and friends, which would make them one event.
func sample(tb testing.TB, file string) (msg []byte, ev *triggers.CareEvent) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := hl7v2.Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Set("MSH-10", strings.TrimSuffix(file, ".hl7")); err != nil {
		tb.Fatal(err)
	}
	if ev, err = hl7v2.ToCareEvent(m, hl7v2.MapOptions{}); err != nil {
		tb.Fatal(err)
	}
	return m.Encode(), ev
}

func sampleFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.hl7")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no samples: %v", err)
	}
	for i, f := range files {
		files[i] = filepath.Base(f)
	}
	return files
}

// ackOf parses an acknowledgement and returns MSA-1, MSA-2 and ERR-3.1. An
// acknowledgement echoes the sender's bytes, so it is read as bytes.
func ackOf(tb testing.TB, ack []byte) (code, controlID, errCode string) {
	tb.Helper()
	m, err := hl7v2.Parser{Bytes: true}.Parse(ack)
	if err != nil {
		tb.Fatalf("acknowledgement does not parse: %v", err)
	}
	get := func(p string) string {
		v, err := m.Get(p)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	return get("MSA-1"), get("MSA-2"), get("ERR-3-1")
}

func send(tb testing.TB, c *mllp.Client, msg []byte) (code, controlID, errCode string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, err := c.Send(ctx, msg)
	if err != nil {
		tb.Fatalf("send: %v", err)
	}
	return ackOf(tb, ack)
}

func dial(tb testing.TB, addr string) *mllp.Client {
	tb.Helper()
	c, err := mllp.Dial(context.Background(), addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// stored is a care event as the stream holds it.
type stored struct {
	ev      triggers.CareEvent
	subject string
}

// streamed returns every event in the stream, in order.
func streamed(tb testing.TB, js njs.JetStream) []stored {
	tb.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("get message %d: %v", seq, err)
		}
		var ev triggers.CareEvent
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			tb.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, stored{ev, msg.Subject})
	}
	return out
}

// streamEvents returns the subject of every stored event by event id, and
// the number of messages in the stream.
func streamEvents(tb testing.TB, js njs.JetStream) (map[string]string, int) {
	tb.Helper()
	subjects := make(map[string]string)
	all := streamed(tb, js)
	for _, m := range all {
		subjects[m.ev.ID] = m.subject
	}
	return subjects, len(all)
}

func TestIntake_MLLP_SamplesStoredOnceAndResendsAcknowledged(t *testing.T) {
	t.Parallel()
	st := startStack(t, 5*time.Second)
	c := dial(t, st.addr)
	files := sampleFiles(t)
	want := make(map[string]string) // event id → subject
	msgs := make(map[string][]byte)
	for _, f := range files {
		msg, ev := sample(t, f)
		want[ev.ID] = ev.Subject()
		msgs[ev.ID] = msg
		code, ctl, errCode := send(t, c, msg)
		if code != "AA" || ctl != strings.TrimSuffix(f, ".hl7") {
			t.Errorf("%s: MSA %s %s (ERR-3 %s), want AA echoing the control ID", f, code, ctl, errCode)
		}
	}
	got, n := streamEvents(t, st.js)
	if n != len(files) {
		t.Errorf("stream holds %d events, want %d", n, len(files))
	}
	for id, subject := range want {
		if got[id] != subject {
			t.Errorf("event %s on subject %q, want %q", id, got[id], subject)
		}
		raw, err := st.store.Get(context.Background(), id)
		if err != nil {
			t.Errorf("raw message %s: %v", id, err)
			continue
		}
		if !bytes.Equal(raw.Data, msgs[id]) || raw.ReceivedAt.IsZero() || raw.Remote == "" || raw.ControlID == "" {
			t.Errorf("raw message %s stored as %q from %q at %v", id, raw.MessageType, raw.Remote, raw.ReceivedAt)
		}
	}

	// An interface engine resends after a lost acknowledgement.
	for _, f := range files {
		msg, _ := sample(t, f)
		if code, _, errCode := send(t, c, msg); code != "AA" {
			t.Errorf("resend %s: MSA-1 %s (ERR-3 %s), want AA", f, code, errCode)
		}
	}
	if _, n := streamEvents(t, st.js); n != len(files) {
		t.Errorf("after resending, stream holds %d events, want %d", n, len(files))
	}

	// Malformed and unsupported messages.
	for _, tt := range []struct {
		msg           string
		code, errCode string
	}{
		{"MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|X1|P|2.5\rPID|1||||DOE^JOHN\r", "AE", "101"},
		{"MSH|^~\\&|A|F|PF|PF|20240101||MDM^T02|X2|P|2.5\rPID|1||1^^^A^MR\r", "AR", "200"},
		{"PID|1||1^^^A^MR\r", "AR", "100"},
	} {
		if code, _, errCode := send(t, c, []byte(tt.msg)); code != tt.code || errCode != tt.errCode {
			t.Errorf("MSA-1 %s ERR-3 %s, want %s %s", code, errCode, tt.code, tt.errCode)
		}
	}

	// A different message reusing a control ID is refused, not dropped.
	reused, _ := sample(t, files[0])
	reused = bytes.Replace(reused, []byte("PID|1|"), []byte("PID|2|"), 1)
	if code, _, errCode := send(t, c, reused); code != "AE" || errCode != "205" {
		t.Errorf("reused control ID: MSA-1 %s ERR-3 %s, want AE 205", code, errCode)
	}

	for _, secret := range []string{"PATID1234", "EVERYMAN", "Josh", "stanley", "19880818"} {
		if strings.Contains(st.logs.String(), secret) {
			t.Errorf("logs contain patient data %q", secret)
		}
	}
}

func TestIntake_MLLP_NATSDownThenBack(t *testing.T) {
	t.Parallel()
	st := startStack(t, time.Second)
	c := dial(t, st.addr)
	first, firstEv := sample(t, "SIU-S12-01.hl7")
	if code, _, errCode := send(t, c, first); code != "AA" {
		t.Fatalf("MSA-1 %s (ERR-3 %s), want AA", code, errCode)
	}

	u, err := url.Parse(st.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	st.nats.Shutdown()
	msg, ev := sample(t, "ORM-O01-02.hl7")
	if code, _, errCode := send(t, c, msg); code != "AE" || errCode != "207" {
		t.Fatalf("with NATS down: MSA-1 %s ERR-3 %s, want AE 207", code, errCode)
	}

	// The same server, store and port come back; the sender resends until
	// acknowledged, as an interface engine does.
	e, err := natsjs.StartEmbedded(natsjs.EmbeddedConfig{StoreDir: st.nats.StoreDir, Addr: u.Host, MaxMemory: 64 << 20, MaxStore: 1 << 30}, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, errCode := send(t, c, msg)
		if code == "AA" {
			break
		}
		if code != "AE" || errCode != "207" || time.Now().After(deadline) {
			t.Fatalf("after restart: MSA-1 %s ERR-3 %s", code, errCode)
		}
	}
	got, n := streamEvents(t, st.js)
	if n != 2 || got[firstEv.ID] != firstEv.Subject() || got[ev.ID] != ev.Subject() {
		t.Errorf("stream holds %d events %v, want exactly %s and %s", n, got, firstEv.ID, ev.ID)
	}
}

func TestIntake_MLLP_RealSender(t *testing.T) {
	t.Parallel()
	mllpSend, err := exec.LookPath("mllp_send")
	if err != nil {
		t.Skip("mllp_send not found (Debian package python3-hl7, installed by scripts/install-deps.sh); skipping the outside sender test")
	}
	st := startStack(t, 5*time.Second)
	var file bytes.Buffer
	var want []*triggers.CareEvent
	for _, f := range []string{"ADT-A01-01.hl7", "SIU-S13-01.hl7", "ORM-O01-01.hl7"} {
		msg, ev := sample(t, f)
		// --loose reads LF-separated segments, as HL7 files are kept.
		file.Write(bytes.ReplaceAll(msg, []byte("\r"), []byte("\n")))
		want = append(want, ev)
	}
	path := filepath.Join(t.TempDir(), "batch.hl7")
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(st.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, mllpSend, "--loose", "--file", path, "--port", port, host).CombinedOutput()
	if err != nil {
		t.Fatalf("mllp_send: %v", err)
	}
	if got := bytes.Count(out, []byte("MSA|AA|")); got != len(want) {
		t.Errorf("mllp_send saw %d AA acknowledgements, want %d", got, len(want))
	}
	got, n := streamEvents(t, st.js)
	if n != len(want) {
		t.Errorf("stream holds %d events, want %d", n, len(want))
	}
	for _, ev := range want {
		if got[ev.ID] != ev.Subject() {
			t.Errorf("event %s (%s) on subject %q, want %q", ev.ID, ev.Kind, got[ev.ID], ev.Subject())
		}
	}
}

// BenchmarkIntake_MLLP measures messages per second with the durable
// acknowledgement (raw message in PostgreSQL, event in JetStream) over
// loopback TCP, with several sender connections.
func BenchmarkIntake_MLLP(b *testing.B) {
	benchIntake(b, dbtest.NewPool(b))
}

func benchIntake(b *testing.B, pool *pgxpool.Pool) {
	st := startStackWithPool(b, 10*time.Second, pool)
	base, _ := sample(b, "SIU-S12-01.hl7")
	const conns = 8
	var next atomic.Int64
	b.SetParallelism((conns + 1) / 2)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := mllp.Dial(context.Background(), st.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		m, err := hl7v2.Parse(base)
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := m.Set("MSH-10", fmt.Sprintf("BENCH%d", next.Add(1))); err != nil {
				b.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ack, err := c.Send(ctx, m.Encode())
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			if !bytes.Contains(ack, []byte("MSA|AA|")) {
				b.Errorf("not accepted: %q", ack)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
