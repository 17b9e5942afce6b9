// Package natsjs connects Priorflow to NATS JetStream: to an external server
// or cluster when NATS_URL is set, or to a server embedded in the process
// (nats-server/v2) that keeps its store under the data directory and also
// listens on a loopback port so that other Priorflow processes on the same
// machine (cmd/prefetcher under `make run`) can join it.
package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbeddedConfig configures the embedded server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream's file store.
	StoreDir string
	// Addr is the loopback host:port clients connect to; "127.0.0.1:0"
	// picks a free port.
	Addr string
	// MaxMemory and MaxStore bound JetStream's memory and file storage.
	MaxMemory, MaxStore int64
}

// Embedded is a NATS server running in this process.
type Embedded struct {
	srv      *server.Server
	lock     *os.File // held while srv may write the store
	stopOnce sync.Once
}

// StartEmbedded starts a JetStream-enabled NATS server in the process.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	lock, err := lockStore(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:         "priorflow-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true, // the process owns signals
		NoLog:              true,
		// One embedded server has no replicas to hold a message while the
		// page cache is unflushed: flush every write before acknowledging,
		// so that an HL7 AA survives a machine crash, not only a process
		// crash.
		SyncAlways: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		lock.Close()
		return nil, fmt.Errorf("embedded nats: not ready after 15s (is %s taken?)", cfg.Addr)
	}
	log.Info("embedded NATS JetStream started", "url", srv.ClientURL(), "store", cfg.StoreDir)
	return &Embedded{srv: srv, lock: lock}, nil
}

// URL is the client URL of the embedded server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server after its clients have drained; JetStream
// flushes its store, so no acknowledged message is lost. Only then is the
// store directory released to another server.
func (e *Embedded) Shutdown() {
	e.stopOnce.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.lock.Close()
	})
}

// Connect connects to url with reconnects that outlast a server restart.
func Connect(ctx context.Context, url, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", Redact(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// Redact hides the credentials of a NATS URL, for logs.
func Redact(u string) string {
	if i := indexAt(u); i >= 0 {
		if j := indexScheme(u); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}

func indexAt(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			return i
		}
	}
	return -1
}

func indexScheme(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i:i+3] == "://" {
			return i
		}
	}
	return -1
}
