package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDU types of the DICOM Upper Layer protocol (PS3.8 9.3).
const (
	pduAssociateRQ byte = 0x01
	pduAssociateAC byte = 0x02
	pduAssociateRJ byte = 0x03
	pduPData       byte = 0x04
	pduReleaseRQ   byte = 0x05
	pduReleaseRP   byte = 0x06
	pduAbort       byte = 0x07
)

// Item types of the A-ASSOCIATE PDUs (PS3.8 9.3.2, 9.3.3, D.3.3).
const (
	itemApplicationContext byte = 0x10
	itemPresentationRQ     byte = 0x20
	itemPresentationAC     byte = 0x21
	itemAbstractSyntax     byte = 0x30
	itemTransferSyntax     byte = 0x40
	itemUserInformation    byte = 0x50
	itemMaxLength          byte = 0x51
	itemImplementationUID  byte = 0x52
	itemRoleSelection      byte = 0x54
	itemImplementationName byte = 0x55
)

// ApplicationContext is the DICOM Application Context Name (PS3.7 A.2.1).
const ApplicationContext = "1.2.840.10008.3.1.1.1"

// ErrProtocol marks a PDU or DIMSE message that breaks PS3.7 or PS3.8; the
// association is aborted.
var ErrProtocol = errors.New("DICOM protocol error")

// maxAssociatePDU bounds the A-ASSOCIATE PDUs read: the maximum length a
// peer announces covers P-DATA-TF only, and 128 presentation contexts with
// their transfer syntaxes fit in a small fraction of this.
const maxAssociatePDU = 1 << 20

// pdu is one PDU as read: its type and its body after the 6-byte header.
type pdu struct {
	typ  byte
	body []byte
}

// readPDU reads one PDU. maxBody bounds the body of a P-DATA-TF PDU (the
// maximum length this side announced); other PDUs are bounded by
// maxAssociatePDU. buf is reused when it is large enough.
func readPDU(r io.Reader, maxBody uint32, buf []byte) (pdu, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return pdu{}, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	limit := uint32(maxAssociatePDU)
	switch h[0] {
	case pduPData:
		// The maximum length bounds the PDU's variable field (PS3.8
		// D.1); a little slack spares peers that count only the data.
		limit = maxBody + 64
	case pduAssociateRQ, pduAssociateAC:
	case pduAssociateRJ, pduReleaseRQ, pduReleaseRP, pduAbort:
		if n != 4 {
			return pdu{}, fmt.Errorf("%w: PDU type 0x%02X of %d bytes, want 4", ErrProtocol, h[0], n)
		}
	default:
		return pdu{}, fmt.Errorf("%w: unknown PDU type 0x%02X", ErrProtocol, h[0])
	}
	if n > limit {
		return pdu{}, fmt.Errorf("%w: PDU type 0x%02X of %d bytes (at most %d)", ErrProtocol, h[0], n, limit)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return pdu{}, unexpectedEOF(err)
	}
	return pdu{typ: h[0], body: buf}, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writePDU writes a PDU of type typ with body.
func writePDU(w io.Writer, typ byte, body []byte) error {
	b := make([]byte, 6, 6+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[2:], uint32(len(body)))
	_, err := w.Write(append(b, body...))
	return err
}

// associateRQ is an A-ASSOCIATE-RQ (PS3.8 9.3.2).
type associateRQ struct {
	calledAE, callingAE string
	contexts            []PresentationContext
	maxLength           uint32
	implementationUID   string
	implementationName  string
}

// ImplementationClassUID identifies Priorflow's DICOM implementation
// (PS3.7 D.3.3.2), under the UUID-derived root 2.25 (PS3.5 B.2).
const ImplementationClassUID = "2.25.245337624810425305843018719340426823081"

// ImplementationVersionName names the implementation's version (at most
// 16 characters).
const ImplementationVersionName = "PRIORFLOW_1"

func (rq associateRQ) marshal() []byte {
	b := associateHeader(rq.calledAE, rq.callingAE)
	for _, pc := range rq.contexts {
		var sub bytes.Buffer
		sub.Write([]byte{pc.ID, 0, 0, 0})
		writeItem(&sub, itemAbstractSyntax, []byte(pc.AbstractSyntax))
		for _, ts := range pc.TransferSyntaxes {
			writeItem(&sub, itemTransferSyntax, []byte(ts))
		}
		writeItem(b, itemPresentationRQ, sub.Bytes())
	}
	var ui bytes.Buffer
	writeItem(&ui, itemMaxLength, binary.BigEndian.AppendUint32(nil, rq.maxLength))
	writeItem(&ui, itemImplementationUID, []byte(rq.implementationUID))
	// One role selection per SOP class (PS3.7 D.3.3.4): the storage SOP
	// classes of a C-GET, for which this side is the SCP only.
	seen := map[string]bool{}
	for _, pc := range rq.contexts {
		if !pc.SCPRole || seen[pc.AbstractSyntax] {
			continue
		}
		seen[pc.AbstractSyntax] = true
		var rs bytes.Buffer
		rs.Write(binary.BigEndian.AppendUint16(nil, uint16(len(pc.AbstractSyntax))))
		rs.WriteString(pc.AbstractSyntax)
		rs.Write([]byte{0, 1}) // SCU role: no; SCP role: yes
		writeItem(&ui, itemRoleSelection, rs.Bytes())
	}
	writeItem(&ui, itemImplementationName, []byte(rq.implementationName))
	writeItem(b, itemUserInformation, ui.Bytes())
	return b.Bytes()
}

// associateHeader begins an A-ASSOCIATE-RQ or -AC: protocol version 1, the
// AE titles, and the application context.
func associateHeader(called, calling string) *bytes.Buffer {
	var b bytes.Buffer
	b.Write([]byte{0x00, 0x01, 0x00, 0x00}) // protocol version 1, reserved
	b.WriteString(aeField(called))
	b.WriteString(aeField(calling))
	b.Write(make([]byte, 32))
	writeItem(&b, itemApplicationContext, []byte(ApplicationContext))
	return &b
}

// aeField is an AE title as the 16-byte field of an A-ASSOCIATE PDU:
// padded with spaces.
func aeField(ae string) string {
	return ae + strings.Repeat(" ", 16-len(ae))
}

func writeItem(b *bytes.Buffer, typ byte, value []byte) {
	b.WriteByte(typ)
	b.WriteByte(0)
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(value))))
	b.Write(value)
}

