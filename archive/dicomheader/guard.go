package dicomheader

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// The guard is a cheap pre-check of the Part 10 structure, run before the
// DICOM library sees a stream. The library allocates a buffer of each
// element's declared length before reading it and recurses once per nested
// sequence, so a few bytes can make it allocate gigabytes or overflow the
// stack. The guard walks the same element headers the library will read,
// holding nothing but the current header, and rejects a stream whose lengths
// do not fit, that nests too deep or that has too many elements. What the
// library then allocates is bounded by the bytes actually present.
//
// The guard follows the library's reading rather than the letter of PS3.5
// where the two differ, since its job is to vouch for what the library does.

// Limits of the guard.
const (
	// maxDepth bounds the nesting of sequences (PS3.5 7.5). Real objects
	// stay well below it, structured reports included; the library recurses
	// twice per level, so stack use stays small.
	maxDepth = 32
	// maxElements bounds the element headers, items and fragments read:
	// each costs the library a few hundred bytes, whatever its length.
	maxElements = 1 << 20
	// maxInflated bounds the bytes a Deflated Explicit VR Little Endian
	// data set (PS3.5 A.5) may inflate to.
	maxInflated = 256 << 20
)

// undefinedLength is the Value Length FFFFFFFFH of sequences, items and
// encapsulated Pixel Data (PS3.5 7.1.1).
const undefinedLength = 0xFFFFFFFF

// errInflatedTooLarge means a deflated data set inflates beyond maxInflated.
var errInflatedTooLarge = fmt.Errorf("%w: data set inflates to more than %d bytes", ErrMalformed, maxInflated)

// readerAtSeeker is what the guard needs to read a stream without consuming
// it: *os.File, *bytes.Reader and *io.SectionReader are all one.
type readerAtSeeker interface {
	io.Reader
	io.ReaderAt
	io.Seeker
}

// guard checks the structure of the Part 10 stream r of size bytes (negative
// when unknown) and returns a reader of the same bytes for the library.
//
// When r is a readerAtSeeker the guard reads it with ReadAt, seeks over
// values, and returns r untouched. Otherwise it keeps what it reads in
// memory, stops before the value of the top-level Pixel Data element, and
// returns the kept bytes followed by the rest of r.
//
// It also returns the top-level Specific Character Set it met, nil when
// none or when the data set is deflated.
func guard(r io.Reader, size int64) (io.Reader, *charsetValue, error) {
	if rs, ok := r.(readerAtSeeker); ok {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			cs, err := guardAt(rs, start, size)
			return r, cs, err
		}
	}
	var kept bytes.Buffer
	w := newWalker(io.TeeReader(r, &kept), nil, size)
	w.keeps = true
	if err := w.walk(); err != nil {
		return nil, nil, err
	}
	return io.MultiReader(&kept, r), w.charset, nil
}

// guardAt checks the stream of size bytes (negative: up to the end) that
// starts at offset start of rs, and leaves the offset of rs at start.
func guardAt(rs readerAtSeeker, start, size int64) (*charsetValue, error) {
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("finding the end of the stream: %w", err)
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding the stream: %w", err)
	}
	switch avail := end - start; {
	case size < 0:
		size = avail
	case avail < size:
		return nil, fmt.Errorf("%w: stream has %d bytes, want %d", ErrTruncated, avail, size)
	}
	sr := io.NewSectionReader(rs, start, size)
	w := newWalker(sr, sr, size)
	err = w.walk()
	return w.charset, err
}

// charsetValue is the value of the top-level Specific Character Set
// (0008,0005) as stored, and its offset in the stream.
type charsetValue struct {
	off int64
	raw []byte
}

// walker reads element headers from a stream and skips their values.
type walker struct {
	br     *bufio.Reader
	src    io.Reader // what br reads
	seeker io.Seeker // src, when values are skipped by seeking
	pos    int64     // offset in the stream of the next byte of br
	end    int64     // length of the stream, or -1 when unknown
	keeps  bool      // what is read is kept in memory: leave Pixel Data alone

	deflated bool          // the data set is deflated: offsets are not the stream's
	charset  *charsetValue // the top-level Specific Character Set, once met

	order    binary.ByteOrder
	implicit bool
	elements int
	buf      [maxTransferSyntaxLen]byte
}

// maxTransferSyntaxLen bounds the Transfer Syntax UID value the guard reads:
// a UID has at most 64 characters (PS3.5 9.1). It also sizes the buffer
// that holds the preamble.
const maxTransferSyntaxLen = 256

func newWalker(src io.Reader, seeker io.Seeker, size int64) *walker {
	if size < 0 {
		size = -1
	}
	return &walker{br: bufio.NewReader(src), src: src, seeker: seeker, end: size}
}

