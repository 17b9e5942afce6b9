// Package dicomjson encodes and decodes the DICOM JSON Model
// (application/dicom+json, PS3.18 Annex F.2) used by QIDO-RS responses and
// WADO-RS metadata.
//
// Encode writes a data set of github.com/suyashkumar/dicom; Unmarshal reads
// DICOM JSON, such as a remote QIDO-RS response, into Objects.
package dicomjson

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// DefaultBulkDataThreshold is the size above which binary values become
// BulkDataURIs when Options.BulkDataThreshold is zero.
const DefaultBulkDataThreshold = 1024

// Options controls Encode.
type Options struct {
	// BulkDataURI returns the URI of the value at path (PS3.18 F.2.6). When
	// set, Pixel Data and every binary value (VR OB, OD, OF, OL, OV, OW, UN)
	// longer than the threshold is written as "BulkDataURI". When nil, such
	// values are written with "vr" only.
	BulkDataURI func(path Path) string
	// BulkDataThreshold is the largest binary value, in bytes, written inline
	// as "InlineBinary" (PS3.18 F.2.7); 0 means DefaultBulkDataThreshold and a
	// negative value makes every binary value bulk data.
	BulkDataThreshold int
	// Include, when not nil, lists the top-level attributes to write, as for
	// QIDO-RS includefield (PS3.18 8.3.4.3); sequences are written whole.
	Include map[tag.Tag]bool
}

// Step is one step of a Path: an attribute and, when the step enters a
// sequence, the index of the item.
type Step struct {
	Tag  tag.Tag
	Item int // item index within the sequence Tag, or -1 for the last step
}

// Path locates a value in a data set, from the top level down.
type Path []Step

// String formats the path as tags in upper-case hex and item indexes
// separated by "/", such as "00540013/0/7FE00010".
func (p Path) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%04X%04X", s.Tag.Group, s.Tag.Element)
		if s.Item >= 0 {
			fmt.Fprintf(&b, "/%d", s.Item)
		}
	}
	return b.String()
}

