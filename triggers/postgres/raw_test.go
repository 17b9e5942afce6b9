package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/postgres"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestRawStore_SaveIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := postgres.NewRawStore(dbtest.NewPool(t))
	if err != nil {
		t.Fatal(err)
	}
	msg := &triggers.RawMessage{ID: "e1", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Remote: "127.0.0.1:5000",
		SendingApplication: "RIS", SendingFacility: "UH", MessageType: "ORM^O01", ControlID: "C1", Data: []byte("MSH|^~\\&|RIS\r")}
	if ins, err := s.Save(ctx, msg); err != nil || !ins {
		t.Fatalf("first Save = %v, %v; want inserted", ins, err)
	}
	second := *msg
	second.Data = []byte("something else")
	if ins, err := s.Save(ctx, &second); err != nil || ins {
		t.Fatalf("second Save = %v, %v; want kept the first", ins, err)
	}
	got, err := s.Get(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, msg.Data) || !got.ReceivedAt.Equal(msg.ReceivedAt) || got.Remote != msg.Remote ||
		got.SendingApplication != "RIS" || got.SendingFacility != "UH" || got.MessageType != "ORM^O01" || got.ControlID != "C1" {
		t.Errorf("Get = %+v, want %+v", got, msg)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
}

func TestNewRawStore_RefusesNilPool(t *testing.T) {
	if _, err := postgres.NewRawStore(nil); err == nil {
		t.Error("NewRawStore(nil) succeeded")
	}
}
