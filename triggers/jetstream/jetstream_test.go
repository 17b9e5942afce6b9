package jetstream_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/jetstream"
)

func event(id string) *triggers.CareEvent {
	return &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.AppointmentBooked,
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Priority: triggers.PriorityRoutine,
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:oid:1.2.3", Value: "MRN1"}}},
		SourceSystem: "test", Origin: triggers.Origin{Reference: "Appointment/a1"}}
}

func TestPublish_DurableAndDeduplicated(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, "")
	_, js := srv.Connect(t)
	ctx := context.Background()
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	p, err := jetstream.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	if dup, err := p.Publish(ctx, event("e1")); err != nil || dup {
		t.Fatalf("first publish: dup %v err %v", dup, err)
	}
	if dup, err := p.Publish(ctx, event("e1")); err != nil || !dup {
		t.Fatalf("resend: dup %v err %v, want a duplicate", dup, err)
	}
	if _, err := p.Publish(ctx, &triggers.CareEvent{ID: "bad"}); err == nil {
		t.Error("invalid event published")
	}
	s, err := js.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d messages stored, want 1", info.State.Msgs)
	}
	msg, err := s.GetLastMsgForSubject(ctx, triggers.SubjectPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	var got triggers.CareEvent
	if err := json.Unmarshal(msg.Data, &got); err != nil || got.ID != "e1" || got.Kind != triggers.AppointmentBooked {
		t.Errorf("stored event %+v (err %v)", got, err)
	}
	if msg.Subject != "priorflow.events.appointment-booked" {
		t.Errorf("subject %s", msg.Subject)
	}
}

func TestPublish_SurvivesServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := natstest.Start(t, dir)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	p, _ := jetstream.NewPublisher(js)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := p.Publish(ctx, event(id)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	srv.Shutdown()

	srv2 := natstest.Start(t, dir)
	_, js2 := srv2.Connect(t)
	s, err := js2.Stream(ctx, jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, njs.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("%d events after restart, want 3", info.State.Msgs)
	}
}
