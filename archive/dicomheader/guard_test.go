package dicomheader_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// Transfer syntaxes of the hand-built streams (PS3.5 A).
const (
	implicitLittleTS = "1.2.840.10008.1.2"
	explicitLittleTS = "1.2.840.10008.1.2.1"
	deflatedTS       = "1.2.840.10008.1.2.1.99"
	explicitBigTS    = "1.2.840.10008.1.2.2"
	jpegBaselineTS   = "1.2.840.10008.1.2.4.50"
)

const undefined = 0xFFFFFFFF

// enc encodes elements in one transfer syntax (PS3.5 7.1).
type enc struct {
	order interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	implicit bool
}

var (
	explicitLE = enc{order: binary.LittleEndian}
	implicitLE = enc{order: binary.LittleEndian, implicit: true}
	explicitBE = enc{order: binary.BigEndian}
)

// header encodes an element header declaring length vl, whatever follows.
func (e enc) header(t tag.Tag, vr string, vl uint32) []byte {
	b := e.order.AppendUint16(nil, t.Group)
	b = e.order.AppendUint16(b, t.Element)
	if e.implicit || t.Group == 0xFFFE {
		return e.order.AppendUint32(b, vl)
	}
	b = append(b, vr...)
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return e.order.AppendUint32(append(b, 0, 0), vl)
	}
	if vl == undefined {
		vl = 0xFFFF
	}
	return e.order.AppendUint16(b, uint16(vl))
}

// elem encodes a string element, padded to even length.
func (e enc) elem(t tag.Tag, vr, value string) []byte {
	if len(value)%2 == 1 {
		value += "\x00"
	}
	return append(e.header(t, vr, uint32(len(value))), value...)
}

// seq encodes a sequence of undefined length with items of undefined length.
func (e enc) seq(t tag.Tag, items ...[]byte) []byte {
	b := e.header(t, "SQ", undefined)
	for _, it := range items {
		b = append(append(b, e.header(tag.Item, "", undefined)...), it...)
		b = append(b, e.header(tag.ItemDelimitationItem, "", 0)...)
	}
	return append(b, e.header(tag.SequenceDelimitationItem, "", 0)...)
}

// uids encodes the attributes Parse requires.
func (e enc) uids() []byte {
	return bytes.Join([][]byte{
		e.elem(tag.SOPClassUID, "UI", "1.2.840.10008.5.1.4.1.1.7"),
		e.elem(tag.SOPInstanceUID, "UI", "1.2.3.4.5"),
		e.elem(tag.StudyInstanceUID, "UI", "1.2.3.4"),
		e.elem(tag.SeriesInstanceUID, "UI", "1.2.3.4.1"),
	}, nil)
}

