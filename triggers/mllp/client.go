package mllp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client sends messages over one connection and waits for each
// acknowledgement, as an original-mode sender does (HL7 v2.5.1 section
// 2.9.2). It is meant for tests and command-line tools; a Client is safe
// for concurrent use, but sends are serialized.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *Reader
}

// NewClient wraps an established connection. maxAckSize limits the
// acknowledgement size; 0 means DefaultMaxMessageSize.
func NewClient(conn net.Conn, maxAckSize int) *Client {
	return &Client{conn: conn, r: NewReader(conn, maxAckSize)}
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	tls   *tls.Config
	local net.Addr
}

// WithTLS makes Dial speak MLLP inside TLS with cfg (see tlsfiles.Client);
// a client certificate in cfg answers a server that requires mutual TLS.
// If cfg.ServerName is empty, it is taken from the address dialed.
func WithTLS(cfg *tls.Config) DialOption {
	return func(o *dialOptions) { o.tls = cfg }
}

// WithLocalAddr makes Dial connect from addr, for a multi-homed host
// whose receiver only accepts one of its addresses (Config.AllowedSenders).
func WithLocalAddr(addr net.Addr) DialOption {
	return func(o *dialOptions) { o.local = addr }
}

// Dial connects to an MLLP server over TCP, or over TLS with WithTLS, in
// which case the handshake is done before Dial returns. With TLS 1.3 a
// server's refusal of the client certificate only shows on the first
// Send.
func Dial(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	nd := &net.Dialer{LocalAddr: o.local}
	var conn net.Conn
	var err error
	if o.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: nd, Config: o.tls}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("mllp: dial: %w", err)
	}
	return NewClient(conn, 0), nil
}

// Send frames msg, writes it and returns the content of the next frame
// received, the acknowledgement. The exchange ends when ctx does; after an
// error the connection's state is unknown and the client should be closed.
func (c *Client) Send(ctx context.Context, msg []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dl, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(dl); err != nil {
		return nil, fmt.Errorf("mllp: send: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
	defer func() {
		if stop() {
			_ = c.conn.SetDeadline(time.Time{})
		}
	}()
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, fmt.Errorf("mllp: send: %w", ctxErr(ctx, err))
	}
	ack, err := c.r.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("mllp: read acknowledgement: %w", ctxErr(ctx, err))
	}
	return ack, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Send sends one message on conn and returns the acknowledgement; see
// [Client.Send]. Bytes the peer sends after the acknowledgement are lost,
// which is harmless in original mode; use a Client for several messages.
func Send(ctx context.Context, conn net.Conn, msg []byte) ([]byte, error) {
	return NewClient(conn, 0).Send(ctx, msg)
}

// ctxErr prefers the context's error, which explains a deadline error
// caused by cancellation.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
