package frames

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func seedObject(ts string, nframes int, frags [][]byte, bot []uint32, native []byte) []byte {
	var buf bytes.Buffer
	err := Write(&buf, &Object{
		TransferSyntaxUID: ts,
		Header: dicomheader.Header{
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.7", SOPInstanceUID: "1.2.3.4", StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.5",
			Rows: 2, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: "MONOCHROME2", NumberOfFrames: nframes,
		},
		Fragments: frags, OffsetTable: bot, Native: native,
	})
	if err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// FuzzOpen checks that Open and the frame readers never panic on outside
// input, and that they allocate no more than the input holds.
func FuzzOpen(f *testing.F) {
	f.Add(seedObject(RLELossless, 2, [][]byte{{1, 2}, {3, 4, 5, 6}, {7, 8}}, []uint32{0, 10}, nil))
	f.Add(seedObject(JPEGBaseline8Bit, 2, [][]byte{{0xFF, 0xD8, 1, 2}, {3, 4}, {0xFF, 0xD8}}, nil, nil))
	f.Add(seedObject(ExplicitVRBigEndian, 2, nil, nil, make([]byte, 8)))
	f.Add(seedObject(ImplicitVRLittleEndian, 1, nil, nil, make([]byte, 4)))
	f.Add(seedObject(DeflatedExplicitVRLittleEndian, 1, nil, nil, make([]byte, 4)))
	f.Add(dicomtest.NewStudy(f, dicomtest.WithTemplate(dicomtest.FilePET1)).Series[0].Instances[0].Bytes)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Native frames fit in the value and fragments are at least 8
		// bytes apart, so NumberOfFrames is bounded by len(b).
		if p.NumberOfFrames() > len(b) {
			t.Fatalf("%d frames from %d bytes", p.NumberOfFrames(), len(b))
		}
		total := 0
		for n := 1; n <= p.NumberOfFrames(); n++ {
			fr, err := p.Frame(n)
			if err != nil {
				t.Fatalf("Frame(%d) after a successful Open: %v", n, err)
			}
			total += len(fr)
		}
		if total > len(b) {
			t.Fatalf("frames hold %d bytes, input %d", total, len(b))
		}
	})
}

// FuzzFragments checks the encapsulated Pixel Data scanner and frame split
// on raw item streams.
func FuzzFragments(f *testing.F) {
	item := func(tag uint32, v []byte) []byte {
		b := binary.LittleEndian.AppendUint16(nil, uint16(tag>>16))
		b = binary.LittleEndian.AppendUint16(b, uint16(tag))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	}
	seed := bytes.Join([][]byte{
		item(tagItem, []byte{0, 0, 0, 0, 10, 0, 0, 0}),
		item(tagItem, []byte{0xFF, 0xD8}), item(tagItem, []byte{0xFF, 0xD8}),
		item(tagSeqDelimitation, nil),
	}, nil)
	f.Add(seed, 2)
	f.Add(seed[:len(seed)-3], 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		c := newCursor(bytes.NewReader(b), int64(len(b)))
		bot, frags, err := c.scanFragments(0)
		if err != nil {
			return
		}
		if 4*len(bot)+8*len(frags) > len(b) {
			t.Fatalf("%d offsets and %d fragments from %d bytes", len(bot), len(frags), len(b))
		}
		spans, err := splitFrames(bot, frags, n, c.startsCodestream)
		if err != nil {
			return
		}
		if len(spans) != n {
			t.Fatalf("%d spans for %d frames", len(spans), n)
		}
		next := 0
		for _, s := range spans {
			if s.first != next || s.end <= s.first {
				t.Fatalf("spans %v do not tile %d fragments", spans, len(frags))
			}
			next = s.end
		}
		if next != len(frags) {
			t.Fatalf("spans %v do not tile %d fragments", spans, len(frags))
		}
	})
}