// part10 returns a Part 10 stream (PS3.10 7.1): the preamble, "DICM", File
// Meta Information naming transfer syntax ts, then the data set bytes.
func part10(ts string, dataSet ...[]byte) []byte {
	meta := bytes.Join([][]byte{
		explicitLE.header(tag.FileMetaInformationVersion, "OB", 2), {0, 1},
		explicitLE.elem(tag.MediaStorageSOPClassUID, "UI", "1.2.840.10008.5.1.4.1.1.7"),
		explicitLE.elem(tag.MediaStorageSOPInstanceUID, "UI", "1.2.3.4.5"),
		explicitLE.elem(tag.TransferSyntaxUID, "UI", ts),
	}, nil)
	b := append(make([]byte, 128), "DICM"...)
	b = append(b, explicitLE.header(tag.FileMetaInformationGroupLength, "UL", 4)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	for _, d := range dataSet {
		b = append(b, d...)
	}
	return b
}

// deflated returns a Deflated Explicit VR Little Endian stream (PS3.5 A.5).
func deflated(t *testing.T, dataSet ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dataSet {
		if _, err := fw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return part10(deflatedTS, buf.Bytes())
}

// encapsulated encodes Pixel Data of undefined length (PS3.5 A.4): an empty
// Basic Offset Table, the fragments, and the Sequence Delimitation Item.
func encapsulated(frags ...[]byte) []byte {
	e := explicitLE
	b := e.header(tag.PixelData, "OB", undefined)
	b = append(b, e.header(tag.Item, "", 0)...)
	for _, f := range frags {
		b = append(append(b, e.header(tag.Item, "", uint32(len(f)))...), f...)
	}
	return append(b, e.header(tag.SequenceDelimitationItem, "", 0)...)
}

// nested returns depth sequences of undefined length, each in an item of
// the one before, around inner.
func (e enc) nested(depth int, inner []byte) []byte {
	open := append(e.header(tag.RequestAttributesSequence, "SQ", undefined), e.header(tag.Item, "", undefined)...)
	end := append(e.header(tag.ItemDelimitationItem, "", 0), e.header(tag.SequenceDelimitationItem, "", 0)...)
	return bytes.Join([][]byte{bytes.Repeat(open, depth), inner, bytes.Repeat(end, depth)}, nil)
}

// parseModes parses b with its size known from a seekable reader, and from
// a reader that cannot seek, with its size unknown.
var parseModes = []struct {
	name  string
	parse func([]byte) (*dicomheader.Header, error)
}{
	{"seekable", func(b []byte) (*dicomheader.Header, error) {
		return dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	}},
	{"stream", func(b []byte) (*dicomheader.Header, error) {
		return dicomheader.Parse(struct{ io.Reader }{bytes.NewReader(b)}, -1)
	}},
}

func TestParse_GuardAcceptsWellFormedStreams(t *testing.T) {
	t.Parallel()
	frag := bytes.Repeat([]byte{0xFF}, 1000)
	patientID := explicitLE.elem(tag.PatientID, "LO", "P1")
	tests := []struct {
		name string
		data []byte
	}{
		{"explicit little endian, nested sequences", part10(explicitLittleTS, explicitLE.uids(),
			explicitLE.nested(30, explicitLE.elem(tag.PatientID, "LO", "P1")))},
		{"implicit little endian, nested sequences", part10(implicitLittleTS, implicitLE.uids(),
			implicitLE.nested(30, implicitLE.elem(tag.PatientID, "LO", "P1")))},
		{"explicit big endian, nested sequences", part10(explicitBigTS, explicitBE.uids(),
			explicitBE.nested(30, explicitBE.elem(tag.PatientID, "LO", "P1")))},
		{"sequence and item of defined length", part10(explicitLittleTS, explicitLE.uids(),
			explicitLE.header(tag.RequestAttributesSequence, "SQ", 8+uint32(len(patientID))),
			explicitLE.header(tag.Item, "", uint32(len(patientID))), patientID)},
		{"private UN of undefined length", part10(implicitLittleTS, implicitLE.uids(),
			implicitLE.seq(tag.Tag{Group: 0x0009, Element: 0x1010}, implicitLE.elem(tag.PatientID, "", "P1")))},
		{"encapsulated pixel data", part10(jpegBaselineTS, explicitLE.uids(),
			explicitLE.elem(tag.Rows, "US", "\x01\x00"), encapsulated(frag, frag))},
		{"deflated without pixel data", deflated(t, explicitLE.uids(), explicitLE.elem(tag.Modality, "CS", "SR"))},
	}
	for _, tt := range tests {
		for _, m := range parseModes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				h, err := m.parse(tt.data)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got, want := h.SOPInstanceUID, "1.2.3.4.5"; got != want {
					t.Errorf("SOPInstanceUID = %q, want %q", got, want)
				}
			})
		}
	}
}

