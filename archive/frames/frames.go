// Package frames extracts the frames of a stored DICOM Part 10 object
// (PS3.10) for the WADO-RS frame resources (PS3.18 10.4.1.1.3,
// /frames/{n}): the raw bytes of each frame for native transfer syntaxes
// (PS3.5 8.1.1, A.1 to A.5), and the fragments of each frame for
// encapsulated ones (PS3.5 A.4).
//
// Open walks element headers up to Pixel Data without reading values, scans
// the item headers of encapsulated Pixel Data, and reads the attributes it
// needs with dicomheader from the bytes before Pixel Data. A frame's bytes
// are read only when the frame is asked for, so serving one frame of a large
// multi-frame object reads that frame alone. Deflated objects (PS3.5 A.5) are
// the exception: their data set is inflated into memory first.
package frames

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// MaxInflatedSize bounds the inflated data set of a Deflated Explicit VR
// Little Endian object (PS3.5 A.5), against decompression bombs.
const MaxInflatedSize = 1 << 30

// PixelData is the pixel data of one stored object, split into frames. It
// is safe for concurrent use if the io.ReaderAt it was opened on is.
type PixelData struct {
	// Header holds the object's attributes, Image Pixel Module (PS3.3
	// C.7.6.3) included. Its NumberOfFrames is the number of frames.
	Header *dicomheader.Header
	// TransferSyntaxUID is the object's Transfer Syntax.
	TransferSyntaxUID string
	// Encapsulated is true when Pixel Data is encapsulated (PS3.5 A.4).
	Encapsulated bool

	r         io.ReaderAt
	bigEndian bool
	frameLen  int64    // native: bytes per frame
	first     int64    // native: offset of frame 1
	frags     []extent // encapsulated
	spans     []span   // encapsulated: fragments of each frame
}

// Open reads the pixel data layout of the DICOM Part 10 object of size bytes
// in r. Errors wrap ErrMalformed, ErrTruncated, ErrNoPixelData or
// ErrUnsupported, or the errors of dicomheader.Parse.
func Open(r io.ReaderAt, size int64) (*PixelData, error) {
	p, err := open(r, size)
	if err != nil {
		return nil, fmt.Errorf("frames.Open: %w", err)
	}
	return p, nil
}

// Read reads a whole DICOM Part 10 stream into memory and opens it. Prefer
// Open on an io.ReaderAt, which reads only what it needs.
func Read(r io.Reader) (*PixelData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("frames.Read: %w", err)
	}
	p, err := open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("frames.Read: %w", err)
	}
	return p, nil
}

func open(r io.ReaderAt, size int64) (*PixelData, error) {
	c := newCursor(r, size)
	ts, dataStart, err := c.readMeta()
	if err != nil {
		return nil, err
	}
	var h *dicomheader.Header
	if ts == DeflatedExplicitVRLittleEndian {
		// The data set is a raw deflate stream (PS3.5 A.5); inflate it
		// and walk it in memory.
		h, err = dicomheader.Parse(io.NewSectionReader(r, 0, size), size)
		if err != nil {
			return nil, err
		}
		ds, err := inflate(io.NewSectionReader(r, dataStart, size-dataStart))
		if err != nil {
			return nil, err
		}
		r, size, dataStart = bytes.NewReader(ds), int64(len(ds)), 0
		c = newCursor(r, size)
	}
	enc := encodingOf(ts)
	pixOff, ph, err := c.findPixelData(dataStart, enc)
	if err != nil {
		return nil, err
	}
	if h == nil {
		// Parse the header from the bytes before Pixel Data only.
		if h, err = dicomheader.Parse(io.NewSectionReader(r, 0, pixOff), pixOff); err != nil {
			return nil, err
		}
	}
	p := &PixelData{Header: h, TransferSyntaxUID: ts, r: r, bigEndian: enc.order == binary.BigEndian}
	if h.NumberOfFrames < 1 || h.Rows < 1 || h.Columns < 1 {
		return nil, fmt.Errorf("%w: Pixel Data with %d frames of %d×%d", ErrMalformed, h.NumberOfFrames, h.Columns, h.Rows)
	}
	valueOff := pixOff + ph.size
	if ph.length == undefinedLength {
		if IsNative(ts) {
			return nil, fmt.Errorf("%w: encapsulated Pixel Data in native transfer syntax %s", ErrMalformed, ts)
		}
		return p, p.openEncapsulated(c, valueOff)
	}
	if !IsNative(ts) {
		return nil, fmt.Errorf("%w: native Pixel Data in encapsulated transfer syntax %s", ErrMalformed, ts)
	}
	return p, p.openNative(valueOff, int64(ph.length), size)
}