// Marshal returns the DICOM JSON object of ds. See Encode.
func Marshal(ds dicom.Dataset, opts Options) ([]byte, error) {
	e, err := encode(ds, opts)
	if err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// Encode writes ds as one DICOM JSON object (PS3.18 F.2): attributes keyed
// by tag in ascending order, IS and DS values as JSON numbers (F.2.3.1), PN
// values as objects of component groups (F.2.2), AT values as tag strings,
// sequences as arrays of objects, and binary values as InlineBinary or
// BulkDataURI. Empty values have no "Value". File Meta Information (group
// 0002) and group lengths (gggg,0000) are not written. Invalid IS or DS
// values are written as JSON strings rather than dropped.
func Encode(w io.Writer, ds dicom.Dataset, opts Options) error {
	e, err := encode(ds, opts)
	if err != nil {
		return err
	}
	if _, err := w.Write(e.buf.Bytes()); err != nil {
		return fmt.Errorf("dicomjson.Encode: %w", err)
	}
	return nil
}

func encode(ds dicom.Dataset, opts Options) (*encoder, error) {
	if opts.BulkDataThreshold == 0 {
		opts.BulkDataThreshold = DefaultBulkDataThreshold
	}
	e := &encoder{opts: opts}
	// Most headers print to a few KB: one allocation instead of a doubling
	// series.
	e.buf.Grow(64 * len(ds.Elements))
	e.object(ds.Elements, nil, true)
	if e.err != nil {
		return nil, fmt.Errorf("dicomjson.Encode: %w", e.err)
	}
	return e, nil
}

type encoder struct {
	opts Options
	buf  bytes.Buffer
	err  error
}

// object writes the elements of a data set or sequence item.
func (e *encoder) object(elems []*dicom.Element, path Path, top bool) {
	sorted := slices.Clone(elems)
	slices.SortStableFunc(sorted, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
	e.buf.WriteByte('{')
	first := true
	for i, el := range sorted {
		if el == nil || (i > 0 && sorted[i-1].Tag == el.Tag) {
			continue // duplicate tags: keep the first
		}
		if el.Tag.Group == 0x0002 || el.Tag.Element == 0x0000 || el.Tag.Group == tag.GroupSeqItem {
			continue
		}
		if top && e.opts.Include != nil && !e.opts.Include[el.Tag] {
			continue
		}
		if !first {
			e.buf.WriteByte(',')
		}
		first = false
		e.buf.WriteByte('"')
		e.tag(el.Tag)
		e.buf.WriteString(`":`)
		e.attribute(el, path)
	}
	e.buf.WriteByte('}')
}

// tag writes t as eight upper-case hex digits.
func (e *encoder) tag(t tag.Tag) {
	const hex = "0123456789ABCDEF"
	v := uint32(t.Group)<<16 | uint32(t.Element)
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = hex[v&0xF]
		v >>= 4
	}
	e.buf.Write(b[:])
}

// attribute writes the JSON object of one element.
func (e *encoder) attribute(el *dicom.Element, parent Path) {
	vr := el.RawValueRepresentation
	if el.Value != nil && el.Value.ValueType() == dicom.Sequences {
		vr = "SQ" // also an UN of undefined length read as a sequence
	}
	if len(vr) != 2 {
		vr = "UN"
	}
	e.buf.WriteString(`{"vr":`)
	e.str(vr)
	if el.Value != nil {
		e.value(el, vr, parent)
	}
	e.buf.WriteByte('}')
}

// value writes the value of el, whose data set is at parent.
func (e *encoder) value(el *dicom.Element, vr string, parent Path) {
	// Only sequences and bulk data need the element's path: most elements
	// are printed without making it.
	path := func() Path { return append(slices.Clip(parent), Step{Tag: el.Tag, Item: -1}) }
	switch v := el.Value.GetValue().(type) {
	case []*dicom.SequenceItemValue:
		if len(v) == 0 {
			return
		}
		e.buf.WriteString(`,"Value":[`)
		for i, item := range v {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			itemPath := path()
			itemPath[len(itemPath)-1].Item = i
			elems, _ := item.GetValue().([]*dicom.Element)
			e.object(elems, itemPath, false)
		}
		e.buf.WriteByte(']')
	case dicom.PixelDataInfo:
		e.bulk(nil, path(), true)
	case []byte:
		e.bulk(v, path(), false)
	case []int:
		e.ints(v, vr)
	case []float64:
		e.floats(v)
	case []string:
		e.strings(v, vr, path)
	}
}

// bulk writes a binary value inline or as a BulkDataURI (PS3.18 F.2.6, F.2.7).
func (e *encoder) bulk(b []byte, path Path, pixelData bool) {
	large := pixelData || len(b) > e.opts.BulkDataThreshold || e.opts.BulkDataThreshold < 0
	switch {
	case large && e.opts.BulkDataURI != nil:
		e.buf.WriteString(`,"BulkDataURI":`)
		e.str(e.opts.BulkDataURI(path))
	case large || len(b) == 0:
		// No URI to point at: leave the value out.
	default:
		e.buf.WriteString(`,"InlineBinary":"`)
		enc := base64.NewEncoder(base64.StdEncoding, &e.buf)
		_, _ = enc.Write(b)
		_ = enc.Close()
		e.buf.WriteByte('"')
	}
}

func (e *encoder) ints(v []int, vr string) {
	if len(v) == 0 {
		return
	}
	e.buf.WriteString(`,"Value":[`)
	if vr == "AT" {
		// The library reads AT as group, element pairs (PS3.5 6.2).
		for i := 0; i+1 < len(v); i += 2 {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			fmt.Fprintf(&e.buf, `"%04X%04X"`, uint16(v[i]), uint16(v[i+1]))
		}
	} else {
		for i, n := range v {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			e.buf.WriteString(strconv.Itoa(n))
		}
	}
	e.buf.WriteByte(']')
}

func (e *encoder) floats(v []float64) {
	if len(v) == 0 {
		return
	}
	e.buf.WriteString(`,"Value":[`)
	for i, f := range v {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.number(f)
	}
	e.buf.WriteByte(']')
}

// number writes a float as a JSON number, or null for NaN and infinities,
// which JSON cannot represent.
func (e *encoder) number(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		e.buf.WriteString("null")
		return
	}
	b, _ := json.Marshal(f)
	e.buf.Write(b)
}

