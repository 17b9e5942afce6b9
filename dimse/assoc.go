package dimse

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxPDULength = 256 << 10
	DefaultIdleTimeout  = time.Minute
)

// Config is what an association needs besides the peer's address.
type Config struct {
	// CallingAE is this side's AE title, CalledAE the peer's (PS3.8
	// 9.3.2; see CheckAETitle).
	CallingAE, CalledAE string
	// MaxPDULength is the largest P-DATA-TF this side takes (default
	// DefaultMaxPDULength); it bounds the memory of a read.
	MaxPDULength uint32
	// IdleTimeout bounds every wait for the peer: the connection (at most
	// 10 s), the association's acceptance, and each read or write of a PDU
	// (default DefaultIdleTimeout). A transfer that keeps moving is not
	// bounded.
	IdleTimeout time.Duration
	// Dial opens the connection; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxDialTimeout bounds the wait for a TCP connection, whatever the idle
// timeout: a retrieval may allow minutes of silence mid-transfer, but a
// peer that takes more than this to accept a connection is down.
const maxDialTimeout = 10 * time.Second

// minPeerMaxLength is the least maximum length accepted from a peer: no
// real implementation announces less, and a few bytes per PDU would only
// make every message thousands of PDUs.
const minPeerMaxLength = 256

// ErrTimeout: the peer sent nothing for the idle timeout.
var ErrTimeout = errors.New("DICOM peer silent")

// errReleaseRQ: the peer asked to release the association where a
// message was expected; a protocol error but between a server's messages.
var errReleaseRQ = fmt.Errorf("%w: A-RELEASE-RQ where a message was expected", ErrProtocol)

// ErrNoContext: the peer accepted none of the presentation contexts an
// operation needs.
var ErrNoContext = errors.New("no presentation context accepted")

// CheckAETitle returns what is wrong with an AE title (PS3.5 6.2, AE):
// 1 to 16 characters of the default character repertoire without
// backslash or control characters, not all spaces.
func CheckAETitle(ae string) error {
	if len(ae) == 0 || len(ae) > 16 {
		return fmt.Errorf("AE title %q: want 1 to 16 characters", ae)
	}
	blank := true
	for i := 0; i < len(ae); i++ {
		c := ae[i]
		if c < 0x20 || c > 0x7E || c == '\\' {
			return fmt.Errorf("AE title %q: only printable ASCII without backslash", ae)
		}
		if c != ' ' {
			blank = false
		}
	}
	if blank {
		return fmt.Errorf("AE title of spaces only")
	}
	return nil
}

// PresentationContext is one presentation context of an association
// (PS3.8 7.1.1.13): an abstract syntax (a SOP class) and the transfer
// syntaxes proposed for it; Associate fills in the result.
type PresentationContext struct {
	// ID is odd, from 1 to 255.
	ID               byte
	AbstractSyntax   string
	TransferSyntaxes []string
	// SCPRole: this side is the SCP of the SOP class (the storage SOP
	// classes of a C-GET), proposed by role selection (PS3.7 D.3.3.4).
	SCPRole bool

	// Accepted and TransferSyntax are the peer's answer; Result its
	// reason when not accepted (PS3.8 9.3.3.2).
	Accepted       bool
	TransferSyntax string
	Result         byte
}

// Association is an established DICOM association, used by one goroutine
// at a time. Its context bounds its whole life: when the context ends,
// every read and write fails with the context's cause.
type Association struct {
	conn     net.Conn
	br       *bufio.Reader
	cfg      Config
	ctx      context.Context
	stop     func() bool
	contexts map[byte]*PresentationContext
	// peerMax is the peer's maximum P-DATA-TF length (0: none).
	peerMax uint32
	msgID   uint16
	// Read state: the P-DATA-TF being read, the next of its PDVs, and the
	// data set of the last message read, which the next read drains.
	buf  []byte
	pdvs []pdv
	next int
	data *dataReader
}

// Associate opens a connection to addr (host:port) and negotiates an
// association with contexts. It returns an error when the peer rejects
// the association (*RejectedError) or accepts none of the contexts
// (ErrNoContext); otherwise the contexts say which were accepted.
func Associate(ctx context.Context, addr string, cfg Config, contexts []PresentationContext) (*Association, error) {
	if err := CheckAETitle(cfg.CallingAE); err != nil {
		return nil, fmt.Errorf("dimse: calling %w", err)
	}
	if err := CheckAETitle(cfg.CalledAE); err != nil {
		return nil, fmt.Errorf("dimse: called %w", err)
	}
	if len(contexts) == 0 || len(contexts) > 128 {
		return nil, fmt.Errorf("dimse: %d presentation contexts (1 to 128)", len(contexts))
	}
	if cfg.MaxPDULength == 0 {
		cfg.MaxPDULength = DefaultMaxPDULength
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	byID := map[byte]*PresentationContext{}
	for i := range contexts {
		pc := &contexts[i]
		if pc.ID%2 == 0 || byID[pc.ID] != nil || pc.AbstractSyntax == "" || len(pc.TransferSyntaxes) == 0 {
			return nil, fmt.Errorf("dimse: presentation context %d: want a unique odd ID, an abstract syntax and transfer syntaxes", pc.ID)
		}
		byID[pc.ID] = pc
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, min(cfg.IdleTimeout, maxDialTimeout))
	conn, err := dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dimse: connect: %w", err)
	}
	a := &Association{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), cfg: cfg, ctx: ctx, contexts: byID}
	a.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	if err := a.negotiate(contexts); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *Association) negotiate(contexts []PresentationContext) error {
	rq := associateRQ{calledAE: a.cfg.CalledAE, callingAE: a.cfg.CallingAE, contexts: contexts,
		maxLength: a.cfg.MaxPDULength, implementationUID: ImplementationClassUID, implementationName: ImplementationVersionName}
	if err := a.writePDU(pduAssociateRQ, rq.marshal()); err != nil {
		return fmt.Errorf("dimse: associate: %w", a.alert(err))
	}
	p, err := a.readPDU()
	if err != nil {
		return fmt.Errorf("dimse: associate: %w", err)
	}
	switch p.typ {
	case pduAssociateAC:
	case pduAssociateRJ:
		return fmt.Errorf("dimse: %w", &RejectedError{Permanent: p.body[1] == 1, Source: p.body[2], Reason: p.body[3]})
	case pduAbort:
		return fmt.Errorf("dimse: associate: %w", &AbortedError{Source: p.body[2], Reason: p.body[3]})
	default:
		return fmt.Errorf("dimse: associate: %w: PDU type 0x%02X in answer to A-ASSOCIATE-RQ", ErrProtocol, p.typ)
	}
	ac, err := parseAssociateAC(p.body)
	if err != nil {
		a.abort()
		return fmt.Errorf("dimse: associate: %w", err)
	}
	if ac.maxLength != 0 && ac.maxLength < minPeerMaxLength {
		a.abort()
		return fmt.Errorf("dimse: associate: %w: the peer's maximum length %d is too small", ErrProtocol, ac.maxLength)
	}
	a.peerMax = ac.maxLength
	accepted := false
	for i := range contexts {
		pc := &contexts[i]
		r, ok := ac.results[pc.ID]
		if !ok {
			pc.Result = 2 // no answer: treat as rejected without reason
			continue
		}
		pc.Result = r.result
		pc.Accepted = r.result == 0 && r.transferSyntax != ""
		if pc.Accepted {
			pc.TransferSyntax = r.transferSyntax
			accepted = true
		}
	}
	if !accepted {
		a.abort()
		return fmt.Errorf("dimse: associate: %w", ErrNoContext)
	}
	return nil
}

