// Package bulkdata finds the value of one element of a stored DICOM Part 10
// object (PS3.10) by the path of a BulkDataURI, for the WADO-RS Retrieve
// Bulkdata transaction (PS3.18 10.4.1.1.5, /bulkdata/{path}).
//
// Find reads the stream once, front to back, through element headers only:
// values it passes are discarded without being held, and the value it finds
// is returned as a reader, so memory stays flat whatever the object's size.
// Paths are those of dicomjson.Path: tags and item indexes, such as
// "00540013/0/7FE00010".
package bulkdata

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
)

// Errors of Find and ParsePath; test for them with errors.Is.
var (
	// ErrNotFound: the object has no element at the path.
	ErrNotFound = errors.New("no element at this path")
	// ErrUnsupported: the value exists but cannot be served as bulk data
	// without transcoding (encapsulated Pixel Data, a big endian object).
	ErrUnsupported = errors.New("bulk data cannot be served from this object")
	// ErrMalformed: the object or the path does not parse.
	ErrMalformed = errors.New("malformed")
)

// Transfer Syntax UIDs whose data set encoding Find must know (PS3.5 A).
const (
	implicitVRLittleEndian = "1.2.840.10008.1.2"
	explicitVRBigEndian    = "1.2.840.10008.1.2.2"
	deflatedExplicitVRLE   = "1.2.840.10008.1.2.1.99"
)

const (
	tagItem             = 0xFFFEE000
	tagItemDelimitation = 0xFFFEE00D
	tagSeqDelimitation  = 0xFFFEE0DD
	tagTransferSyntax   = 0x00020010
	undefinedLength     = 0xFFFFFFFF
	maxDepth            = 64
	// maxPathSteps bounds a parsed path: 32 nested sequences.
	maxPathSteps = 32
)

// Value is the value of the element Find found.
type Value struct {
	Tag tag.Tag
	// VR is the element's Value Representation, from the stream for
	// explicit VR and from the data dictionary (PS3.6) for implicit VR; ""
	// when unknown.
	VR string
	// Length is the value's length in bytes.
	Length int64
	// Reader reads the Length bytes of the value as stored, little endian;
	// a stream that ends before them fails with ErrMalformed.
	io.Reader
}

// exactReader reads n bytes of r, failing when r ends before them.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	k, err := e.r.Read(p)
	e.n -= int64(k)
	if errors.Is(err, io.EOF) && e.n > 0 {
		return k, fmt.Errorf("%w: value truncated, %d bytes missing", ErrMalformed, e.n)
	}
	if err == nil && e.n == 0 {
		err = io.EOF
	}
	return k, err
}

// ParsePath parses the path part of a BulkDataURI, such as "7FE00010" or
// "00540013/0/7FE00010": tags of eight hexadecimal digits, each but the
// last followed by the index of an item of that sequence, from 0.
func ParsePath(s string) (dicomjson.Path, error) {
	parts := strings.Split(s, "/")
	if len(parts)%2 == 0 || len(parts) > 2*maxPathSteps-1 {
		return nil, fmt.Errorf("bulkdata.ParsePath: %w: %q is not tag[/item/tag]...", ErrMalformed, s)
	}
	var p dicomjson.Path
	for i := 0; i < len(parts); i += 2 {
		t, err := parseTag(parts[i])
		if err != nil {
			return nil, fmt.Errorf("bulkdata.ParsePath: %w", err)
		}
		step := dicomjson.Step{Tag: t, Item: -1}
		if i+1 < len(parts) {
			n, err := strconv.Atoi(parts[i+1])
			if err != nil || n < 0 || n > 1<<20 || parts[i+1] != strconv.Itoa(n) {
				return nil, fmt.Errorf("bulkdata.ParsePath: %w: item index %q", ErrMalformed, parts[i+1])
			}
			step.Item = n
		}
		p = append(p, step)
	}
	return p, nil
}

func parseTag(s string) (tag.Tag, error) {
	if len(s) != 8 {
		return tag.Tag{}, fmt.Errorf("%w: tag %q is not eight hexadecimal digits", ErrMalformed, s)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return tag.Tag{}, fmt.Errorf("%w: tag %q is not eight hexadecimal digits", ErrMalformed, s)
	}
	return tag.Tag{Group: uint16(v >> 16), Element: uint16(v)}, nil
}

