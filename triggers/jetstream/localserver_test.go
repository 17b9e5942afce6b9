package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/triggers/jetstream"
)

// The machine's own NATS server (127.0.0.1:4222, or NATS_TEST_URL) behaves
// as the embedded one: durable publish, resend deduplicated. The test owns
// a stream and subjects of its own there, deleted at the end, so it shares
// the server with anything else.
func TestPublish_OnTheLocalNATSServer(t *testing.T) {
	t.Parallel()
	url := os.Getenv("NATS_TEST_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	ctx := context.Background()
	nc, js, err := natsjs.Connect(ctx, url, t.Name(), dbtest.Logger())
	if err != nil {
		t.Fatalf("the local NATS server is not reachable (make test starts it: scripts/ensure-services.sh): %v", err)
	}
	defer nc.Close()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	cfg := jetstream.StreamConfig{Name: "PRIORFLOW_TEST_" + suffix, SubjectPrefix: "priorflowtest." + suffix + ".events."}
	if err := jetstream.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), cfg.Name) })
	p, err := jetstream.NewPublisherFor(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if dup, err := p.Publish(ctx, event("local-1")); err != nil || dup {
		t.Fatalf("publish: dup %v err %v", dup, err)
	}
	if dup, err := p.Publish(ctx, event("local-1")); err != nil || !dup {
		t.Fatalf("resend: dup %v err %v, want a duplicate", dup, err)
	}
	s, err := js.Stream(ctx, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d messages on the local server, want 1", info.State.Msgs)
	}
	msg, err := s.GetLastMsgForSubject(ctx, cfg.SubjectPrefix+"appointment-booked")
	if err != nil || msg.Header.Get("Nats-Msg-Id") != "local-1" {
		t.Errorf("stored message %v (err %v), want Nats-Msg-Id local-1", msg, err)
	}
}