// alert returns the TLS alert the peer sent before it closed the
// connection, in place of err, the failed write that found it closed. In
// TLS 1.3 the server checks the client's certificate after the client's
// handshake has ended, so a refused certificate shows only at the first
// write, as a reset, while the alert that says why waits to be read.
func (a *Association) alert(err error) error {
	if _, ok := a.conn.(*tls.Conn); !ok {
		return err
	}
	_ = a.conn.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	if _, rerr := a.conn.Read(b[:]); isTLSAlert(rerr) {
		return rerr
	}
	return err
}

// context returns the accepted context of abstract syntax sop.
func (a *Association) context(sop string) (*PresentationContext, error) {
	for id := 1; id < 256; id += 2 {
		if pc := a.contexts[byte(id)]; pc != nil && pc.Accepted && pc.AbstractSyntax == sop && !pc.SCPRole {
			return pc, nil
		}
	}
	return nil, fmt.Errorf("dimse: %w for %s", ErrNoContext, sop)
}

// Release ends the association orderly (A-RELEASE, PS3.8 7.2) and closes
// the connection.
func (a *Association) Release() error {
	defer a.close()
	if err := a.drain(); err != nil {
		return err
	}
	if err := a.writePDU(pduReleaseRQ, make([]byte, 4)); err != nil {
		return fmt.Errorf("dimse: release: %w", err)
	}
	for {
		p, err := a.readPDU()
		if err != nil {
			return fmt.Errorf("dimse: release: %w", err)
		}
		switch p.typ {
		case pduReleaseRP:
			return nil
		case pduPData:
			// A late response of an operation given up on; skipped.
		case pduReleaseRQ:
			// A release collision (PS3.8 7.2): the requestor answers.
			if err := a.writePDU(pduReleaseRP, make([]byte, 4)); err != nil {
				return fmt.Errorf("dimse: release: %w", err)
			}
		case pduAbort:
			return fmt.Errorf("dimse: release: %w", &AbortedError{Source: p.body[2], Reason: p.body[3]})
		default:
			return fmt.Errorf("dimse: release: %w: PDU type 0x%02X", ErrProtocol, p.typ)
		}
	}
}