// Find reads the DICOM Part 10 stream r up to the element at path and
// returns its value, which must be read before r is used again. It supports
// the little endian transfer syntaxes, explicit and implicit VR, deflated
// included (PS3.5 A.1, A.2, A.4, A.5). An encapsulated value (undefined
// length) and any value of an Explicit VR Big Endian object wrap
// ErrUnsupported; a path that leads nowhere wraps ErrNotFound.
func Find(r io.Reader, path dicomjson.Path) (*Value, error) {
	if len(path) == 0 || len(path) > maxPathSteps {
		return nil, fmt.Errorf("bulkdata.Find: %w: empty or too deep path", ErrMalformed)
	}
	for _, s := range path[:len(path)-1] {
		if s.Item < 0 {
			return nil, fmt.Errorf("bulkdata.Find: %w: path step %v without an item", ErrMalformed, s.Tag)
		}
	}
	w := &walker{r: bufio.NewReaderSize(r, 32<<10)}
	v, err := w.find(path)
	if err != nil {
		return nil, fmt.Errorf("bulkdata.Find %s: %w", path, err)
	}
	return v, nil
}

// walker reads element headers off a stream, counting the bytes consumed.
type walker struct {
	r        *bufio.Reader
	off      int64
	implicit bool
	buf      [12]byte
}

type header struct {
	tag    uint32
	vr     string
	length uint32
}

func (w *walker) read(n int) ([]byte, error) {
	b := w.buf[:n]
	k, err := io.ReadFull(w.r, b)
	w.off += int64(k)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && k > 0) {
			return nil, fmt.Errorf("%w: truncated at byte %d", ErrMalformed, w.off)
		}
		return nil, err
	}
	return b, nil
}

func (w *walker) skip(n int64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		k, err := w.r.Discard(step)
		w.off += int64(k)
		n -= int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, w.off)
			}
			return err
		}
	}
	return nil
}

// header reads an element, item or delimiter header (PS3.5 7.1, 7.5).
// io.EOF means the stream ended cleanly before it.
func (w *walker) header(implicit bool) (header, error) {
	b, err := w.read(8)
	if err != nil {
		return header{}, err
	}
	h := header{tag: uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))}
	if h.tag>>16 == 0xFFFE || implicit {
		h.length = binary.LittleEndian.Uint32(b[4:])
		if implicit && h.tag>>16 != 0xFFFE {
			if info, err := tag.Find(tagOf(h.tag)); err == nil && len(info.VRs) > 0 {
				h.vr = info.VRs[0]
			}
		}
		return h, nil
	}
	h.vr = string(b[4:6])
	switch h.vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		b, err := w.read(4)
		if err != nil {
			return header{}, eofIsTruncation(err)
		}
		h.length = binary.LittleEndian.Uint32(b)
	default:
		h.length = uint32(binary.LittleEndian.Uint16(b[6:]))
	}
	return h, nil
}

func eofIsTruncation(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: truncated", ErrMalformed)
	}
	return err
}

func tagOf(t uint32) tag.Tag { return tag.Tag{Group: uint16(t >> 16), Element: uint16(t)} }

func tagValue(t tag.Tag) uint32 { return uint32(t.Group)<<16 | uint32(t.Element) }

// find reads the preamble and File Meta Information (PS3.10 7.1), which
// names the transfer syntax, then the data set.
func (w *walker) find(path dicomjson.Path) (*Value, error) {
	if err := w.skip(128); err != nil {
		return nil, fmt.Errorf("%w: no preamble", ErrMalformed)
	}
	b, err := w.read(4)
	if err != nil || string(b) != "DICM" {
		return nil, fmt.Errorf("%w: not a DICOM Part 10 stream", ErrMalformed)
	}
	var ts string
	for {
		peek, err := w.r.Peek(2)
		if err != nil || binary.LittleEndian.Uint16(peek) != 0x0002 {
			break
		}
		h, err := w.header(false)
		if err != nil {
			return nil, eofIsTruncation(err)
		}
		if h.length == undefinedLength {
			return nil, fmt.Errorf("%w: undefined length in File Meta Information", ErrMalformed)
		}
		if h.tag == tagTransferSyntax && h.length <= 64 {
			v := make([]byte, h.length)
			k, err := io.ReadFull(w.r, v)
			w.off += int64(k)
			if err != nil {
				return nil, fmt.Errorf("%w: truncated Transfer Syntax UID", ErrMalformed)
			}
			ts = strings.TrimRight(string(v), " \x00")
			continue
		}
		if err := w.skip(int64(h.length)); err != nil {
			return nil, err
		}
	}
	switch ts {
	case "":
		return nil, fmt.Errorf("%w: no Transfer Syntax UID", ErrMalformed)
	case explicitVRBigEndian:
		return nil, fmt.Errorf("%w: Explicit VR Big Endian would need byte swapping", ErrUnsupported)
	case implicitVRLittleEndian:
		w.implicit = true
	case deflatedExplicitVRLE:
		w.r = bufio.NewReaderSize(flate.NewReader(w.r), 32<<10)
	}
	return w.findIn(-1, path, 0)
}

