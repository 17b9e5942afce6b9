package dimse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	dicomuid "github.com/suyashkumar/dicom/pkg/uid"
)

// Server is a Storage SCP (PS3.4 B): it takes the objects peers send with
// C-STORE, as a PACS sends those of a C-MOVE, and answers C-ECHO. What
// becomes of an object is Store's to decide; the server only speaks the
// protocol.
type Server struct {
	// AETitle is the server's AE title; an association called to another
	// is rejected.
	AETitle string
	// Store takes each object; see StoreFunc. The request's CallingAE and
	// Move Originator say who sent it and for which C-MOVE.
	Store StoreFunc
	// MaxPDULength and IdleTimeout are as in Config; the idle timeout also
	// bounds the wait for an association request (and a TLS handshake)
	// after a peer connects.
	MaxPDULength uint32
	IdleTimeout  time.Duration
	// MaxAssociations bounds the associations served at once (default
	// 32); a peer beyond it is rejected as transient (local limit
	// exceeded), so it retries later rather than waits.
	MaxAssociations int
	// TLS, when set, serves DICOM TLS (PS3.15 B.1) only.
	TLS    *tls.Config
	Logger *slog.Logger
}

// Serve accepts associations on ln until ctx ends. Then it closes ln,
// aborts the associations still open and returns once their goroutines
// have ended; ln's error otherwise. The caller ends ctx only when nothing
// it asked a peer for is still on its way (the C-MOVEs have ended).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := CheckAETitle(s.AETitle); err != nil {
		return fmt.Errorf("dimse: server %w", err)
	}
	if s.Store == nil || s.Logger == nil {
		return errors.New("dimse: a server needs Store and Logger")
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
	}
	limit := s.MaxAssociations
	if limit <= 0 {
		limit = 32
	}
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dimse: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				s.serve(ctx, conn, false)
			default:
				s.serve(ctx, conn, true)
			}
		}()
	}
}