// Abort ends the association at once (A-ABORT, PS3.8 7.3) and closes the
// connection.
func (a *Association) Abort() {
	a.abort()
	a.close()
}

func (a *Association) abort() {
	// Written even when the context has ended: the peer should know.
	_ = a.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writePDU(a.conn, pduAbort, make([]byte, 4))
}

func (a *Association) close() {
	a.stop()
	_ = a.conn.Close()
}

// readPDU reads one PDU within the idle timeout.
func (a *Association) readPDU() (pdu, error) {
	_ = a.conn.SetReadDeadline(time.Now().Add(a.cfg.IdleTimeout))
	if a.ctx.Err() != nil {
		return pdu{}, context.Cause(a.ctx)
	}
	p, err := readPDU(a.br, a.cfg.MaxPDULength, a.buf)
	if err != nil {
		return pdu{}, a.ioError(err)
	}
	a.buf = p.body[:cap(p.body)]
	return p, nil
}

func (a *Association) writePDU(typ byte, body []byte) error {
	_ = a.conn.SetWriteDeadline(time.Now().Add(a.cfg.IdleTimeout))
	if a.ctx.Err() != nil {
		return context.Cause(a.ctx)
	}
	if err := writePDU(a.conn, typ, body); err != nil {
		return a.ioError(err)
	}
	return nil
}