// walk checks the preamble, the File Meta Information and the data set.
func (w *walker) walk() error {
	pre, err := w.read(preambleLen, -1)
	if err != nil {
		return fmt.Errorf("reading preamble: %w", err)
	}
	if string(pre[128:]) != "DICM" {
		return ErrNotPart10
	}
	ts, err := w.meta()
	if err != nil {
		return err
	}
	// The library supports the transfer syntaxes it knows, reading all but
	// the three uncompressed ones as Explicit VR Little Endian.
	w.order, w.implicit, err = uid.ParseTransferSyntaxUID(ts)
	if err != nil {
		return fmt.Errorf("%w: transfer syntax %q: %v", ErrMalformed, ts, err)
	}
	if ts == uid.DeflatedExplicitVRLittleEndian {
		// The rest of the stream is a raw deflate stream (PS3.5 A.5); the
		// library inflates it and reads until the inflated stream ends.
		in := &boundedReader{r: flate.NewReader(w.br), n: maxInflated}
		w.br, w.src, w.seeker, w.pos, w.end = bufio.NewReader(in), in, nil, 0, -1
		w.deflated = true
	}
	if err := w.items(-1, false, 0, true); err != nil {
		return fmt.Errorf("data set: %w", err)
	}
	return nil
}

// meta walks the File Meta Information (PS3.10 7.1): Explicit VR Little
// Endian elements led by their group length, File Meta Information Group
// Length (0002,0000) UL. It returns the Transfer Syntax UID (0002,0010).
func (w *walker) meta() (string, error) {
	w.order, w.implicit = binary.LittleEndian, false
	t, vr, vl, err := w.header(-1)
	if err != nil {
		return "", fmt.Errorf("file meta information: %w", err)
	}
	if t != tag.FileMetaInformationGroupLength || vr != "UL" || vl != 4 {
		return "", fmt.Errorf("%w: file meta information starts with %v %s of %d bytes, want (0002,0000) UL of 4",
			ErrMalformed, t, vr, vl)
	}
	b, err := w.read(4, -1)
	if err != nil {
		return "", fmt.Errorf("file meta information: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(b))
	if err := w.room(n, -1); err != nil {
		return "", fmt.Errorf("file meta information: %w", err)
	}
	end := w.pos + n
	ts, found := "", false
	for w.pos < end {
		t, vr, vl, err := w.header(end)
		if err != nil {
			return "", fmt.Errorf("file meta information: %w", err)
		}
		if t != tag.TransferSyntaxUID || found {
			if _, err := w.value(t, vr, vl, end, 0, false); err != nil {
				return "", fmt.Errorf("file meta information: %w", err)
			}
			continue
		}
		// The library uses the first (0002,0010) and reads it as a string.
		found = true
		if vr != "UI" || vl > maxTransferSyntaxLen {
			return "", fmt.Errorf("%w: Transfer Syntax UID is %s of %d bytes, want UI", ErrMalformed, vr, vl)
		}
		b, err := w.read(int(vl), end)
		if err != nil {
			return "", fmt.Errorf("file meta information: %w", err)
		}
		ts = firstValue(string(b))
	}
	if !found {
		return "", &AttributeError{Keyword: "TransferSyntaxUID", Tag: tag.TransferSyntaxUID, Err: ErrMissingAttribute}
	}
	return ts, nil
}

// firstValue returns the first value of a string element the way the
// library reads it: padding trimmed unless the value is all spaces, then
// split at the value delimiter "\" (PS3.5 6.4).
func firstValue(s string) string {
	if strings.TrimFunc(s, unicode.IsSpace) != "" {
		s = strings.Trim(s, " \x00")
	}
	v, _, _ := strings.Cut(s, `\`)
	return v
}

// items walks the elements of a data set or of an item up to limit (the end
// of the innermost enclosing value of defined length, -1 for none). An item
// of undefined length (delimited) ends at its Item Delimitation Item; the
// top-level data set ends at the end of the stream or after the Pixel Data
// element, where the library stops reading.
func (w *walker) items(limit int64, delimited bool, depth int, top bool) error {
	for {
		if !delimited && limit >= 0 && w.pos >= limit {
			return nil
		}
		if top && w.atEnd() {
			return nil
		}
		t, vr, vl, err := w.header(limit)
		if err != nil {
			return err
		}
		switch t {
		case tag.ItemDelimitationItem:
			if delimited {
				return nil
			}
			continue // a stray delimiter: the library reads it as an empty element
		case tag.SequenceDelimitationItem:
			continue
		case tag.Item:
			return fmt.Errorf("%w: Item at offset %d outside a sequence", ErrMalformed, w.pos)
		}
		stop, err := w.value(t, vr, vl, limit, depth, top)
		if err != nil || stop {
			return err
		}
	}
}

// atEnd reports whether the stream ends at the current position.
func (w *walker) atEnd() bool {
	if w.end >= 0 {
		return w.pos >= w.end
	}
	_, err := w.br.Peek(1)
	return errors.Is(err, io.EOF)
}

// value walks the value of an element whose header was just read, with the
// library's reading of each VR and length (tag.GetVRKind). It reports
// whether the element was the top-level Pixel Data, the last one read.
func (w *walker) value(t tag.Tag, vr string, vl uint32, limit int64, depth int, top bool) (stop bool, err error) {
	switch kind := tag.GetVRKind(t, vr); {
	case kind == tag.VRPixelData:
		switch {
		case top && w.keeps:
			// The library skips the top-level value without buffering;
			// reading it here would keep it in memory.
			if vl != undefinedLength {
				err = w.room(int64(vl), limit)
			}
		case vl == undefinedLength:
			err = w.fragments(limit, true) // encapsulated (PS3.5 A.4)
		default:
			err = w.skip(int64(vl), limit)
		}
		return top, err
	case kind == tag.VRSequence, kind == tag.VRUnknown && vl == undefinedLength:
		// The library reads UN of undefined length as a sequence in the
		// current transfer syntax.
		return false, w.sequence(vl, limit, depth+1)
	case kind == tag.VRBytes && vl == undefinedLength:
		// The library reads OB or OW of undefined length as fragments.
		return false, w.fragments(limit, false)
	case vl == undefinedLength:
		return false, fmt.Errorf("%w: %v %s at offset %d has undefined length", ErrMalformed, t, vr, w.pos)
	case top && t == tag.SpecificCharacterSet && w.charset == nil && !w.deflated && int(vl) <= len(w.buf):
		off := w.pos
		b, err := w.read(int(vl), limit)
		if err != nil {
			return false, err
		}
		w.charset = &charsetValue{off: off, raw: bytes.Clone(b)}
		return false, nil
	}
	return false, w.skip(int64(vl), limit)
}

// sequence walks the items of a sequence (PS3.5 7.5) of length vl.
func (w *walker) sequence(vl uint32, limit int64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: sequences nested deeper than %d at offset %d", ErrMalformed, maxDepth, w.pos)
	}
	defined := vl != undefinedLength
	end := limit
	if defined {
		if err := w.room(int64(vl), limit); err != nil {
			return err
		}
		end = w.pos + int64(vl)
	}
	for !defined || w.pos < end {
		t, _, ivl, err := w.header(end)
		if err != nil {
			return err
		}
		switch {
		case t == tag.SequenceDelimitationItem && !defined:
			return nil
		case t != tag.Item:
			return fmt.Errorf("%w: %v at offset %d in a sequence, want an Item", ErrMalformed, t, w.pos)
		case ivl == undefinedLength:
			if err := w.items(end, true, depth, false); err != nil {
				return err
			}
		default:
			if err := w.room(int64(ivl), end); err != nil {
				return err
			}
			if err := w.items(w.pos+int64(ivl), false, depth, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// fragments skips Items of defined length up to a Sequence Delimitation
// Item: encapsulated Pixel Data (PS3.5 A.4), or an OB or OW value of
// undefined length.
func (w *walker) fragments(limit int64, pixelData bool) error {
	for first := true; ; first = false {
		t, _, vl, err := w.header(limit)
		if err != nil {
			return err
		}
		switch {
		case t == tag.SequenceDelimitationItem && first && pixelData:
			// The library takes the first Item of Pixel Data for the Basic
			// Offset Table without looking, and would read on past this.
			return fmt.Errorf("%w: encapsulated Pixel Data at offset %d has no Basic Offset Table", ErrMalformed, w.pos)
		case t == tag.SequenceDelimitationItem:
			return nil
		case t != tag.Item:
			return fmt.Errorf("%w: %v at offset %d among fragments, want an Item", ErrMalformed, t, w.pos)
		case vl == undefinedLength:
			return fmt.Errorf("%w: fragment of undefined length at offset %d", ErrMalformed, w.pos)
		}
		if err := w.skip(int64(vl), limit); err != nil {
			return err
		}
	}
}

// header reads an element header (PS3.5 7.1) as the library does: Items and
// delimiters always have a 4-byte length; in Explicit VR the VR decides
// between a 2-byte length and 2 reserved bytes plus a 4-byte one, and a
// 2-byte length of FFFFH counts as undefined. In Implicit VR the VR comes
// from the dictionary.
func (w *walker) header(limit int64) (t tag.Tag, vr string, vl uint32, err error) {
	if w.elements++; w.elements > maxElements {
		return t, "", 0, fmt.Errorf("%w: more than %d elements", ErrMalformed, maxElements)
	}
	b, err := w.read(4, limit)
	if err != nil {
		return t, "", 0, err
	}
	t = tag.Tag{Group: w.order.Uint16(b), Element: w.order.Uint16(b[2:])}
	delimiter := t == tag.ItemDelimitationItem || t == tag.SequenceDelimitationItem
	if t == tag.Item || delimiter || w.implicit {
		if b, err = w.read(4, limit); err != nil {
			return t, "", 0, err
		}
		vl = w.order.Uint32(b)
		if delimiter && vl != 0 {
			// In Explicit VR the library takes these 4 bytes for a VR and
			// a 2-byte length; only zero reads the same both ways.
			return t, "", 0, fmt.Errorf("%w: %v at offset %d has length %d, want 0", ErrMalformed, t, w.pos, vl)
		}
		return t, implicitVR(t), vl, nil
	}
	if b, err = w.read(2, limit); err != nil {
		return t, "", 0, err
	}
	vr = string(b)
	switch vr {
	case "OV", "SV", "UV":
		// PS3.5 7.1.2 gives these a 4-byte length, which the library
		// (v1.1.0) does not know: it would read them with a 2-byte one
		// and lose its place.
		return t, vr, 0, fmt.Errorf("%w: %v at offset %d has VR %s, which the DICOM library cannot read", ErrMalformed, t, w.pos, vr)
	case "NA", "OB", "OD", "OF", "OL", "OW", "SQ", "UC", "UN", "UR", "UT":
		if b, err = w.read(6, limit); err != nil {
			return t, vr, 0, err
		}
		return t, vr, w.order.Uint32(b[2:]), nil
	}
	if b, err = w.read(2, limit); err != nil {
		return t, vr, 0, err
	}
	if vl = uint32(w.order.Uint16(b)); vl == 0xFFFF {
		vl = undefinedLength
	}
	return t, vr, vl, nil
}

// implicitVR returns the VR the library gives t in Implicit VR: the first
// of the dictionary, OW for Pixel Data and Overlay Data, UN when unknown.
func implicitVR(t tag.Tag) string {
	info, err := tag.Find(t)
	switch {
	case err != nil || len(info.VRs) == 0:
		return "UN"
	case info.Tag == tag.PixelData || info.Tag == tag.OverlayData:
		return "OW"
	}
	return info.VRs[0]
}

// room checks that n more bytes lie within limit (the end of the enclosing
// value of defined length, -1 for none) and within the stream.
func (w *walker) room(n, limit int64) error {
	if limit >= 0 && n > limit-w.pos {
		return fmt.Errorf("%w: %d bytes at offset %d overrun their enclosing value, which ends at %d", ErrMalformed, n, w.pos, limit)
	}
	if w.end >= 0 && n > w.end-w.pos {
		return fmt.Errorf("%w: %d bytes at offset %d overrun the stream, which ends at %d", ErrTruncated, n, w.pos, w.end)
	}
	return nil
}

// read returns the next n bytes, n at most len(w.buf).
func (w *walker) read(n int, limit int64) ([]byte, error) {
	if err := w.room(int64(n), limit); err != nil {
		return nil, err
	}
	b := w.buf[:n]
	if _, err := io.ReadFull(w.br, b); err != nil {
		return nil, readError(err, w.pos)
	}
	w.pos += int64(n)
	return b, nil
}

// skip skips the next n bytes: by seeking when it can, else by reading them.
func (w *walker) skip(n, limit int64) error {
	if err := w.room(n, limit); err != nil {
		return err
	}
	if w.seeker != nil && n > int64(w.br.Buffered()) {
		if _, err := w.seeker.Seek(w.pos+n, io.SeekStart); err != nil {
			return err
		}
		w.br.Reset(w.src)
	} else if _, err := io.CopyN(io.Discard, w.br, n); err != nil {
		return readError(err, w.pos)
	}
	w.pos += n
	return nil
}

// readError classifies an error reading at offset off.
func readError(err error, off int64) error {
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: stream ends in the element at offset %d", ErrTruncated, off)
	case errors.As(err, &corrupt):
		return fmt.Errorf("%w: inflating: %v", ErrMalformed, err)
	}
	return err
}

// boundedReader reads at most n bytes from r, then fails with
// errInflatedTooLarge.
type boundedReader struct {
	r io.Reader
	n int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errInflatedTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}
