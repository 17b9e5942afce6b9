package frames

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Tags the walker knows, as group<<16 | element.
const (
	tagTransferSyntaxUID = 0x00020010
	tagPixelData         = 0x7FE00010
	tagItem              = 0xFFFEE000
	tagItemDelimitation  = 0xFFFEE00D
	tagSeqDelimitation   = 0xFFFEE0DD
)

// undefinedLength is the Value Length of a sequence, item or encapsulated
// pixel data whose end is marked by a delimiter (PS3.5 7.1.1).
const undefinedLength = 0xFFFFFFFF

// maxDepth bounds the nesting of sequences the walker follows.
const maxDepth = 64

// cursor reads small pieces of an io.ReaderAt of known size through a
// buffer, so that walking element headers costs few reads.
type cursor struct {
	r      io.ReaderAt
	size   int64
	buf    [4096]byte
	bufOff int64
	bufLen int
}

func newCursor(r io.ReaderAt, size int64) *cursor { return &cursor{r: r, size: size, bufOff: -1} }

// peek returns n (at most len(buf)) bytes at off, valid until the next call.
func (c *cursor) peek(off int64, n int) ([]byte, error) {
	if off < 0 || n > len(c.buf) || off > c.size-int64(n) {
		return nil, fmt.Errorf("%w: %d bytes at offset %d overrun %d", ErrTruncated, n, off, c.size)
	}
	if c.bufOff >= 0 && off >= c.bufOff && off+int64(n) <= c.bufOff+int64(c.bufLen) {
		i := int(off - c.bufOff)
		return c.buf[i : i+n], nil
	}
	want := int64(len(c.buf))
	if rest := c.size - off; rest < want {
		want = rest
	}
	got, err := c.r.ReadAt(c.buf[:want], off)
	if int64(got) < int64(n) {
		c.bufOff = -1
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: reading at offset %d: %v", ErrTruncated, off, err)
	}
	c.bufOff, c.bufLen = off, got
	return c.buf[:n], nil
}

// header is the header of one data element or item (PS3.5 7.1.2, 7.5).
type header struct {
	tag    uint32
	vr     string // "" for implicit VR and for items and delimiters
	length uint32
	size   int64 // bytes of the header itself
}

// longVR reports whether an explicit VR has a 4-byte Value Length
// (PS3.5 7.1.2, Table 7.1-1).
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// readHeader reads the element header at off.
func (c *cursor) readHeader(off int64, enc encoding) (header, error) {
	b, err := c.peek(off, 8)
	if err != nil {
		return header{}, err
	}
	h := header{tag: uint32(enc.order.Uint16(b))<<16 | uint32(enc.order.Uint16(b[2:])), size: 8}
	if h.tag>>16 == 0xFFFE || enc.implicit {
		h.length = enc.order.Uint32(b[4:])
		return h, nil
	}
	h.vr = string(b[4:6])
	if !longVR(h.vr) {
		h.length = uint32(enc.order.Uint16(b[6:]))
		return h, nil
	}
	b, err = c.peek(off, 12)
	if err != nil {
		return header{}, err
	}
	h.length, h.size = enc.order.Uint32(b[8:]), 12
	return h, nil
}

// skipValue returns the offset just after the value of the element whose
// header h starts at off, following undefined-length sequences and items.
func (c *cursor) skipValue(off int64, h header, enc encoding, depth int) (int64, error) {
	start := off + h.size
	if h.length != undefinedLength {
		end := start + int64(h.length)
		if end > c.size {
			return 0, fmt.Errorf("%w: element %s of %d bytes at offset %d overruns the stream", ErrTruncated, tagString(h.tag), h.length, off)
		}
		return end, nil
	}
	if h.vr == "UN" {
		// An UN value of undefined length is a sequence encoded in implicit
		// VR little endian (PS3.5 6.2.2).
		enc = encoding{implicit: true, order: binary.LittleEndian}
	}
	return c.skipItems(start, enc, depth+1)
}