// ioError names the cause of a failed read or write: the association's
// context, the idle timeout, or the connection.
func (a *Association) ioError(err error) error {
	switch {
	case a.ctx.Err() != nil:
		return context.Cause(a.ctx)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w for %s", ErrTimeout, a.cfg.IdleTimeout)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("connection closed by the peer: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// await waits for the peer's next PDU, through silences longer than the
// idle timeout for as long as busy (when not nil) reports the peer at
// work elsewhere. It only peeks: a wait that ends in the middle of a PDU
// would lose the bytes read.
func (a *Association) await(busy func() bool) error {
	if a.next < len(a.pdvs) || a.data != nil || busy == nil {
		return nil
	}
	for {
		_ = a.conn.SetReadDeadline(time.Now().Add(a.cfg.IdleTimeout))
		if a.ctx.Err() != nil {
			return context.Cause(a.ctx)
		}
		_, err := a.br.Peek(1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || !busy() {
			return a.ioError(err)
		}
	}
}

// nextPDV returns the next PDV of the P-DATA-TF stream. Its data is valid
// until the next call.
func (a *Association) nextPDV() (pdv, error) {
	for a.next >= len(a.pdvs) {
		p, err := a.readPDU()
		if err != nil {
			return pdv{}, err
		}
		switch p.typ {
		case pduPData:
			if a.pdvs, err = parsePData(p.body, a.pdvs); err != nil {
				return pdv{}, err
			}
			a.next = 0
		case pduAbort:
			return pdv{}, &AbortedError{Source: p.body[2], Reason: p.body[3]}
		case pduReleaseRQ:
			return pdv{}, errReleaseRQ
		default:
			return pdv{}, fmt.Errorf("%w: PDU type 0x%02X during an operation", ErrProtocol, p.typ)
		}
	}
	v := a.pdvs[a.next]
	a.next++
	return v, nil
}

// message is a DIMSE message as read: its command and context, and a
// reader of its data set (nil when it has none), valid until the next
// message is read.
type message struct {
	cmd     *Command
	context *PresentationContext
	data    *dataReader
}

// readMessage reads the next message's command set. The data set of the
// message before, where not read to its end, is skipped.
func (a *Association) readMessage() (*message, error) {
	if err := a.drain(); err != nil {
		return nil, err
	}
	var raw []byte
	var id byte
	for {
		v, err := a.nextPDV()
		if err != nil {
			return nil, err
		}
		if !v.command {
			return nil, fmt.Errorf("%w: a data set fragment where a command was expected", ErrProtocol)
		}
		if raw == nil {
			id = v.context
		} else if v.context != id {
			return nil, fmt.Errorf("%w: command fragments on presentation contexts %d and %d", ErrProtocol, id, v.context)
		}
		if len(raw)+len(v.data) > maxCommandSet {
			return nil, fmt.Errorf("%w: command set over %d bytes", ErrProtocol, maxCommandSet)
		}
		raw = append(raw, v.data...)
		if v.last {
			break
		}
	}
	pc := a.contexts[id]
	if pc == nil || !pc.Accepted {
		return nil, fmt.Errorf("%w: a message on presentation context %d, which is not accepted", ErrProtocol, id)
	}
	cmd, err := parseCommand(raw)
	if err != nil {
		return nil, err
	}
	m := &message{cmd: cmd, context: pc}
	if cmd.HasDataSet {
		a.data = &dataReader{a: a, context: id}
		m.data = a.data
	}
	return m, nil
}

// drain skips what is left of the last message's data set.
func (a *Association) drain() error {
	if a.data == nil {
		return nil
	}
	d := a.data
	a.data = nil
	if _, err := io.Copy(io.Discard, d); err != nil {
		return err
	}
	return nil
}

// dataReader reads the data set fragments of one message.
type dataReader struct {
	a       *Association
	context byte
	cur     []byte
	done    bool
	err     error
}

func (d *dataReader) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		switch {
		case d.err != nil:
			return 0, d.err
		case d.done:
			return 0, io.EOF
		}
		v, err := d.a.nextPDV()
		switch {
		case err != nil:
			d.err = err
		case v.command || v.context != d.context:
			d.err = fmt.Errorf("%w: a command or another context's fragment inside a data set", ErrProtocol)
		default:
			d.cur, d.done = v.data, v.last
		}
	}
	n := copy(p, d.cur)
	d.cur = d.cur[n:]
	return n, nil
}

// readAll reads a data set of at most limit bytes.
func (d *dataReader) readAll(limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(d, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: a data set over %d bytes", ErrProtocol, limit)
	}
	return b, nil
}

// send writes a message: its command set, then its data set, split into
// PDVs within the peer's maximum length.
func (a *Association) send(pc *PresentationContext, cmd *Command, data []byte) error {
	cmd.HasDataSet = data != nil
	if err := a.fragments(pc.ID, 1, cmd.marshal()); err != nil {
		return err
	}
	if data != nil {
		return a.fragments(pc.ID, 0, data)
	}
	return nil
}

func (a *Association) fragments(id, command byte, b []byte) error {
	max := a.peerMax
	if max == 0 || max > a.cfg.MaxPDULength {
		// Unlimited by the peer: this side's own size keeps PDUs small.
		max = a.cfg.MaxPDULength
	}
	chunk := int(max) - 6
	for first := true; first || len(b) > 0; first = false {
		n := min(len(b), chunk)
		mch := command
		if n == len(b) {
			mch |= 2
		}
		body := make([]byte, 0, 6+n)
		body = binary.BigEndian.AppendUint32(body, uint32(n+2))
		body = append(body, id, mch)
		body = append(body, b[:n]...)
		if err := a.writePDU(pduPData, body); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// nextMessageID returns the Message ID of a new request (PS3.7 9.1.1.1).
func (a *Association) nextMessageID() uint16 {
	a.msgID++
	if a.msgID == 0 {
		a.msgID = 1
	}
	return a.msgID
}