// serve runs one association on conn; full rejects it as over the limit.
func (s *Server) serve(ctx context.Context, conn net.Conn, full bool) {
	cfg := Config{CallingAE: s.AETitle, MaxPDULength: s.MaxPDULength, IdleTimeout: s.IdleTimeout}
	if cfg.MaxPDULength == 0 {
		cfg.MaxPDULength = DefaultMaxPDULength
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	a := &Association{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), cfg: cfg, ctx: ctx, contexts: map[byte]*PresentationContext{}}
	a.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer a.close()
	log := s.Logger.With("peer", conn.RemoteAddr().String())
	if tc, ok := conn.(*tls.Conn); ok {
		_ = conn.SetDeadline(time.Now().Add(cfg.IdleTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Warn("dimse server: TLS handshake failed", "err", err)
			return
		}
	}
	rq, err := a.accept(s.AETitle, full)
	if err != nil {
		// A connection closed before a whole request is what TCP health
		// checks and port probes do: not worth a warning each time.
		level := slog.LevelWarn
		if errors.Is(err, io.ErrUnexpectedEOF) {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "dimse server: association not established", "err", err)
		return
	}
	log = log.With("calling_ae", rq.callingAE)
	if err := a.serveMessages(s.Store); err != nil {
		log.Warn("dimse server: association aborted", "err", err)
		return
	}
	log.Debug("dimse server: association released")
}

// accept reads an A-ASSOCIATE-RQ and answers it: rejected when called to
// another AE title or when full, else accepted with the contexts it can
// serve.
func (a *Association) accept(aeTitle string, full bool) (*associateRQ, error) {
	p, err := a.readPDU()
	if err != nil {
		return nil, err
	}
	if p.typ != pduAssociateRQ {
		a.abort()
		return nil, fmt.Errorf("%w: PDU type 0x%02X where A-ASSOCIATE-RQ was expected", ErrProtocol, p.typ)
	}
	rq, err := parseAssociateRQ(p.body)
	if err != nil {
		var rj *RejectedError
		if errors.As(err, &rj) {
			a.reject(rj)
		} else {
			a.abort()
		}
		return nil, err
	}
	if full {
		rj := &RejectedError{Source: 3, Reason: 2}
		a.reject(rj)
		return nil, rj
	}
	if rq.calledAE != aeTitle {
		rj := &RejectedError{Permanent: true, Source: 1, Reason: 7}
		a.reject(rj)
		return nil, fmt.Errorf("%w (called %q)", rj, rq.calledAE)
	}
	a.cfg.CalledAE = rq.callingAE
	if rq.maxLength != 0 && rq.maxLength < minPeerMaxLength {
		a.abort()
		return nil, fmt.Errorf("%w: the peer's maximum length %d is too small", ErrProtocol, rq.maxLength)
	}
	a.peerMax = rq.maxLength
	for i := range rq.contexts {
		pc := &rq.contexts[i]
		pc.Result, pc.TransferSyntax = negotiate(pc)
		pc.Accepted = pc.Result == 0
		a.contexts[pc.ID] = pc
	}
	ac := associateRQ{calledAE: rq.calledAE, callingAE: rq.callingAE, contexts: rq.contexts, maxLength: a.cfg.MaxPDULength,
		implementationUID: ImplementationClassUID, implementationName: ImplementationVersionName}
	if err := a.writePDU(pduAssociateAC, ac.marshalAC()); err != nil {
		return nil, err
	}
	return rq, nil
}

func (a *Association) reject(rj *RejectedError) {
	result := byte(2)
	if rj.Permanent {
		result = 1
	}
	_ = a.writePDU(pduAssociateRJ, []byte{0, result, rj.Source, rj.Reason})
}

// negotiate returns the result of a proposed context (PS3.8 9.3.3.2) and
// the transfer syntax accepted: Verification, and every storage SOP class
// the DICOM dictionary knows, or a private one, in the first of the
// proposed transfer syntaxes the archive keeps; a peer proposes its
// preferred syntax first, usually the one the object is stored in.
func negotiate(pc *PresentationContext) (result byte, ts string) {
	if !storageClass(pc.AbstractSyntax) && pc.AbstractSyntax != Verification {
		return 3, "" // abstract syntax not supported
	}
	for _, t := range pc.TransferSyntaxes {
		if pc.AbstractSyntax == Verification && t != ImplicitVRLittleEndian && t != ExplicitVRLittleEndian {
			continue
		}
		if acceptedSyntax(t) {
			return 0, t
		}
	}
	return 4, "" // transfer syntaxes not supported
}

// storageClass reports whether sop is a storage SOP class: a standard
// class the dictionary names "… Storage", or a private one (outside the
// DICOM root), which a PACS may hold and send like any other.
func storageClass(sop string) bool {
	if !strings.HasPrefix(sop, "1.2.840.10008.") {
		return sop != "" && len(sop) <= 64
	}
	info, err := dicomuid.Lookup(sop)
	return err == nil && info.Type == dicomuid.TypeSOPClass && strings.HasSuffix(info.Name, " Storage") &&
		sop != "1.2.840.10008.1.3.10" // Media Storage Directory: files, not networks
}

// acceptedSyntax reports whether objects sent in ts are taken: the
// little-endian uncompressed syntaxes, Deflate, and the encapsulated ones,
// whose bytes the archive keeps as they come (PS3.5 A.4).
func acceptedSyntax(ts string) bool {
	switch ts {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5":
		return true
	}
	// JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPIP and the video syntaxes.
	info, err := dicomuid.Lookup(ts)
	return err == nil && info.Type == dicomuid.TypeTransferSyntax && strings.HasPrefix(ts, "1.2.840.10008.1.2.4.")
}

// serveMessages answers the peer's requests until it releases the
// association: C-STORE through store, C-ECHO, and any other request with
// status Unrecognized Operation. An error means the association was
// aborted, by the peer or, after a protocol error, by this side.
func (a *Association) serveMessages(store StoreFunc) error {
	for {
		m, err := a.readMessage()
		var ab *AbortedError
		switch {
		case errors.Is(err, errReleaseRQ):
			_ = a.writePDU(pduReleaseRP, make([]byte, 4))
			return nil
		case errors.As(err, &ab):
			return err
		case err != nil:
			a.abort()
			return err
		}
		c := m.cmd
		switch {
		case c.Field == CStoreRQ:
			if err := a.storeSubOperation(m, store); err != nil {
				a.abort()
				return err
			}
		case c.Field == CEchoRQ:
			err = a.send(m.context, &Command{Field: CEchoRSP, AffectedSOPClassUID: c.AffectedSOPClassUID,
				MessageIDBeingRespondedTo: c.MessageID, Status: StatusSuccess}, nil)
		case c.Field == CCancelRQ:
			// Nothing of the peer's is in progress here to cancel.
		case c.isResponse():
			a.abort()
			return fmt.Errorf("%w: %s, which answers no request of this side", ErrProtocol, fieldName(c.Field))
		default:
			err = a.send(m.context, &Command{Field: c.Field | 0x8000, AffectedSOPClassUID: c.AffectedSOPClassUID,
				MessageIDBeingRespondedTo: c.MessageID, Status: StatusUnrecognized}, nil)
		}
		if err != nil {
			a.abort()
			return err
		}
	}
}

// parseAssociateRQ reads the body of an A-ASSOCIATE-RQ. A request this
// side cannot take for what it asks (another protocol version or
// application context) is a *RejectedError; one that breaks the PDU's
// structure is an ErrProtocol.
func parseAssociateRQ(body []byte) (*associateRQ, error) {
	if len(body) < 68 {
		return nil, fmt.Errorf("%w: A-ASSOCIATE-RQ of %d bytes", ErrProtocol, len(body))
	}
	if binary.BigEndian.Uint16(body)&1 == 0 {
		return nil, &RejectedError{Permanent: true, Source: 2, Reason: 2}
	}
	rq := &associateRQ{calledAE: strings.TrimSpace(string(body[4:20])), callingAE: strings.TrimSpace(string(body[20:36]))}
	if err := CheckAETitle(rq.calledAE); err != nil {
		return nil, &RejectedError{Permanent: true, Source: 1, Reason: 7}
	}
	if err := CheckAETitle(rq.callingAE); err != nil {
		return nil, &RejectedError{Permanent: true, Source: 1, Reason: 3}
	}
	var appContext string
	ids := map[byte]bool{}
	err := eachItem(body[68:], func(typ byte, v []byte) error {
		switch typ {
		case itemApplicationContext:
			appContext = uid(v)
		case itemPresentationRQ:
			if len(v) < 4 {
				return fmt.Errorf("%w: presentation context item of %d bytes", ErrProtocol, len(v))
			}
			pc := PresentationContext{ID: v[0]}
			if pc.ID%2 == 0 || ids[pc.ID] || len(rq.contexts) == 128 {
				return fmt.Errorf("%w: presentation context ID %d (odd, unique, at most 128 contexts)", ErrProtocol, pc.ID)
			}
			ids[pc.ID] = true
			err := eachItem(v[4:], func(typ byte, v []byte) error {
				switch typ {
				case itemAbstractSyntax:
					pc.AbstractSyntax = uid(v)
				case itemTransferSyntax:
					if len(pc.TransferSyntaxes) < 64 {
						pc.TransferSyntaxes = append(pc.TransferSyntaxes, uid(v))
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			rq.contexts = append(rq.contexts, pc)
		case itemUserInformation:
			return eachItem(v, func(typ byte, v []byte) error {
				if typ == itemMaxLength {
					if len(v) != 4 {
						return fmt.Errorf("%w: maximum length item of %d bytes", ErrProtocol, len(v))
					}
					rq.maxLength = binary.BigEndian.Uint32(v)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if appContext != ApplicationContext {
		return nil, &RejectedError{Permanent: true, Source: 1, Reason: 2}
	}
	return rq, nil
}

// marshalAC encodes the answer to rq, whose contexts carry their results:
// an A-ASSOCIATE-AC (PS3.8 9.3.3) naming this side's maximum length and
// implementation.
func (rq associateRQ) marshalAC() []byte {
	// The AE titles are sent back as received (PS3.8 9.3.3.1).
	b := associateHeader(rq.calledAE, rq.callingAE)
	for _, pc := range rq.contexts {
		var sub bytes.Buffer
		sub.Write([]byte{pc.ID, 0, pc.Result, 0})
		ts := pc.TransferSyntax
		if ts == "" {
			// Present but not to be tested when not accepted (PS3.8
			// 9.3.3.2).
			ts = ImplicitVRLittleEndian
		}
		writeItem(&sub, itemTransferSyntax, []byte(ts))
		writeItem(b, itemPresentationAC, sub.Bytes())
	}
	var ui bytes.Buffer
	writeItem(&ui, itemMaxLength, binary.BigEndian.AppendUint32(nil, rq.maxLength))
	writeItem(&ui, itemImplementationUID, []byte(rq.implementationUID))
	writeItem(&ui, itemImplementationName, []byte(rq.implementationName))
	writeItem(b, itemUserInformation, ui.Bytes())
	return b.Bytes()
}
