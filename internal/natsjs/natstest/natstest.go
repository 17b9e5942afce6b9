// Package natstest runs an embedded JetStream server per test, so tests
// never share streams.
package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs"
)

// Server is an embedded JetStream server with a store in a temp dir.
type Server struct {
	*natsjs.Embedded
	StoreDir string
}

// Start starts a server; it is shut down when the test ends. Pass a store
// dir to restart a server on the same store.
func Start(tb testing.TB, storeDir string) *Server {
	tb.Helper()
	if storeDir == "" {
		storeDir = tb.TempDir()
	}
	e, err := natsjs.StartEmbedded(natsjs.EmbeddedConfig{StoreDir: storeDir, Addr: "127.0.0.1:0", MaxMemory: 64 << 20, MaxStore: 1 << 30}, dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Shutdown)
	return &Server{Embedded: e, StoreDir: storeDir}
}

// Connect returns a connection and JetStream context, closed at the end.
func (s *Server) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js, err := natsjs.Connect(context.Background(), s.URL(), tb.Name(), dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc, js
}
