package mllp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// echoAck answers "ACK:" followed by the message.
var echoAck = HandlerFunc(func(_ context.Context, msg []byte, _ net.Addr) []byte {
	return append([]byte("ACK:"), msg...)
})

type testServer struct {
	*Server
	addr  string
	logs  *syncBuffer
	serve chan error
}

// startServer serves h on 127.0.0.1:0 and shuts the server down at the end
// of the test, checking that Serve returned ErrServerClosed.
func startServer(t *testing.T, h Handler, cfg Config) *testServer {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0", h, cfg)
}

// startServerOn is startServer listening on addr.
func startServerOn(t *testing.T, addr string, h Handler, cfg Config) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := NewServer(h, logger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), logs: logs, serve: make(chan error, 1)}
	go func() { ts.serve <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.serve; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

func dial(t *testing.T, addr string, opts ...DialOption) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c *Client, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Send(ctx, []byte(msg))
	if err != nil {
		t.Fatalf("Send(%q): %v", msg, err)
	}
	return string(ack)
}

// expectClosed checks that the server closes c's connection.
func expectClosed(t *testing.T, c *Client) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadMessage(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("read after close: %v, want EOF", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestNewServer_RefusesMissingDependencies(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	if _, err := NewServer(echoAck, nil, Config{}); err == nil {
		t.Error("NewServer with nil logger succeeded")
	}
	if _, err := NewServer(nil, logger, Config{}); err == nil {
		t.Error("NewServer with nil handler succeeded")
	}
	if _, err := NewServer(echoAck, logger, Config{MaxMessageSize: -1, MaxConnections: -1}); err == nil {
		t.Error("NewServer with negative limits succeeded")
	}
}

func TestServer_SeveralMessagesPerConnection(t *testing.T) {
	ts := startServer(t, echoAck, Config{})
	c := dial(t, ts.addr)
	for i := range 5 {
		msg := fmt.Sprintf("MSH|^~\\&|A|B|||||ADT^A01|%d|P|2.5\r", i)
		if got, want := send(t, c, msg), "ACK:"+msg; got != want {
			t.Errorf("ack %d = %q, want %q", i, got, want)
		}
	}
}

func TestServer_ConcurrentConnections(t *testing.T) {
	var mu sync.Mutex
	inFlight := map[string]int{}
	var overlap atomic.Bool
	h := HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
		mu.Lock()
		inFlight[remote.String()]++
		if inFlight[remote.String()] > 1 {
			overlap.Store(true)
		}
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight[remote.String()]--
			mu.Unlock()
		}()
		return echoAck(ctx, msg, remote)
	})
	ts := startServer(t, h, Config{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := dial(t, ts.addr)
			for j := range 4 {
				msg := fmt.Sprintf("conn %d msg %d", i, j)
				if got, want := send(t, c, msg), "ACK:"+msg; got != want {
					t.Errorf("ack = %q, want %q", got, want)
				}
			}
		})
	}
	wg.Wait()
	if overlap.Load() {
		t.Error("handler ran twice at once for one connection")
	}
}

func TestServer_GarbageBetweenFrames(t *testing.T) {
	ts := startServer(t, echoAck, Config{})
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("\r\nnoise" + frame("one") + "\n\n" + frame("two"))); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := NewReader(conn, 0)
	for _, want := range []string{"ACK:one", "ACK:two"} {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
	}
}

// A run of start blocks is a run of interrupted frames: the server must
// skip them, answer the frame that follows, and warn once rather than once
// per byte (the count goes on the connection's close line).
func TestServer_RunOfStartBlocks(t *testing.T) {
	ts := startServer(t, echoAck, Config{})
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	const run = 1000
	if _, err := conn.Write([]byte(strings.Repeat(vt, run) + frame("ok"))); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := NewReader(conn, 0).ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ACK:ok" {
		t.Errorf("ack = %q, want %q", got, "ACK:ok")
	}
	_ = conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ts.logs.String(), "mllp connection closed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "interrupted by a new start block"); n != 1 {
		t.Errorf("%d interruption warnings, want 1", n)
	}
	if want := fmt.Sprintf("interrupted_frames=%d", run); !strings.Contains(logs, want) {
		t.Errorf("close line lacks %s:\n%s", want, logs)
	}
}

