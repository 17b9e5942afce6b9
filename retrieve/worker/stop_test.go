package worker_test

import (
	"context"
	"testing"
)

// A worker stopped before it has started stops cleanly: shutdown at any
// moment is not an error.
func TestWorker_StoppedBeforeItStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "http://127.0.0.1:1/dicom-web", "A1", "B100")
	w := e.newWorker()
	if err := w.EnsureConsumers(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