func (p *PixelData) openNative(off, length, size int64) error {
	h := p.Header
	if h.BitsAllocated < 1 || h.SamplesPerPixel < 1 {
		return fmt.Errorf("%w: Bits Allocated %d, Samples per Pixel %d", ErrMalformed, h.BitsAllocated, h.SamplesPerPixel)
	}
	bits := int64(h.Rows) * int64(h.Columns) * int64(h.SamplesPerPixel) * int64(h.BitsAllocated)
	if bits%8 != 0 && h.NumberOfFrames > 1 {
		return fmt.Errorf("%w: frames of %d bits do not start on a byte", ErrUnsupported, bits)
	}
	p.frameLen, p.first = (bits+7)/8, off
	if want := p.frameLen * int64(h.NumberOfFrames); length < want {
		return fmt.Errorf("%w: Pixel Data holds %d bytes, %d frames of %d×%d×%d×%d bits need %d",
			ErrMalformed, length, h.NumberOfFrames, h.Rows, h.Columns, h.SamplesPerPixel, h.BitsAllocated, want)
	}
	if off+length > size {
		return fmt.Errorf("%w: Pixel Data of %d bytes overruns the stream", ErrTruncated, length)
	}
	return nil
}

func (p *PixelData) openEncapsulated(c *cursor, off int64) error {
	p.Encapsulated = true
	bot, frags, err := c.scanFragments(off)
	if err != nil {
		return err
	}
	spans, err := splitFrames(bot, frags, p.Header.NumberOfFrames, c.startsCodestream)
	if err != nil {
		return err
	}
	p.frags, p.spans = frags, spans
	return nil
}

// inflate reads a raw deflate stream (RFC 1951) of at most MaxInflatedSize
// bytes.
func inflate(r io.Reader) ([]byte, error) {
	fr := flate.NewReader(r)
	defer fr.Close()
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(fr, MaxInflatedSize+1))
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: inflating data set: %v", ErrTruncated, err)
	case err != nil:
		return nil, fmt.Errorf("%w: inflating data set: %v", ErrMalformed, err)
	case n > MaxInflatedSize:
		return nil, fmt.Errorf("%w: data set inflates to more than %d bytes", ErrUnsupported, MaxInflatedSize)
	}
	return buf.Bytes(), nil
}

// NumberOfFrames returns the number of frames.
func (p *PixelData) NumberOfFrames() int { return p.Header.NumberOfFrames }

// Frame returns frame number n, counting from 1 as frame lists do (PS3.18
// 10.4.1.1.3). For a native transfer syntax it is the frame's pixel bytes in
// little endian byte order (swapped from Explicit VR Big Endian when Bits
// Allocated is 16 or 32), as a WADO-RS uncompressed frame is sent (PS3.18
// 8.7.3.3.2); a frame of 1-bit pixels keeps its trailing bits. For an
// encapsulated transfer syntax it is the frame's compressed bitstream: its
// fragments concatenated (PS3.5 A.4).
func (p *PixelData) Frame(n int) ([]byte, error) {
	if err := p.check(n); err != nil {
		return nil, err
	}
	if p.Encapsulated {
		s := p.spans[n-1]
		b, err := readExtents(p.r, p.frags[s.first:s.end])
		if err != nil {
			return nil, fmt.Errorf("frames.Frame(%d): %w", n, err)
		}
		return b, nil
	}
	b, err := readExtents(p.r, []extent{{off: p.first + int64(n-1)*p.frameLen, length: p.frameLen}})
	if err != nil {
		return nil, fmt.Errorf("frames.Frame(%d): %w", n, err)
	}
	if p.bigEndian {
		swap(b, p.Header.BitsAllocated)
	}
	return b, nil
}

// Fragments returns the fragments of frame number n (from 1) of
// encapsulated Pixel Data, each its own slice (PS3.5 A.4). For native Pixel
// Data it returns the frame as one fragment.
func (p *PixelData) Fragments(n int) ([][]byte, error) {
	if !p.Encapsulated {
		b, err := p.Frame(n)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	if err := p.check(n); err != nil {
		return nil, err
	}
	s := p.spans[n-1]
	out := make([][]byte, 0, s.end-s.first)
	for _, f := range p.frags[s.first:s.end] {
		b, err := readExtents(p.r, []extent{f})
		if err != nil {
			return nil, fmt.Errorf("frames.Fragments(%d): %w", n, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (p *PixelData) check(n int) error {
	if n < 1 || n > p.Header.NumberOfFrames {
		return fmt.Errorf("frames: frame %d of %d: %w", n, p.Header.NumberOfFrames, ErrNoSuchFrame)
	}
	return nil
}

// swap converts 16- or 32-bit words from big to little endian in place.
func swap(b []byte, bitsAllocated int) {
	switch bitsAllocated {
	case 16:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 32:
		for i := 0; i+3 < len(b); i += 4 {
			b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
		}
	}
}