// skipItems skips the items of an undefined-length sequence or encapsulated
// value up to and including its Sequence Delimitation Item (PS3.5 7.5).
func (c *cursor) skipItems(off int64, enc encoding, depth int) (int64, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	for {
		h, err := c.readHeader(off, enc)
		if err != nil {
			return 0, err
		}
		switch h.tag {
		case tagSeqDelimitation:
			return off + h.size, nil
		case tagItem:
			if h.length != undefinedLength {
				if off, err = c.skipValue(off, h, enc, depth); err != nil {
					return 0, err
				}
				continue
			}
			if off, err = c.skipElements(off+h.size, enc, depth+1); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("%w: %s at offset %d where an item was expected", ErrMalformed, tagString(h.tag), off)
		}
	}
}

// skipElements skips the elements of an undefined-length item up to and
// including its Item Delimitation Item.
func (c *cursor) skipElements(off int64, enc encoding, depth int) (int64, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	for {
		h, err := c.readHeader(off, enc)
		if err != nil {
			return 0, err
		}
		if h.tag == tagItemDelimitation {
			return off + h.size, nil
		}
		if off, err = c.skipValue(off, h, enc, depth); err != nil {
			return 0, err
		}
	}
}

// findPixelData walks the top-level elements from off and returns the
// offset and header of Pixel Data (7FE0,0010).
func (c *cursor) findPixelData(off int64, enc encoding) (int64, header, error) {
	for off < c.size {
		h, err := c.readHeader(off, enc)
		if err != nil {
			return 0, header{}, err
		}
		switch {
		case h.tag == tagPixelData:
			return off, h, nil
		case h.tag>>16 == 0xFFFE:
			return 0, header{}, fmt.Errorf("%w: %s at offset %d outside a sequence", ErrMalformed, tagString(h.tag), off)
		case h.tag > tagPixelData:
			// Elements are in ascending tag order (PS3.5 7.1); only
			// padding and signatures follow Pixel Data.
			return 0, header{}, ErrNoPixelData
		}
		if off, err = c.skipValue(off, h, enc, 0); err != nil {
			return 0, header{}, err
		}
	}
	return 0, header{}, ErrNoPixelData
}

// readMeta reads the File Meta Information (PS3.10 7.1), which follows the
// 128-byte preamble and "DICM" and is always explicit VR little endian, and
// returns the Transfer Syntax UID and the offset where the data set starts.
func (c *cursor) readMeta() (string, int64, error) {
	b, err := c.peek(128, 4)
	if err != nil {
		return "", 0, err
	}
	if string(b) != "DICM" {
		return "", 0, fmt.Errorf("%w: no DICM prefix", ErrMalformed)
	}
	enc := encoding{order: binary.LittleEndian}
	off := int64(132)
	ts := ""
	for off < c.size {
		h, err := c.readHeader(off, enc)
		if err != nil {
			return "", 0, err
		}
		if h.tag>>16 != 0x0002 {
			break
		}
		if h.length == undefinedLength {
			return "", 0, fmt.Errorf("%w: meta element %s of undefined length", ErrMalformed, tagString(h.tag))
		}
		if h.tag == tagTransferSyntaxUID {
			if h.length > 256 {
				return "", 0, fmt.Errorf("%w: Transfer Syntax UID of %d bytes", ErrMalformed, h.length)
			}
			v, err := c.peek(off+h.size, int(h.length))
			if err != nil {
				return "", 0, err
			}
			ts = strings.TrimRight(string(v), " \x00")
		}
		if off, err = c.skipValue(off, h, enc, 0); err != nil {
			return "", 0, err
		}
	}
	if ts == "" {
		return "", 0, fmt.Errorf("%w: no Transfer Syntax UID in the File Meta Information", ErrMalformed)
	}
	return ts, off, nil
}

func tagString(t uint32) string { return fmt.Sprintf("(%04X,%04X)", t>>16, t&0xFFFF) }
