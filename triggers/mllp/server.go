package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Handler processes one inbound message and returns the acknowledgement to
// send back, typically built with hl7v2.NewAck. Returning nil sends nothing;
// HL7 original mode expects an acknowledgement for every message (HL7
// v2.5.1 section 2.9.2), so that should be rare.
//
// Calls for one connection are sequential: the next frame is not read until
// the acknowledgement of the previous one has been written, since an
// original-mode sender has one message in flight per connection. Calls for
// different connections run concurrently. msg is owned by the handler.
type Handler interface {
	HandleMLLP(ctx context.Context, msg []byte, remote net.Addr) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, msg []byte, remote net.Addr) []byte

// HandleMLLP calls f.
func (f HandlerFunc) HandleMLLP(ctx context.Context, msg []byte, remote net.Addr) []byte {
	return f(ctx, msg, remote)
}

// Defaults for zero Config fields.
const (
	DefaultMaxConnections = 100
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultReadTimeout    = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
)

// Config tunes a Server. Zero fields take the defaults above.
type Config struct {
	// MaxMessageSize limits a frame's content; 0 means DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxConnections limits concurrent connections; connections over the
	// limit are accepted and closed at once, so the sender sees the refusal
	// instead of hanging in the listen backlog.
	MaxConnections int
	// IdleTimeout is how long a connection may wait for the start of its
	// next frame. Interface engines keep connections open between messages,
	// so this is long; negative means no limit.
	IdleTimeout time.Duration
	// ReadTimeout is how long a frame may take to arrive once its start
	// block has been read; negative means no limit.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an acknowledgement; negative means no
	// limit.
	WriteTimeout time.Duration
	// OnOversize, if set, is called for a frame over MaxMessageSize with the
	// frame's first bytes (see FrameTooLargeError.Head) and may return a
	// reject acknowledgement to send; the connection then stays open. If nil,
	// the connection is closed, which makes the sender retry; a handler
	// answering AR lets it move on instead.
	OnOversize func(ctx context.Context, head []byte, remote net.Addr) []byte
	// AllowedSenders, if not empty, lists the networks senders may connect
	// from. A connection from anywhere else is closed before a byte is read
	// from it, so an unknown peer can neither send a message nor start a
	// TLS handshake. IPv4-mapped IPv6 addresses are compared as IPv4. Nil
	// or empty accepts every sender. See ParseAllowList.
	AllowedSenders []netip.Prefix
	// TLS, if set, makes the server speak MLLP inside TLS: MLLP itself has
	// no security and leaves it to the layers below. With ClientAuth tls.RequireAndVerifyClientCert it is mutual
	// TLS, which authenticates the sending interface engine. The handshake
	// must finish within ReadTimeout (DefaultReadTimeout when ReadTimeout is
	// negative), so a silent peer cannot hold a connection slot. See
	// tlsfiles.Server.
	TLS *tls.Config
	// Registerer, if set, receives the server's metrics.
	Registerer prometheus.Registerer
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxMessageSize < 0 {
		errs = append(errs, errors.New("MaxMessageSize must not be negative"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, errors.New("MaxConnections must not be negative"))
	}
	for i, p := range c.AllowedSenders {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("AllowedSenders[%d] is not a valid prefix", i))
		}
	}
	if t := c.TLS; t != nil {
		if len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
			errs = append(errs, errors.New("TLS has no server certificate"))
		}
		if t.MinVersion != 0 && t.MinVersion < tls.VersionTLS12 {
			errs = append(errs, errors.New("TLS.MinVersion must be TLS 1.2 or later"))
		}
		switch {
		case t.ClientAuth == tls.RequireAnyClientCert:
			// A certificate nobody verifies authenticates nobody.
			errs = append(errs, errors.New("TLS.ClientAuth RequireAnyClientCert does not verify client certificates; use RequireAndVerifyClientCert"))
		case t.ClientAuth >= tls.VerifyClientCertIfGiven && t.ClientCAs == nil && t.GetConfigForClient == nil:
			// With no ClientCAs, crypto/tls verifies against the system
			// roots: any public CA could then vouch for a sender.
			errs = append(errs, errors.New("TLS verifies client certificates but TLS.ClientCAs is empty"))
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if len(c.AllowedSenders) > 0 {
		allowed := make([]netip.Prefix, len(c.AllowedSenders))
		for i, p := range c.AllowedSenders {
			allowed[i] = normalizePrefix(p)
		}
		c.AllowedSenders = allowed
	}
	if c.TLS != nil {
		// A private copy: the caller may go on changing theirs.
		c.TLS = c.TLS.Clone()
	}
	return c
}