// strings writes the values of a string-typed element.
func (e *encoder) strings(v []string, vr string, path func() Path) {
	switch vr {
	case "LT", "ST", "UT", "UR":
		// Backslash is not a delimiter for these VRs (PS3.5 6.2); the
		// library split on it anyway.
		v = []string{strings.Join(v, `\`)}
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
		// The library reads OD, OF, OL and OV as strings.
		e.bulk([]byte(strings.Join(v, `\`)), path(), false)
		return
	case "SV", "UV":
		e.vlongs([]byte(strings.Join(v, `\`)), vr == "SV")
		return
	}
	if len(v) == 0 || (len(v) == 1 && trimValue(v[0], vr) == "") {
		return
	}
	e.buf.WriteString(`,"Value":[`)
	for i, s := range v {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		s = trimValue(s, vr)
		switch {
		case s == "":
			e.buf.WriteString("null")
		case vr == "PN":
			e.personName(s)
		case vr == "IS":
			if n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
				e.buf.WriteString(strconv.FormatInt(n, 10))
			} else {
				e.str(s)
			}
		case vr == "DS":
			if f, ok := parseDS(s); ok {
				e.number(f)
			} else {
				e.str(s)
			}
		default:
			e.str(s)
		}
	}
	e.buf.WriteByte(']')
}

// vlongs writes 64-bit integers (SV, UV), which the library reads as strings,
// as JSON numbers.
func (e *encoder) vlongs(b []byte, signed bool) {
	if len(b) < 8 {
		return
	}
	e.buf.WriteString(`,"Value":[`)
	for i := 0; i+8 <= len(b); i += 8 {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		u := binary.LittleEndian.Uint64(b[i:])
		if signed {
			e.buf.WriteString(strconv.FormatInt(int64(u), 10))
		} else {
			e.buf.WriteString(strconv.FormatUint(u, 10))
		}
	}
	e.buf.WriteByte(']')
}

// personName writes a PN value as an object of its component groups
// (PS3.18 F.2.2).
func (e *encoder) personName(s string) {
	groups := strings.SplitN(s, "=", 3)
	names := []string{"Alphabetic", "Ideographic", "Phonetic"}
	e.buf.WriteByte('{')
	first := true
	for i, g := range groups {
		if g == "" {
			continue
		}
		if !first {
			e.buf.WriteByte(',')
		}
		first = false
		e.str(names[i])
		e.buf.WriteByte(':')
		e.str(g)
	}
	e.buf.WriteByte('}')
}

// str writes a JSON string, as encoding/json does.
func (e *encoder) str(s string) {
	if plain(s) {
		// Nothing to escape: most values are codes, UIDs, names and numbers.
		e.buf.WriteByte('"')
		e.buf.WriteString(s)
		e.buf.WriteByte('"')
		return
	}
	b, err := json.Marshal(s)
	if err != nil && e.err == nil {
		e.err = err
	}
	e.buf.Write(b)
}

// plain reports a string that encoding/json writes unchanged between
// quotes: printable ASCII other than the quote, the backslash and the
// characters it escapes for HTML.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7F, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// trimValue removes the padding of one value (PS3.5 6.2): trailing spaces
// and NULs, and leading spaces for VRs where they are not significant.
func trimValue(s, vr string) string {
	s = strings.TrimRight(s, " \x00")
	switch vr {
	case "LT", "ST", "UT", "UR":
		return s
	}
	return strings.TrimLeft(s, " ")
}

// parseDS parses a Decimal String value (PS3.5 6.2), refusing the NaN, Inf
// and hexadecimal forms strconv accepts.
func parseDS(s string) (float64, bool) {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E') {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsInf(f, 0)
}