func TestParse_GuardRejectsMalformedStructure(t *testing.T) {
	t.Parallel()
	huge := uint32(0x7FFFFFF0)
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		// seekableOnly marks streams only a seekable reader can refute:
		// without one the guard stops before the top-level Pixel Data.
		seekableOnly bool
	}{
		{
			name: "huge length in the file meta information",
			data: func() []byte {
				b := part10(explicitLittleTS, explicitLE.uids())
				i := bytes.Index(b, []byte{0x02, 0, 0x01, 0, 'O', 'B', 0, 0})
				binary.LittleEndian.PutUint32(b[i+8:], huge)
				return b
			}(),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name:    "huge length in the data set",
			data:    part10(explicitLittleTS, explicitLE.uids(), explicitLE.header(tag.StudyDescription, "UT", huge), make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name: "huge length in a nested item",
			data: part10(explicitLittleTS, explicitLE.uids(),
				explicitLE.nested(3, explicitLE.header(tag.StudyDescription, "UT", huge)), make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name: "huge length in a nested item, implicit VR",
			data: part10(implicitLittleTS, implicitLE.uids(),
				implicitLE.nested(3, implicitLE.header(tag.PatientID, "", huge)), make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name: "huge length in a nested item, explicit big endian",
			data: part10(explicitBigTS, explicitBE.uids(),
				explicitBE.nested(3, explicitBE.header(tag.StudyDescription, "UT", huge)), make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name: "length overruns its item of defined length",
			data: part10(explicitLittleTS, explicitLE.uids(),
				explicitLE.header(tag.RequestAttributesSequence, "SQ", 8+8),
				explicitLE.header(tag.Item, "", 8), explicitLE.header(tag.PatientID, "LO", 100), make([]byte, 1000)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name:    "huge length in a deflated data set",
			data:    deflated(t, explicitLE.uids(), explicitLE.header(tag.StudyDescription, "UT", huge), make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name:    "1000 nested sequences",
			data:    part10(explicitLittleTS, explicitLE.uids(), explicitLE.nested(1000, nil)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name:    "1000 nested sequences, implicit VR",
			data:    part10(implicitLittleTS, implicitLE.uids(), implicitLE.nested(1000, nil)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name: "sequence of undefined length never terminated",
			data: part10(explicitLittleTS, explicitLE.uids(),
				explicitLE.header(tag.RequestAttributesSequence, "SQ", undefined),
				explicitLE.header(tag.Item, "", undefined), explicitLE.elem(tag.PatientID, "LO", "P1")),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name:    "undefined length on a string",
			data:    part10(explicitLittleTS, explicitLE.uids(), explicitLE.header(tag.PatientID, "LO", undefined), make([]byte, 100)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name:    "item outside a sequence",
			data:    part10(explicitLittleTS, explicitLE.uids(), explicitLE.header(tag.Item, "", undefined), make([]byte, 100)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name:    "VR the library cannot read",
			data:    part10(explicitLittleTS, explicitLE.uids(), explicitLE.header(tag.Tag{Group: 0x0009, Element: 0x1010}, "SV", 8), make([]byte, 8)),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name: "truncated encapsulated pixel data",
			data: func() []byte {
				b := part10(jpegBaselineTS, explicitLE.uids(), encapsulated(make([]byte, 1000)))
				return b[:len(b)-500]
			}(),
			wantErr:      dicomheader.ErrTruncated,
			seekableOnly: true,
		},
		{
			name: "encapsulated pixel data without sequence delimitation",
			data: func() []byte {
				b := part10(jpegBaselineTS, explicitLE.uids(), encapsulated(make([]byte, 1000)))
				return b[:len(b)-8]
			}(),
			wantErr:      dicomheader.ErrTruncated,
			seekableOnly: true,
		},
		{
			name: "fragment with a huge length",
			data: part10(jpegBaselineTS, explicitLE.uids(), explicitLE.header(tag.PixelData, "OB", undefined),
				explicitLE.header(tag.Item, "", 0), explicitLE.header(tag.Item, "", huge), make([]byte, 1000)),
			wantErr:      dicomheader.ErrTruncated,
			seekableOnly: true,
		},
		{
			name: "nested encapsulated pixel data with a huge fragment",
			data: part10(explicitLittleTS, explicitLE.uids(), explicitLE.seq(tag.IconImageSequence,
				bytes.Join([][]byte{explicitLE.header(tag.PixelData, "OB", undefined), explicitLE.header(tag.Item, "", huge)}, nil)),
				make([]byte, 1000)),
			wantErr: dicomheader.ErrTruncated,
		},
		{
			name: "nested encapsulated pixel data without basic offset table",
			data: part10(explicitLittleTS, explicitLE.uids(), explicitLE.seq(tag.IconImageSequence,
				bytes.Join([][]byte{explicitLE.header(tag.PixelData, "OB", undefined), explicitLE.header(tag.SequenceDelimitationItem, "", 0)}, nil))),
			wantErr: dicomheader.ErrMalformed,
		},
		{
			name: "more elements than the bound",
			data: part10(explicitLittleTS, explicitLE.uids(),
				bytes.Repeat(explicitLE.header(tag.Tag{Group: 0x0009, Element: 0x1010}, "LO", 0), 1<<20)),
			wantErr: dicomheader.ErrMalformed,
		},
	}
	for _, tt := range tests {
		for _, m := range parseModes {
			if tt.seekableOnly && m.name != "seekable" {
				continue
			}
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				if _, err := m.parse(tt.data); !errors.Is(err, tt.wantErr) {
					t.Errorf("Parse() error = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestParse_SeekableReaderFromItsOffset(t *testing.T) {
	t.Parallel()
	b := part10(explicitLittleTS, explicitLE.uids())
	r := bytes.NewReader(append([]byte("junk before the object"), b...))
	if _, err := r.Seek(int64(len("junk before the object")), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := dicomheader.Parse(r, int64(len(b))); err != nil {
		t.Fatalf("Parse: %v", err)
	}
}

// TestParse_LengthBombAllocation parses the MR file with the 12-byte length
// of an element near its start changed to 2 GB: the DICOM library alone
// allocates 2 GB for it.
func TestParse_LengthBombAllocation(t *testing.T) {
	b, err := os.ReadFile(dicomtest.TestdataPath(t, dicomtest.FileMR))
	if err != nil {
		t.Fatal(err)
	}
	// (0013,1010) UN, a private element before Pixel Data.
	i := bytes.Index(b, []byte{0x13, 0x00, 0x10, 0x10, 'U', 'N', 0, 0})
	if i < 0 {
		t.Fatal("(0013,1010) UN not found in the MR file")
	}
	binary.LittleEndian.PutUint32(b[i+8:], 0x7FFFFFFE)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, dicomheader.ErrTruncated) {
		t.Errorf("Parse() error = %v, want ErrTruncated", err)
	}
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(4<<20); got > limit {
		t.Errorf("Parse allocated %d bytes for a %d-byte file, want under %d", got, len(b), limit)
	}
}