// handshakeTimeout bounds a TLS handshake. It is never unlimited: a peer
// that connects and sends nothing would otherwise hold a connection slot.
func (c Config) handshakeTimeout() time.Duration {
	if c.ReadTimeout > 0 {
		return c.ReadTimeout
	}
	return DefaultReadTimeout
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("mllp: server closed")

// Server accepts MLLP connections and answers each message with its
// handler's acknowledgement.
type Server struct {
	handler Handler
	log     *slog.Logger
	cfg     Config

	// baseCtx is passed to handlers; it is canceled when Shutdown gives up
	// waiting or Close is called.
	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	wg        sync.WaitGroup // one per connection goroutine

	refused *prometheus.CounterVec // by reason
}

// Reasons a connection is refused, the values of the reason label of
// priorflow_mllp_connections_refused_total.
const (
	refusedSender    = "sender_not_allowed"
	refusedLimit     = "too_many_connections"
	refusedHandshake = "tls_handshake"
)

type serverConn struct {
	// raw is the accepted TCP connection; Shutdown and Close act on it,
	// never on nc, because closing a TLS connection writes an alert and
	// could block while holding Server.mu.
	raw net.Conn
	// nc carries the frames: raw, or the TLS connection over it. Only the
	// connection's goroutine uses it.
	nc net.Conn
	// idle is true while the connection waits for a frame's start block; only
	// idle connections are interrupted by Shutdown. Guarded by Server.mu.
	idle bool
}

// NewServer returns a server calling h for every message. It refuses a nil
// handler or logger and an invalid config.
func NewServer(h Handler, logger *slog.Logger, cfg Config) (*Server, error) {
	var errs []error
	if h == nil {
		errs = append(errs, errors.New("nil handler"))
	}
	if logger == nil {
		errs = append(errs, errors.New("nil logger"))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("mllp: new server: %w", err)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "priorflow", Subsystem: "mllp", Name: "connections_refused_total",
		Help: "MLLP connections closed without being served, by reason.",
	}, []string{"reason"})
	for _, r := range []string{refusedSender, refusedLimit, refusedHandshake} {
		refused.WithLabelValues(r) // export zeros, so alerts see the series
	}
	if r := cfg.Registerer; r != nil {
		if err := r.Register(refused); err != nil {
			return nil, fmt.Errorf("mllp: new server: metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		handler:   h,
		log:       logger,
		cfg:       cfg.withDefaults(),
		baseCtx:   ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		refused:   refused,
	}, nil
}

// Serve accepts connections on ln until Shutdown or Close, and then returns
// ErrServerClosed. It closes ln on return.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	s.log.Info("mllp listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil,
		"client_certificates", s.cfg.TLS != nil && s.cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert,
		"allowed_senders", len(s.cfg.AllowedSenders))

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("mllp: serve: %w", err)
			}
			// Running out of file descriptors and aborted handshakes are
			// transient; back off as net/http does rather than spin or quit.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("mllp accept failed; retrying", "error", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.allowed(nc.RemoteAddr()) {
			// Closed unread: the peer learns nothing but that it was refused.
			s.refused.WithLabelValues(refusedSender).Inc()
			s.log.Warn("mllp connection refused: sender not allowed", "remote", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return ErrServerClosed
		}
		if len(s.conns) >= s.cfg.MaxConnections {
			s.mu.Unlock()
			s.refused.WithLabelValues(refusedLimit).Inc()
			s.log.Warn("mllp connection refused: too many connections",
				"remote", nc.RemoteAddr().String(), "limit", s.cfg.MaxConnections)
			_ = nc.Close()
			continue
		}
		c := &serverConn{raw: nc, nc: nc}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// aLongTimeAgo is a deadline in the past, used to interrupt blocked reads.
var aLongTimeAgo = time.Unix(1, 0)

// Shutdown stops the server gracefully: it stops accepting, closes
// connections waiting for their next message, and lets connections in the
// middle of a message read it, call the handler and write the
// acknowledgement before closing. A message that was read is therefore
// always acknowledged, unless ctx ends first: then Shutdown closes every
// connection, cancels the handlers' context and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		if c.idle {
			_ = c.raw.SetReadDeadline(aLongTimeAgo)
		}
	}
	active := len(s.conns)
	s.mu.Unlock()
	s.log.Info("mllp shutting down", "connections", active)

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.closeAll()
		return fmt.Errorf("mllp: shutdown: %w", ctx.Err())
	}
}

// Close stops the server at once: listeners and connections are closed and
// the handlers' context is canceled. Messages being handled lose their
// acknowledgement; prefer Shutdown.
func (s *Server) Close() error {
	s.closeAll()
	return nil
}

func (s *Server) closeAll() {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.raw.Close()
	}
	s.mu.Unlock()
	s.cancel()
}

