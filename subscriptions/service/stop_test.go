package service_test

import (
	"context"
	"testing"

	"github.com/priorflow/priorflow/subscriptions/service"
)

// A service stopped before its parts have started stops cleanly: shutdown
// at any moment is not an error (the dispatcher used to report its consumer
// setup cancelled).
func TestService_StoppedBeforeItStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, service.Config{Delivery: fastDelivery()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.svc.Run(ctx); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