// associateAC is what this side reads of an A-ASSOCIATE-AC (PS3.8 9.3.3).
type associateAC struct {
	calledAE, callingAE string
	// results by presentation context ID.
	results map[byte]acResult
	// maxLength is the acceptor's maximum P-DATA-TF length, 0 for none.
	maxLength uint32
	// scpRoles are the SOP classes for which the acceptor agreed that
	// this side is the SCP.
	scpRoles          map[string]bool
	implementationUID string
}

type acResult struct {
	result         byte
	transferSyntax string
}

// parseAssociateAC reads the body of an A-ASSOCIATE-AC.
func parseAssociateAC(body []byte) (*associateAC, error) {
	if len(body) < 68 {
		return nil, fmt.Errorf("%w: A-ASSOCIATE-AC of %d bytes", ErrProtocol, len(body))
	}
	ac := &associateAC{
		calledAE:  strings.TrimSpace(string(body[4:20])),
		callingAE: strings.TrimSpace(string(body[20:36])),
		results:   map[byte]acResult{},
		scpRoles:  map[string]bool{},
	}
	err := eachItem(body[68:], func(typ byte, v []byte) error {
		switch typ {
		case itemApplicationContext:
			if s := uid(v); s != ApplicationContext {
				return fmt.Errorf("%w: application context %q", ErrProtocol, s)
			}
		case itemPresentationAC:
			if len(v) < 4 {
				return fmt.Errorf("%w: presentation context item of %d bytes", ErrProtocol, len(v))
			}
			r := acResult{result: v[2]}
			err := eachItem(v[4:], func(typ byte, v []byte) error {
				if typ == itemTransferSyntax {
					r.transferSyntax = uid(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			ac.results[v[0]] = r
		case itemUserInformation:
			return eachItem(v, func(typ byte, v []byte) error {
				switch typ {
				case itemMaxLength:
					if len(v) != 4 {
						return fmt.Errorf("%w: maximum length item of %d bytes", ErrProtocol, len(v))
					}
					ac.maxLength = binary.BigEndian.Uint32(v)
				case itemImplementationUID:
					ac.implementationUID = uid(v)
				case itemRoleSelection:
					if len(v) < 2 {
						return fmt.Errorf("%w: role selection item of %d bytes", ErrProtocol, len(v))
					}
					n := int(binary.BigEndian.Uint16(v))
					if len(v) != 2+n+2 {
						return fmt.Errorf("%w: role selection item of %d bytes for a UID of %d", ErrProtocol, len(v), n)
					}
					if v[2+n+1] == 1 {
						ac.scpRoles[uid(v[2:2+n])] = true
					}
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ac, nil
}

// eachItem calls fn with each item of b (type, reserved, 2-byte length,
// value).
func eachItem(b []byte, fn func(typ byte, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%w: item header of %d bytes", ErrProtocol, len(b))
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return fmt.Errorf("%w: item 0x%02X of %d bytes overruns its PDU", ErrProtocol, b[0], n)
		}
		if err := fn(b[0], b[4:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

// uid is a UID as a PDU carries it, without trailing padding.
func uid(v []byte) string { return strings.TrimRight(string(v), "\x00 ") }

// RejectedError is an A-ASSOCIATE-RJ (PS3.8 9.3.4).
type RejectedError struct {
	// Permanent: the peer will refuse again (result 1); otherwise
	// transient (result 2).
	Permanent      bool
	Source, Reason byte
}

func (e *RejectedError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("association rejected (%s): %s", kind, e.why())
}

// why names the reason of PS3.8 Table 9-21.
func (e *RejectedError) why() string {
	switch {
	case e.Source == 1 && e.Reason == 2:
		return "application context name not supported"
	case e.Source == 1 && e.Reason == 3:
		return "calling AE title not recognized"
	case e.Source == 1 && e.Reason == 7:
		return "called AE title not recognized"
	case e.Source == 1:
		return "by the service user, no reason given"
	case e.Source == 2 && e.Reason == 2:
		return "protocol version not supported"
	case e.Source == 2:
		return "by the service provider (ACSE), no reason given"
	case e.Source == 3 && e.Reason == 1:
		return "temporary congestion"
	case e.Source == 3 && e.Reason == 2:
		return "local limit exceeded"
	}
	return fmt.Sprintf("source %d, reason %d", e.Source, e.Reason)
}

// AbortedError is an A-ABORT from the peer (PS3.8 9.3.8).
type AbortedError struct {
	Source, Reason byte
}

func (e *AbortedError) Error() string {
	if e.Source == 0 {
		return "association aborted by the peer"
	}
	return fmt.Sprintf("association aborted by the peer's service provider (reason %d)", e.Reason)
}

// pdv is one presentation data value item of a P-DATA-TF (PS3.8 9.3.5).
type pdv struct {
	context byte
	command bool // a command fragment, else data set
	last    bool
	data    []byte
}

// parsePData splits the body of a P-DATA-TF into its PDV items.
func parsePData(body []byte, out []pdv) ([]pdv, error) {
	out = out[:0]
	for len(body) > 0 {
		if len(body) < 6 {
			return nil, fmt.Errorf("%w: PDV item header of %d bytes", ErrProtocol, len(body))
		}
		n := binary.BigEndian.Uint32(body)
		if n < 2 || uint64(n) > uint64(len(body)-4) {
			return nil, fmt.Errorf("%w: PDV item of %d bytes in %d", ErrProtocol, n, len(body)-4)
		}
		mch := body[5]
		if mch&^0x03 != 0 {
			return nil, fmt.Errorf("%w: message control header 0x%02X", ErrProtocol, mch)
		}
		out = append(out, pdv{context: body[4], command: mch&1 == 1, last: mch&2 == 2, data: body[6 : 4+n]})
		body = body[4+n:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: P-DATA-TF without a PDV item", ErrProtocol)
	}
	return out, nil
}