// findIn looks for path[0] among the elements of a data set or item that
// ends at byte end, or at an Item Delimitation Item or the end of the
// stream when end is negative.
func (w *walker) findIn(end int64, path dicomjson.Path, depth int) (*Value, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	want := tagValue(path[0].Tag)
	for {
		if end >= 0 && w.off >= end {
			return nil, ErrNotFound
		}
		h, err := w.header(w.implicit)
		if errors.Is(err, io.EOF) && end < 0 && depth == 0 {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, eofIsTruncation(err)
		}
		switch {
		case h.tag == tagItemDelimitation && end < 0 && depth > 0:
			return nil, ErrNotFound
		case h.tag == want && len(path) == 1:
			if h.length == undefinedLength {
				return nil, fmt.Errorf("%w: the value is encapsulated or a sequence", ErrUnsupported)
			}
			return &Value{Tag: path[0].Tag, VR: h.vr, Length: int64(h.length), Reader: &exactReader{r: w.r, n: int64(h.length)}}, nil
		case h.tag == want:
			return w.findInItem(h, path, depth)
		case h.tag > want && h.tag>>16 != 0xFFFE:
			// Elements are in ascending tag order (PS3.5 7.1): it is not
			// here, and the rest (Pixel Data maybe) need not be read.
			return nil, ErrNotFound
		}
		if err := w.skipValue(h, depth); err != nil {
			return nil, err
		}
	}
}

// findInItem enters the sequence whose header is h, goes to item
// path[0].Item and looks for path[1:] there.
func (w *walker) findInItem(h header, path dicomjson.Path, depth int) (*Value, error) {
	implicit := w.implicit
	if h.vr == "UN" {
		// A sequence held as UN is encoded Implicit VR (PS3.5 6.2.2), of
		// undefined length or, from a gateway that kept its bytes, of a
		// defined one; the metadata shows the latter as the sequence the
		// dictionary says it is (dicomheader).
		w.implicit = true
		defer func() { w.implicit = implicit }()
	}
	seqEnd := int64(-1)
	if h.length != undefinedLength {
		seqEnd = w.off + int64(h.length)
	}
	for idx := 0; ; idx++ {
		if seqEnd >= 0 && w.off >= seqEnd {
			return nil, ErrNotFound
		}
		ih, err := w.header(true)
		if err != nil {
			return nil, eofIsTruncation(err)
		}
		switch ih.tag {
		case tagSeqDelimitation:
			return nil, ErrNotFound
		case tagItem:
		default:
			return nil, fmt.Errorf("%w: %08X where an item was expected", ErrMalformed, ih.tag)
		}
		if idx == path[0].Item {
			itemEnd := int64(-1)
			if ih.length != undefinedLength {
				itemEnd = w.off + int64(ih.length)
			}
			return w.findIn(itemEnd, path[1:], depth+1)
		}
		if err := w.skipValue(ih, depth+1); err != nil {
			return nil, err
		}
	}
}

// skipValue skips the value of the element or item whose header was just
// read, following undefined-length sequences and items to their delimiter.
func (w *walker) skipValue(h header, depth int) error {
	if h.length != undefinedLength {
		return w.skip(int64(h.length))
	}
	if depth > maxDepth {
		return fmt.Errorf("%w: sequences nested deeper than %d", ErrMalformed, maxDepth)
	}
	if h.tag == tagItem {
		// An item of undefined length: elements up to its delimiter.
		for {
			eh, err := w.header(w.implicit)
			if err != nil {
				return eofIsTruncation(err)
			}
			if eh.tag == tagItemDelimitation {
				return nil
			}
			if err := w.skipValue(eh, depth+1); err != nil {
				return err
			}
		}
	}
	implicit := w.implicit
	if h.vr == "UN" {
		w.implicit = true
		defer func() { w.implicit = implicit }()
	}
	// A sequence or encapsulated value: items up to the delimiter.
	for {
		ih, err := w.header(true)
		if err != nil {
			return eofIsTruncation(err)
		}
		switch ih.tag {
		case tagSeqDelimitation:
			return nil
		case tagItem:
			if err := w.skipValue(ih, depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %08X where an item was expected", ErrMalformed, ih.tag)
		}
	}
}