// deadline returns the deadline for a timeout, zero meaning none.
func deadline(d time.Duration) time.Time {
	if d < 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// serveConn runs one connection: wait for a frame, read it, hand it to the
// handler, write the acknowledgement, repeat. Never logs message content.
func (s *Server) serveConn(c *serverConn) {
	remote := c.raw.RemoteAddr()
	log := s.log.With("remote", remote.String())
	messages, interrupted := 0, 0
	defer func() {
		_ = c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
		log.Info("mllp connection closed", "messages", messages, "interrupted_frames", interrupted)
	}()
	if s.cfg.TLS != nil {
		if !s.handshake(c, log) {
			return
		}
	} else {
		log.Info("mllp connection opened")
	}
	r := NewReader(c.nc, s.cfg.MaxMessageSize)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		c.idle = true
		_ = c.nc.SetReadDeadline(deadline(s.cfg.IdleTimeout))
		s.mu.Unlock()

		err := r.waitStart()

		s.mu.Lock()
		c.idle = false
		// Set under the lock so that a Shutdown interrupt cannot be lost
		// between here and the read: from now on the frame is read to its end.
		_ = c.nc.SetReadDeadline(deadline(s.cfg.ReadTimeout))
		s.mu.Unlock()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				log.Debug("mllp connection closed by peer")
			case s.isClosed():
			case errors.Is(err, os.ErrDeadlineExceeded):
				log.Info("mllp connection idle timeout", "timeout", s.cfg.IdleTimeout)
			default:
				log.Warn("mllp read failed", "error", err)
			}
			return
		}

		msg, err := r.readBody()
		var ack []byte
		var tooLarge *FrameTooLargeError
		switch {
		case errors.As(err, &tooLarge):
			log.Warn("mllp frame too large", "size", tooLarge.Size, "limit", tooLarge.Limit)
			if s.cfg.OnOversize == nil {
				return
			}
			ack = s.cfg.OnOversize(s.baseCtx, tooLarge.Head, remote)
		case errors.Is(err, ErrTruncatedFrame) && r.inFrame:
			// The sender restarted the frame; read the new one. Warn once per
			// connection: a peer sending a run of start blocks would otherwise
			// write a log line per byte. The close line gives the count.
			if interrupted == 0 {
				log.Warn("mllp frame interrupted by a new start block")
			}
			interrupted++
			continue
		case err != nil:
			log.Warn("mllp frame not received in full", "error", err)
			return
		default:
			messages++
			start := time.Now()
			ack = s.handler.HandleMLLP(s.baseCtx, msg, remote)
			log.Debug("mllp message handled", "size", len(msg), "ack_size", len(ack), "duration", time.Since(start))
		}
		if len(ack) == 0 {
			log.Warn("mllp no acknowledgement to send")
			continue
		}
		_ = c.nc.SetWriteDeadline(deadline(s.cfg.WriteTimeout))
		if err := WriteFrame(c.nc, ack); err != nil {
			log.Warn("mllp acknowledgement not sent", "error", err, "ack_size", len(ack))
			return
		}
	}
}

// handshake runs the TLS handshake of c within the handshake timeout and
// makes c.nc the TLS connection. It logs the outcome, never any content:
// a peer speaking plain MLLP to a TLS port fails here on its first bytes.
func (s *Server) handshake(c *serverConn, log *slog.Logger) bool {
	tc := tls.Server(c.raw, s.cfg.TLS)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	// Idle as far as Shutdown is concerned: no message has been read, so
	// interrupting the handshake loses nothing.
	c.idle = true
	c.nc = tc
	_ = c.raw.SetDeadline(time.Now().Add(s.cfg.handshakeTimeout()))
	s.mu.Unlock()

	err := tc.HandshakeContext(s.baseCtx)

	s.mu.Lock()
	c.idle = false
	s.mu.Unlock()
	if err != nil {
		if !s.isClosed() {
			s.refused.WithLabelValues(refusedHandshake).Inc()
			log.Warn("mllp tls handshake failed", "error", err)
		}
		return false
	}
	// The frame loop sets read and write deadlines as it goes.
	_ = c.raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	attrs := []any{"tls", tls.VersionName(st.Version)}
	if len(st.PeerCertificates) > 0 {
		// The verified sender's name, for the audit trail.
		attrs = append(attrs, "client_subject", st.PeerCertificates[0].Subject.String())
	}
	log.Info("mllp connection opened", attrs...)
	return true
}

// allowed reports whether a sender at addr may connect.
func (s *Server) allowed(addr net.Addr) bool {
	if len(s.cfg.AllowedSenders) == 0 {
		return true
	}
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false // an address we cannot place is not on the list
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range s.cfg.AllowedSenders {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