func TestServer_OversizeFrame(t *testing.T) {
	big := "MSH|^~\\&|" + strings.Repeat("x", 200)
	t.Run("closes the connection by default", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{MaxMessageSize: 100})
		c := dial(t, ts.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ack, err := c.Send(ctx, []byte(big)); err == nil {
			t.Errorf("Send of oversize frame got ack %q", ack)
		}
	})
	t.Run("OnOversize answers and the connection goes on", func(t *testing.T) {
		var gotHead atomic.Value
		ts := startServer(t, echoAck, Config{
			MaxMessageSize: 100,
			OnOversize: func(_ context.Context, head []byte, _ net.Addr) []byte {
				gotHead.Store(string(head))
				return []byte("REJECT")
			},
		})
		c := dial(t, ts.addr)
		if got, want := send(t, c, big), "REJECT"; got != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
		if got, _ := gotHead.Load().(string); got != big {
			t.Errorf("OnOversize head has %d bytes, want the %d-byte frame", len(got), len(big))
		}
		if got, want := send(t, c, "small"), "ACK:small"; got != want {
			t.Errorf("ack after oversize = %q, want %q", got, want)
		}
	})
}

func TestServer_ShutdownWaitsForSlowHandler(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
		if string(msg) == "slow" {
			close(entered)
			<-release
		}
		return echoAck(ctx, msg, remote)
	})
	ts := startServer(t, h, Config{})
	busy := dial(t, ts.addr)
	idle := dial(t, ts.addr)
	send(t, idle, "hello") // the idle connection is registered and waiting

	ackc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ack, err := busy.Send(ctx, []byte("slow"))
		ackc <- string(ack)
		errc <- err
	}()
	<-entered

	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- ts.Shutdown(ctx)
	}()
	// The idle connection is closed while the slow message is still in
	// the handler, and Serve stops accepting.
	expectClosed(t, idle)
	if err := <-ts.serve; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	ts.serve <- ErrServerClosed // for the cleanup's check
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned %v while a handler was running", err)
	default:
	}

	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("Send during shutdown: %v", err)
	}
	if got, want := <-ackc, "ACK:slow"; got != want {
		t.Errorf("ack = %q, want %q", got, want)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	expectClosed(t, busy)
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Error("server still accepts connections after Shutdown")
	}
}

func TestServer_ShutdownGivesUpAtDeadline(t *testing.T) {
	entered := make(chan struct{})
	canceled := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
		close(entered)
		<-ctx.Done()
		close(canceled)
		return nil
	})
	ts := startServer(t, h, Config{})
	c := dial(t, ts.addr)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.Send(ctx, []byte("stuck"))
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	<-canceled // the handler's context was canceled
}

func TestServer_MaxConnections(t *testing.T) {
	ts := startServer(t, echoAck, Config{MaxConnections: 1})
	first := dial(t, ts.addr)
	send(t, first, "first") // registered
	second := dial(t, ts.addr)
	expectClosed(t, second)
	if got, want := send(t, first, "again"), "ACK:again"; got != want {
		t.Errorf("ack = %q, want %q", got, want)
	}
	if !strings.Contains(ts.logs.String(), "too many connections") {
		t.Error("refusal not logged")
	}
}

func TestServer_Timeouts(t *testing.T) {
	t.Run("idle connection is closed", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{IdleTimeout: 50 * time.Millisecond})
		expectClosed(t, dial(t, ts.addr))
	})
	t.Run("frame that never ends is dropped", func(t *testing.T) {
		var called atomic.Bool
		h := HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
			called.Store(true)
			return nil
		})
		ts := startServer(t, h, Config{ReadTimeout: 50 * time.Millisecond})
		c := dial(t, ts.addr)
		if _, err := c.conn.Write([]byte(vt + "MSH|partial")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c)
		if called.Load() {
			t.Error("handler called for a partial frame")
		}
	})
}

func TestServer_DoesNotLogContent(t *testing.T) {
	ts := startServer(t, echoAck, Config{})
	c := dial(t, ts.addr)
	send(t, c, "MSH|^~\\&|A\rPID|1||MRN-98765||DOE^JANE\r")
	_ = c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "mllp message handled") {
		t.Errorf("message not logged at all:\n%s", logs)
	}
	for _, secret := range []string{"JANE", "98765", "PID"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain message content %q:\n%s", secret, logs)
		}
	}
}

func TestSend_OneShot(t *testing.T) {
	ts := startServer(t, echoAck, Config{})
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := Send(ctx, conn, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ack), "ACK:one"; got != want {
		t.Errorf("ack = %q, want %q", got, want)
	}
}

func TestClient_Send_ContextCanceled(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
		close(entered)
		<-release
		return []byte("late")
	}), Config{})
	defer close(release)
	c := dial(t, ts.addr)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send error = %v, want context.Canceled", err)
	}
}
