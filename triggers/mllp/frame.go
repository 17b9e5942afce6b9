// Package mllp implements the Minimal Lower Layer Protocol, the framing HL7
// v2 messages travel in over TCP (HL7 Version 3 Standard: Transport
// Specification - MLLP, Release 2, also HL7 v2.5.1 Appendix C.4), and a TCP
// server that answers each message with the acknowledgement its handler
// returns. The server can restrict senders to an allow-list of networks and
// run MLLP inside TLS, mutual TLS included; MLLP itself has no security.
//
// A frame is a start block (0x0B), the message, and an end block (0x1C 0x0D).
// The package moves bytes only; it neither parses HL7 nor logs message
// content, which carries patient data.
package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MLLP block characters (MLLP Release 2, section 2.1).
const (
	StartBlock     byte = 0x0B // <VT>
	EndBlock       byte = 0x1C // <FS>
	CarriageReturn byte = 0x0D // <CR>, follows EndBlock
)

// DefaultMaxMessageSize is the frame size limit when none is configured:
// 1 MiB, far above ordinary ADT, ORM or SIU messages, low enough that a
// broken or hostile peer cannot exhaust memory.
const DefaultMaxMessageSize = 1 << 20

// Frame errors. Test for them with errors.Is.
var (
	// ErrFrameTooLarge means a frame's content exceeded the size limit. The
	// reader has skipped the rest of the frame, so the next frame can be read.
	ErrFrameTooLarge = errors.New("mllp: frame too large")
	// ErrTruncatedFrame means a frame ended before its end block: the
	// connection closed, or a new start block began before the end block.
	ErrTruncatedFrame = errors.New("mllp: truncated frame")
	// ErrInvalidContent means a message to send contains a block character
	// and cannot be framed unambiguously.
	ErrInvalidContent = errors.New("mllp: message contains a block character")
)

// FrameTooLargeError reports an oversize frame. It wraps ErrFrameTooLarge.
type FrameTooLargeError struct {
	Limit int // the configured limit
	Size  int // the frame's content size
	// Head holds the first bytes of the frame (up to HeadSize), enough for
	// an MSH segment in ordinary messages, so that a caller can still build
	// a reject acknowledgement. It is message content: never log it.
	Head []byte
}

// HeadSize is how much of an oversize frame FrameTooLargeError keeps.
const HeadSize = 4096

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("mllp: frame of %d bytes exceeds limit of %d bytes", e.Size, e.Limit)
}

func (e *FrameTooLargeError) Unwrap() error { return ErrFrameTooLarge }

// Reader reads MLLP frames from a byte stream.
type Reader struct {
	br  *bufio.Reader
	max int
	// inFrame is set when a start block has been consumed but the frame's
	// content not yet read: after a truncated frame that ended in a new
	// start block, and between waitStart and readBody.
	inFrame bool
}

// NewReader returns a Reader limiting frame content to maxSize bytes;
// maxSize <= 0 means DefaultMaxMessageSize.
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxSize}
}

// ReadMessage returns the content of the next frame. Bytes outside frames
// are skipped: MLLP Release 2 does not allow them, but senders that pad
// with newlines or resend after a broken connection produce them, and
// skipping cannot misread a message. An end block without the final CR is
// accepted for the same reason.
//
// It returns io.EOF when the stream ends outside a frame, ErrTruncatedFrame
// when it ends inside one, and a *FrameTooLargeError for a frame over the
// limit; after the last two, reading can continue with the next frame.
func (r *Reader) ReadMessage() ([]byte, error) {
	if err := r.waitStart(); err != nil {
		return nil, err
	}
	return r.readBody()
}

// waitStart skips to just after the next start block.
func (r *Reader) waitStart() error {
	if r.inFrame {
		return nil
	}
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return err
		}
		if c == StartBlock {
			r.inFrame = true
			return nil
		}
	}
}

// readBody reads a frame's content after its start block. It scans the
// buffered bytes for the next block character before consuming them, so a
// start block inside a frame can be left in place for the next frame.
func (r *Reader) readBody() ([]byte, error) {
	r.inFrame = false
	var buf []byte
	size := 0
	for {
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("%w: %w", ErrTruncatedFrame, err)
			}
		}
		avail, _ := r.br.Peek(r.br.Buffered())
		i := bytes.IndexAny(avail, "\x0b\x1c")
		data := avail
		if i >= 0 {
			data = avail[:i]
		}
		if size+len(data) <= r.max {
			buf = append(buf, data...)
		} else if len(buf) < HeadSize {
			// Over the limit: keep only a head for the error.
			buf = append(buf, data[:min(len(data), HeadSize-len(buf))]...)
		}
		size += len(data)
		_, _ = r.br.Discard(len(data))
		if i < 0 {
			continue
		}
		if c, _ := r.br.ReadByte(); c == StartBlock {
			// A new frame started before this one ended; read it next.
			r.inFrame = true
			return nil, fmt.Errorf("%w: start block inside frame", ErrTruncatedFrame)
		}
		r.skipCR()
		if size > r.max {
			head := buf[:min(len(buf), HeadSize)]
			return nil, &FrameTooLargeError{Limit: r.max, Size: size, Head: bytes.Clone(head)}
		}
		if buf == nil {
			buf = []byte{}
		}
		return buf, nil
	}
}

// skipCR consumes the CR after an end block if it has already arrived.
// It never waits for it: a sender that omits the CR and waits for its
// acknowledgement would otherwise deadlock with us. A CR arriving later is
// skipped as a byte between frames.
func (r *Reader) skipCR() {
	if r.br.Buffered() == 0 {
		return
	}
	if c, _ := r.br.ReadByte(); c != CarriageReturn {
		_ = r.br.UnreadByte()
	}
}

// WriteFrame writes msg as one MLLP frame in a single Write call, so that a
// frame is never interleaved with another writer's bytes. It refuses
// content containing a start or end block, which would corrupt the framing.
func WriteFrame(w io.Writer, msg []byte) error {
	if bytes.IndexByte(msg, StartBlock) >= 0 || bytes.IndexByte(msg, EndBlock) >= 0 {
		return ErrInvalidContent
	}
	frame := make([]byte, 0, len(msg)+3)
	frame = append(frame, StartBlock)
	frame = append(frame, msg...)
	frame = append(frame, EndBlock, CarriageReturn)
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("mllp: write frame: %w", err)
	}
	return nil
}
